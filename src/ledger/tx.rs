//! The writer's view of the store while it builds one group commit: reads see the store plus every
//! write accepted earlier in the group, and each command's writes can be kept or dropped alone, so
//! one refused request never fails the others in its group.
//!
//! Aggregates (exposure rows, as-of sums) are touched by almost every command of a group. They are
//! counters (`store::Counters`), only ever added to: `add` sums a command's deltas per key in the
//! group, without reading the stored value, with an undo log that subtracts them again if the
//! command is rejected; the group's sums go to the store as `Op::Add`, folded by the engine.
//! Reading each aggregate back first (to add to it) was half of the writer's time at 1M pledges
//! (bench/RESULTS.md, 2026-12-05). `update` keeps other values decoded in the group, copied per
//! command.

use super::codec;
use crate::domain::LedgerError;
use crate::store::{Batch, Counters, Op, Store};
use std::any::Any;

/// The writer's maps hash tens of short keys per registration: a fast hash, not a DoS-resistant
/// one (the keys are the projector's, built from validated content).
type Hasher = foldhash::fast::FixedState;
type Map<V> = std::collections::HashMap<Vec<u8>, V, Hasher>;

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

fn overflow(key: &[u8]) -> LedgerError {
    LedgerError::Internal(format!("the counters at {} left their range", String::from_utf8_lossy(key)))
}

/// One key's state in the overlay.
enum Slot {
    Deleted,
    Encoded(Vec<u8>),
    Decoded(Box<dyn Cached>),
}

impl Slot {
    fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Slot::Deleted => None,
            Slot::Encoded(bytes) => Some(bytes),
            Slot::Decoded(value) => Some(value.encode()),
        }
    }

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
    group: Map<Slot>,
    /// Writes of the command being executed.
    command: Map<Slot>,
    /// What the group added to counters (`add`), per key; never in `group` or `command`.
    sums: indexmap::IndexMap<Vec<u8>, Counters, Hasher>,
    /// What the current command did to `sums`, to take back if it is rejected, latest last.
    undo: Vec<Undo>,
    /// The cells of the current command's `Undo::Added`, one buffer for all (no vector per add).
    undo_cells: Vec<(u32, i128)>,
}

/// One step of a command's additions, by the key's index in `Tx::sums` (no copy of the key).
enum Undo {
    /// The command added the key, with its first delta: the last entry of `sums` when undone
    /// (undone latest first, so every key added after it is gone already).
    Inserted,
    /// The key at this index was added the cells `undo_cells[range]`.
    Added(usize, std::ops::Range<usize>),
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
        Tx {
            store,
            group: Map::default(),
            command: Map::default(),
            sums: Default::default(),
            undo: Vec::new(),
            undo_cells: Vec::new(),
        }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        if let Some(slot) = self.command.get(key).or_else(|| self.group.get(key)) {
            return Ok(slot.bytes());
        }
        let stored = self.store.get(key).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let Some(added) = self.sums.get(key) else { return Ok(stored) };
        let mut sum = match stored {
            Some(bytes) => Counters::decode(&bytes).map_err(|e| LedgerError::Internal(e.to_string()))?,
            None => Counters::default(),
        };
        sum.add(added).map_err(|_| overflow(key))?;
        Ok((!sum.is_zero()).then(|| sum.encode()))
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

    /// Adds `delta` to the counters at `key`, without reading them; the command's rejection
    /// subtracts it again. A key is only ever added to, never put.
    pub fn add(&mut self, key: Vec<u8>, delta: Counters) -> Result<(), LedgerError> {
        self.add_cells(&key, delta.cells())
    }

