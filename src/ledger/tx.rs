//! The writer's view of the store while it builds one group commit: reads see the store plus every
//! write accepted earlier in the group, and each command's writes can be kept or dropped alone, so
//! one refused request never fails the others in its group.
//!
//! Hot aggregates (the country's exposure row, the as-of sums of this year) are touched by almost
//! every command of a group. They are `Additive`: `add` keeps each decoded in the group and adds a
//! command's delta in place, with an undo log that subtracts it again if the command is rejected,
//! and encodes each once, at commit. Copying a hot year's sums (kilobytes) for every command that
//! touched it, so that a rejection could drop the copy, was the writer's largest cost (profile in
//! bench/RESULTS.md, 2026-12-05). `update` keeps other values decoded the same way, copied per
//! command.

use super::codec;
use crate::domain::LedgerError;
use crate::store::{Batch, Store};
use std::any::Any;
use std::collections::HashMap;

/// A decoded value kept in the overlay until the group is committed.
trait Cached: Any + Send {
    fn encode(&self) -> Vec<u8>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn boxed_clone(&self) -> Box<dyn Cached>;
}

impl<T: serde::Serialize + Clone + Send + 'static> Cached for T {
    fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn boxed_clone(&self) -> Box<dyn Cached> {
        Box::new(self.clone())
    }
}

/// A value changed only by adding deltas that can be undone exactly: exposure rows and as-of year
/// sums. Its default is stored as no key.
pub trait Additive: serde::Serialize + serde::de::DeserializeOwned + Default + Send + 'static {
    type Delta: Clone + Send + 'static;
    /// Adds `delta`; on an error the value is left as it was.
    fn add(&mut self, delta: &Self::Delta) -> Result<(), LedgerError>;
    /// Undoes an `add` of `delta` that succeeded, exactly.
    fn undo(&mut self, delta: &Self::Delta);
    fn is_zero(&self) -> bool;
}

/// An additive value kept decoded in the group.
trait Sum: Any + Send {
    /// The stored bytes; `None` for the default (no key).
    fn encode(&self) -> Option<Vec<u8>>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Additive> Sum for T {
    fn encode(&self) -> Option<Vec<u8>> {
        (!self.is_zero()).then(|| codec::encode(self))
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Subtracts one delta from an additive value (the delta captured).
type Subtraction = Box<dyn FnOnce(&mut dyn Sum) + Send>;

/// How to take back one `add` of the current command.
enum Undo {
    /// The key was not in the group before: drop it (the store still has what it had).
    Forget(Vec<u8>),
    /// Subtract what was added.
    Subtract(Vec<u8>, Subtraction),
}

/// One key's state in the overlay.
enum Slot {
    Deleted,
    Encoded(Vec<u8>),
    Decoded(Box<dyn Cached>),
}

impl Slot {
    fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Slot::Deleted => None,
            Slot::Encoded(bytes) => Some(bytes.clone()),
            Slot::Decoded(value) => Some(value.encode()),
        }
    }

    fn duplicate(&self) -> Slot {
        match self {
            Slot::Deleted => Slot::Deleted,
            Slot::Encoded(bytes) => Slot::Encoded(bytes.clone()),
            Slot::Decoded(value) => Slot::Decoded(value.boxed_clone()),
        }
    }
}

pub struct Tx<'s> {
    store: &'s dyn Store,
    /// Writes of the commands accepted so far in this group.
    group: HashMap<Vec<u8>, Slot>,
    /// Writes of the command being executed.
    command: HashMap<Vec<u8>, Slot>,
    /// Additive values (`add`), changed in place by every command; never in `group` or `command`.
    sums: HashMap<Vec<u8>, Box<dyn Sum>>,
    /// What the current command added to `sums`, to take back if it is rejected.
    undo: Vec<Undo>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("group", &self.group.len())
            .field("command", &self.command.len())
            .field("sums", &self.sums.len())
            .finish()
    }
}

impl<'s> Tx<'s> {
    pub fn new(store: &'s dyn Store) -> Tx<'s> {
        Tx { store, group: HashMap::new(), command: HashMap::new(), sums: HashMap::new(), undo: Vec::new() }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        if let Some(slot) = self.command.get(key).or_else(|| self.group.get(key)) {
            return Ok(slot.bytes());
        }
        if let Some(sum) = self.sums.get(key) {
            return Ok(sum.encode());
        }
        self.store.get(key).map_err(|e| LedgerError::Unavailable(e.to_string()))
    }

    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, LedgerError> {
        self.get_raw(key)?.map(|bytes| codec::decode(key, &bytes)).transpose()
    }

    pub fn put<T: serde::Serialize>(&mut self, key: Vec<u8>, value: &T) {
        debug_assert!(!self.sums.contains_key(&key), "an additive value is only added to");
        self.command.insert(key, Slot::Encoded(codec::encode(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        debug_assert!(!self.sums.contains_key(&key), "an additive value is only added to");
        self.command.insert(key, Slot::Deleted);
    }

    /// Adds `delta` to the additive value at `key` (its default when absent), in place; the
    /// command's rejection subtracts it again. A key is only ever added to, never put.
    pub fn add<T: Additive>(&mut self, key: Vec<u8>, delta: &T::Delta) -> Result<(), LedgerError> {
        debug_assert!(!self.command.contains_key(&key) && !self.group.contains_key(&key), "added to and put");
        let fresh = !self.sums.contains_key(&key);
        if fresh {
            let stored = self.store.get(&key).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
            let value: T = stored.map(|bytes| codec::decode(&key, &bytes)).transpose()?.unwrap_or_default();
            self.sums.insert(key.clone(), Box::new(value));
        }
        let sum = self.sums.get_mut(&key).expect("inserted above");
        let Some(typed) = sum.as_any_mut().downcast_mut::<T>() else {
            let key = String::from_utf8_lossy(&key);
            return Err(LedgerError::Internal(format!("the record at {key} is added to as two different types")));
        };
        if let Err(e) = typed.add(delta) {
            if fresh {
                self.sums.remove(&key);
            }
            return Err(e);
        }
        self.undo.push(if fresh {
            Undo::Forget(key)
        } else {
            let delta = delta.clone();
            Undo::Subtract(
                key,
                Box::new(move |sum: &mut dyn Sum| {
                    let typed = sum.as_any_mut().downcast_mut::<T>().expect("the type it was added as");
                    typed.undo(&delta);
                }),
            )
        });
        Ok(())
    }

    /// Changes the value at `key` (the default when absent) in place; `change` returns whether to
    /// keep it (false deletes the key). The value stays decoded until the group is committed.
    pub fn update<T>(&mut self, key: Vec<u8>, change: impl FnOnce(&mut T) -> bool) -> Result<(), LedgerError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Clone + Default + Send + 'static,
    {
        debug_assert!(!self.sums.contains_key(&key), "an additive value is only added to");
        let slot = match self.command.remove(&key) {
            Some(slot) => slot,
            // A copy: the group's value must survive if this command is rejected.
            None => match self.group.get(&key) {
                Some(slot) => slot.duplicate(),
                None => match self.store.get(&key).map_err(|e| LedgerError::Unavailable(e.to_string()))? {
                    Some(bytes) => Slot::Encoded(bytes),
                    None => Slot::Deleted,
                },
            },
        };
        let mut value: Box<dyn Cached> = match slot {
            Slot::Deleted => Box::new(T::default()),
            Slot::Encoded(bytes) => Box::new(codec::decode::<T>(&key, &bytes)?),
            Slot::Decoded(value) => value,
        };
        let Some(typed) = value.as_any_mut().downcast_mut::<T>() else {
            let key = String::from_utf8_lossy(&key);
            return Err(LedgerError::Internal(format!("the record at {key} is updated as two different types")));
        };
        let keep = change(typed);
        self.command.insert(key, if keep { Slot::Decoded(value) } else { Slot::Deleted });
        Ok(())
    }

    /// Every key under `prefix` as this command sees it (the store, then the group's and the
    /// command's writes over it), in key order. Scans the overlay too, so it is for the rare
    /// events that must find every record of a kind (a right's status reaches each pledge that
    /// ever held the right), not for the write path of every command.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, LedgerError> {
        const CHUNK: usize = 1024;
        let mut keys = std::collections::BTreeSet::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let chunk = self
                .store
                .scan(prefix, after.as_deref(), CHUNK)
                .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
            let done = chunk.len() < CHUNK;
            after = chunk.last().map(|(key, _)| key.clone());
            keys.extend(chunk.into_iter().map(|(key, _)| key));
            if done {
                break;
            }
        }
        for (key, sum) in self.sums.iter().filter(|(key, _)| key.starts_with(prefix)) {
            match sum.encode() {
                None => keys.remove(key),
                Some(_) => keys.insert(key.clone()),
            };
        }
        // The command's writes override the group's, which override the store's.
        for layer in [&self.group, &self.command] {
            for (key, slot) in layer.iter().filter(|(key, _)| key.starts_with(prefix)) {
                match slot {
                    Slot::Deleted => keys.remove(key),
                    Slot::Encoded(_) | Slot::Decoded(_) => keys.insert(key.clone()),
                };
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Keeps the current command's writes in the group.
    pub fn accept(&mut self) {
        let command = std::mem::take(&mut self.command);
        self.group.extend(command);
        self.undo.clear();
    }

    /// Drops the current command's writes, and takes back what it added, latest first.
    pub fn reject(&mut self) {
        self.command.clear();
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Forget(key) => {
                    self.sums.remove(&key);
                }
                Undo::Subtract(key, subtract) => {
                    subtract(self.sums.get_mut(&key).expect("an added value stays until the group ends").as_mut());
                }
            }
        }
    }

    /// Whether the accepted commands wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty() && self.sums.is_empty()
    }

    pub fn into_batch(self) -> Batch {
        assert!(self.command.is_empty(), "every command is accepted or rejected before commit");
        assert!(self.undo.is_empty(), "every command is accepted or rejected before commit");
        let sums = self.sums.into_iter().map(|(key, sum)| {
            let bytes = sum.encode();
            (key, bytes)
        });
        let mut ops: Vec<_> = self.group.into_iter().map(|(key, slot)| (key, slot.bytes())).chain(sums).collect();
        // Sorted keys make the batch deterministic and kinder to the B-tree.
        ops.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Batch { ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn updates_stay_decoded_and_a_rejected_command_leaves_the_group_as_it_was() {
        let store = MemoryStore::default();
        let mut tx = Tx::new(&store);
        tx.update::<Vec<u32>>(b"k".to_vec(), |v| {
            v.push(1);
            true
        })
        .unwrap();
        tx.accept();
        tx.update::<Vec<u32>>(b"k".to_vec(), |v| {
            v.push(2);
            true
        })
        .unwrap();
        assert_eq!(tx.get::<Vec<u32>>(b"k").unwrap(), Some(vec![1, 2]));
        tx.reject();
        assert_eq!(tx.get::<Vec<u32>>(b"k").unwrap(), Some(vec![1]));
        // Another type at the same key is an internal error, not a silent reinterpretation.
        assert!(tx.update::<String>(b"k".to_vec(), |_| true).is_err());
        tx.reject();
        tx.update::<Vec<u32>>(b"gone".to_vec(), |_| false).unwrap();
        tx.accept();
        let batch = tx.into_batch();
        assert_eq!(batch.ops, [(b"gone".to_vec(), None), (b"k".to_vec(), Some(codec::encode(&vec![1u32])))]);
    }

    /// A count that may not go below zero, as an exposure row's counts may not.
    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Count(u32);

    impl Additive for Count {
        type Delta = i64;
        fn add(&mut self, delta: &i64) -> Result<(), LedgerError> {
            let next = u32::try_from(i64::from(self.0) + delta).map_err(|_| LedgerError::Internal("range".into()))?;
            self.0 = next;
            Ok(())
        }
        fn undo(&mut self, delta: &i64) {
            self.add(&-delta).expect("undoing an add stays in range");
        }
        fn is_zero(&self) -> bool {
            self.0 == 0
        }
    }

    #[test]
    fn additions_are_taken_back_exactly_when_their_command_is_rejected() {
        let store = MemoryStore::default();
        store.commit(Batch { ops: vec![(b"stored".to_vec(), Some(codec::encode(&Count(5))))] }).unwrap();
        let mut tx = Tx::new(&store);
        tx.add::<Count>(b"stored".to_vec(), &2).unwrap();
        tx.add::<Count>(b"new".to_vec(), &1).unwrap();
        tx.accept();
        // A command adds to both and to a third key, then fails on a range: all of it goes.
        tx.add::<Count>(b"stored".to_vec(), &10).unwrap();
        tx.add::<Count>(b"new".to_vec(), &1).unwrap();
        tx.add::<Count>(b"third".to_vec(), &4).unwrap();
        assert!(tx.add::<Count>(b"new".to_vec(), &-100).is_err(), "out of range");
        assert_eq!(tx.get::<Count>(b"new").unwrap(), Some(Count(2)), "a failed add changes nothing");
        tx.reject();
        assert_eq!(tx.get::<Count>(b"stored").unwrap(), Some(Count(7)));
        assert_eq!(tx.get::<Count>(b"new").unwrap(), Some(Count(1)));
        assert_eq!(tx.get::<Count>(b"third").unwrap(), None);
        // Back to zero: stored as no key.
        tx.add::<Count>(b"new".to_vec(), &-1).unwrap();
        tx.accept();
        assert_eq!(tx.get::<Count>(b"new").unwrap(), None);
        assert_eq!(
            tx.into_batch().ops,
            [(b"new".to_vec(), None), (b"stored".to_vec(), Some(codec::encode(&Count(7))))]
        );
    }

    #[test]
    fn a_prefix_scan_sees_the_store_under_the_group_and_the_command() {
        let store = MemoryStore::default();
        let ops = [b"p1", b"p2", b"p3", b"q1"].iter().map(|k| (k.to_vec(), Some(vec![0]))).collect();
        store.commit(Batch { ops }).unwrap();
        let mut tx = Tx::new(&store);
        tx.delete(b"p2".to_vec());
        tx.put(b"p4".to_vec(), &1u8);
        tx.accept();
        tx.put(b"p2".to_vec(), &1u8);
        tx.delete(b"p3".to_vec());
        tx.put(b"p0".to_vec(), &1u8);
        let keys = |tx: &Tx<'_>| tx.keys_with_prefix(b"p").unwrap();
        assert_eq!(keys(&tx), [&b"p0"[..], b"p1", b"p2", b"p4"]);
        tx.reject();
        assert_eq!(keys(&tx), [&b"p1"[..], b"p3", b"p4"]);
    }
}