    /// `add` of cells in the canonical form (`Counters::from_sorted`), with the key borrowed: a
    /// key the group added to already is neither copied nor allocated.
    pub fn add_cells(&mut self, key: &[u8], cells: &[(u32, i128)]) -> Result<(), LedgerError> {
        debug_assert!(!self.command.contains_key(key) && !self.group.contains_key(key), "added to and put");
        if cells.is_empty() {
            return Ok(());
        }
        match self.sums.get_index_of(key) {
            Some(at) => {
                self.sums[at].add_cells(cells).map_err(|_| overflow(key))?;
                let start = self.undo_cells.len();
                self.undo_cells.extend_from_slice(cells);
                self.undo.push(Undo::Added(at, start..self.undo_cells.len()));
            }
            None => {
                self.sums.insert(key.to_vec(), Counters::from_sorted(cells.to_vec()));
                self.undo.push(Undo::Inserted);
            }
        }
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
        for key in self.sums.keys().filter(|key| key.starts_with(prefix)) {
            match self.get_raw(key)? {
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
        self.undo_cells.clear();
    }

    /// Drops the current command's writes, and takes back what it added, latest first.
    pub fn reject(&mut self) {
        self.command.clear();
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Inserted => {
                    self.sums.pop().expect("an added key stays until its command ends");
                }
                Undo::Added(at, range) => {
                    let negated: Vec<(u32, i128)> = self.undo_cells[range].iter().map(|(i, v)| (*i, -v)).collect();
                    self.sums[at].add_cells(&negated).expect("taking back what was added stays in range");
                }
            }
        }
        self.undo_cells.clear();
    }

    /// Whether the accepted commands wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty() && self.sums.is_empty()
    }

    pub fn into_batch(self) -> Batch {
        assert!(self.command.is_empty(), "every command is accepted or rejected before commit");
        assert!(self.undo.is_empty(), "every command is accepted or rejected before commit");
        let sums = self.sums.into_iter().filter(|(_, sum)| !sum.is_zero()).map(|(key, sum)| (key, Op::Add(sum)));
        // Unsorted: each key once (a key is put or added to, never both), and every engine and
        // overlay applies a batch the same in any order; sorting was 7% of the writer at 1M.
        let ops = self.group.into_iter().map(|(key, slot)| (key, Op::from(slot.into_bytes()))).chain(sums).collect();
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
        let mut batch = tx.into_batch();
        batch.ops.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(batch.ops, [(b"gone".to_vec(), Op::Delete), (b"k".to_vec(), Op::Put(codec::encode(&vec![1u32])))]);
    }

    fn cells(c: &[(u32, i128)]) -> Counters {
        c.iter().copied().collect()
    }

    #[test]
    fn additions_are_written_blind_and_taken_back_exactly_when_their_command_is_rejected() {
        let store = MemoryStore::default();
        store.commit(Batch { ops: vec![(b"stored".to_vec(), Op::Add(cells(&[(0, 5)])))] }).unwrap();
        let mut tx = Tx::new(&store);
        tx.add(b"stored".to_vec(), cells(&[(0, 2)])).unwrap();
        tx.add(b"new".to_vec(), cells(&[(1, 1)])).unwrap();
        tx.accept();
        // A command adds to both and to a third key, then is rejected: all of it goes.
        tx.add(b"stored".to_vec(), cells(&[(0, 10), (3, 1)])).unwrap();
        tx.add(b"new".to_vec(), cells(&[(1, 1)])).unwrap();
        tx.add(b"third".to_vec(), cells(&[(2, 4)])).unwrap();
        let sum = |tx: &Tx<'_>, key: &[u8]| tx.get_raw(key).unwrap().map(|b| Counters::decode(&b).unwrap());
        assert_eq!(sum(&tx, b"stored"), Some(cells(&[(0, 17), (3, 1)])), "reads see the store plus the group");
        tx.reject();
        assert_eq!(sum(&tx, b"stored"), Some(cells(&[(0, 7)])));
        assert_eq!(sum(&tx, b"new"), Some(cells(&[(1, 1)])));
        assert_eq!(sum(&tx, b"third"), None);
        // Back to zero: no key, and nothing to write.
        tx.add(b"new".to_vec(), cells(&[(1, -1)])).unwrap();
        tx.accept();
        assert_eq!(sum(&tx, b"new"), None);
        assert_eq!(tx.keys_with_prefix(b"").unwrap(), [b"stored".to_vec()]);
        // The batch holds the group's deltas, not the sums: the stored value was never read.
        assert_eq!(tx.into_batch().ops, [(b"stored".to_vec(), Op::Add(cells(&[(0, 2)])))]);
    }

    #[test]
    fn a_prefix_scan_sees_the_store_under_the_group_and_the_command() {
        let store = MemoryStore::default();
        let ops = [b"p1", b"p2", b"p3", b"q1"].iter().map(|k| (k.to_vec(), Op::Put(vec![0]))).collect();
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
