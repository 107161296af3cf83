//! Storage: the narrow interface the ledger needs from a key-value store, so that a second backend
//! (a distributed transactional KV store) can be added without touching the domain or gRPC.
//!
//! The contract is small on purpose: point reads, ordered prefix scans, and one atomic, durable
//! batch commit of puts, deletions and additions (`Op::Add` of `Counters`, folded by the engine:
//! the writer adds to a sum without reading it). The ledger's single writer is the only caller of
//! `commit`.

mod counters;
mod memory;
mod runs;
mod sled_store;

pub use counters::{Counters, Found, Overflow, Pending};
pub use memory::MemoryStore;
pub use runs::RunStore;
pub use sled_store::SledStore;

/// A failure of the storage engine itself, never of a request, typed by what the caller can
/// conclude from it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing was read or written; trying again later may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A write may or may not have taken effect.
    #[error("storage write outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// Stored bytes that are not what was written.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
}

pub type Entry = (Vec<u8>, Vec<u8>);

/// Which cells of a key's counters a reader wants (`Store::scan_cells`).
pub type CellsOf<'a> = &'a dyn Fn(&[u8]) -> std::ops::Range<u32>;

/// One write of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>),
    Delete,
    /// Adds to the counters stored at the key (none: zero); a sum that comes to zero is no key.
    /// A key is either only added to or only put and deleted.
    Add(Counters),
}

impl Op {
    /// The one write that has the effect of `self` and then `newer`.
    pub fn then(self, newer: Op) -> Result<Op, StoreError> {
        Ok(match (self, newer) {
            (_, newer @ (Op::Put(_) | Op::Delete)) => newer,
            (Op::Add(mut older), Op::Add(adds)) => {
                older.add(&adds).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Op::Add(older)
            }
            (Op::Put(value), adds @ Op::Add(_)) => fold_op(Some(value), adds)?.into(),
            (Op::Delete, adds @ Op::Add(_)) => fold_op(None, adds)?.into(),
        })
    }
}

impl From<Option<Vec<u8>>> for Op {
    fn from(value: Option<Vec<u8>>) -> Op {
        value.map_or(Op::Delete, Op::Put)
    }
}

/// A set of writes to apply all at once, in order.
#[derive(Debug, Default)]
pub struct Batch {
    pub ops: Vec<(Vec<u8>, Op)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Op::Put(value)));
    }
}

/// Applies `op` to `current` (the key's value before it): what an engine that stores values only
/// keeps.
pub fn fold_op(current: Option<Vec<u8>>, op: Op) -> Result<Option<Vec<u8>>, StoreError> {
    match op {
        Op::Put(value) => Ok(Some(value)),
        Op::Delete => Ok(None),
        Op::Add(adds) => {
            let mut pending = Pending::default();
            pending.over(Found::Added(&adds.encode()))?;
            pending.finish(current.as_deref())
        }
    }
}

pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries whose key starts with `prefix`, in ascending key order, starting
    /// strictly after `after` when given.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// `scan` of a prefix whose every value is counters, keeping of each the cells `cells(key)`
    /// names (encoded `Counters`, maybe empty): a reader that needs part of each sum (a past year's
    /// total, not its months) decodes only that part in each layer. A key with no cell in its
    /// range may be returned with none or left out; any other key `scan` returns is returned.
    fn scan_cells(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        cells: CellsOf<'_>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut entries = self.scan(prefix, after, limit)?;
        for (key, value) in &mut entries {
            *value = Counters::decode(value)?.restricted(&cells(key)).encode();
        }
        Ok(entries)
    }

    /// Applies every operation of `batch` atomically and returns only once it is durable on disk:
    /// a crash after the return loses none of it, a crash before keeps all or none of it.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;

    /// `commit`, calling `visible` at the instant the batch becomes visible to readers, with no
    /// read able to see a state in between: how the layer above (derived state's overlays) hands
    /// over what it held without a read counting an addition twice or missing it. The default
    /// calls it after the commit, which only an engine no layer reads through may keep.
    fn commit_and(&self, batch: Batch, visible: &mut dyn FnMut()) -> Result<(), StoreError> {
        self.commit(batch)?;
        visible();
        Ok(())
    }

    /// Bytes the store occupies on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Deletes every key, durably (before a rebuild from the journal). By default a batch of
    /// deletions at a time; an engine that can drop everything at once does.
    fn clear(&self) -> Result<(), StoreError> {
        const CHUNK: usize = 4096;
        loop {
            let held = self.scan(b"", None, CHUNK)?;
            if held.is_empty() {
                return Ok(());
            }
            self.commit(Batch { ops: held.into_iter().map(|(key, _)| (key, Op::Delete)).collect() })?;
        }
    }
}

/// What a `Guarded` store is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Get,
    Scan,
    Commit,
}

/// A store that asks `guard` before every access and fails the access when the guard does: how a
/// read is stopped at its caller's deadline, and how tests inject a failing disk.
pub struct Guarded<G> {
    inner: std::sync::Arc<dyn Store>,
    guard: G,
}

impl<G> Guarded<G> {
    pub fn new(inner: std::sync::Arc<dyn Store>, guard: G) -> Guarded<G> {
        Guarded { inner, guard }
    }
}

impl<G> std::fmt::Debug for Guarded<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").finish_non_exhaustive()
    }
}

impl<G: Fn(Access) -> Result<(), StoreError> + Send + Sync + 'static> Store for Guarded<G> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (self.guard)(Access::Get)?;
        self.inner.get(key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        (self.guard)(Access::Scan)?;
        self.inner.scan(prefix, after, limit)
    }

    fn scan_cells(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        cells: CellsOf<'_>,
    ) -> Result<Vec<Entry>, StoreError> {
        (self.guard)(Access::Scan)?;
        self.inner.scan_cells(prefix, after, limit, cells)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        (self.guard)(Access::Commit)?;
        self.inner.commit(batch)
    }

    fn commit_and(&self, batch: Batch, visible: &mut dyn FnMut()) -> Result<(), StoreError> {
        (self.guard)(Access::Commit)?;
        self.inner.commit_and(batch, visible)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }

    fn clear(&self) -> Result<(), StoreError> {
        (self.guard)(Access::Commit)?;
        self.inner.clear()
    }
}

/// The contract every engine keeps, one suite for all of them (each engine's tests call `check`).
#[cfg(test)]
pub(crate) mod contract {
    use super::{Batch, Counters, Op, Store};

    fn put(k: &str, v: &str) -> (Vec<u8>, Op) {
        (k.as_bytes().to_vec(), Op::Put(v.as_bytes().to_vec()))
    }

    fn add(k: &str, cells: &[(u32, i128)]) -> (Vec<u8>, Op) {
        (k.as_bytes().to_vec(), Op::Add(cells.iter().copied().collect()))
    }

    fn sum(store: &dyn Store, k: &str) -> Option<Vec<(u32, i128)>> {
        store.get(k.as_bytes()).unwrap().map(|v| Counters::decode(&v).unwrap().cells().to_vec())
    }

    fn keys(entries: Vec<super::Entry>) -> Vec<String> {
        entries.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
    }

    /// Runs the suite on the store `open` gives, then on the store it gives again (a reopen, for
    /// a durable engine: `open` must drop nothing it was given before).
    pub fn check(open: impl Fn() -> Box<dyn Store>) {
        {
            let store = open();
            store.commit(Batch { ops: ["a1", "a2", "a3", "b1", "c1"].iter().map(|k| put(k, k)).collect() }).unwrap();
            // A later write of a key wins over an earlier one in the same batch.
            store
                .commit(Batch {
                    ops: vec![(b"a2".to_vec(), Op::Delete), put("b1", "x"), put("b1", "y"), put("a4", "a4")],
                })
                .unwrap();
            assert_eq!(keys(store.scan(b"a", None, 10).unwrap()), ["a1", "a3", "a4"]);
            assert_eq!(keys(store.scan(b"a", Some(b"a1"), 10).unwrap()), ["a3", "a4"]);
            assert_eq!(keys(store.scan(b"a", None, 1).unwrap()), ["a1"]);
            assert_eq!(keys(store.scan(b"", Some(b"a4"), 10).unwrap()), ["b1", "c1"]);
            assert_eq!(store.get(b"b1").unwrap().as_deref(), Some(&b"y"[..]));
            assert_eq!(store.get(b"a2").unwrap(), None);
            assert_eq!(store.get(b"zz").unwrap(), None);
            // Keys of every length and values up to a few blocks long round-trip.
            let big = "v".repeat(70_000);
            let ops = (0..2_000).map(|i| put(&format!("d{i:06}"), if i == 7 { &big } else { "d" })).collect();
            store.commit(Batch { ops }).unwrap();
            assert_eq!(store.get(b"d000007").unwrap().map(|v| v.len()), Some(70_000));
            assert_eq!(store.scan(b"d", Some(b"d001000"), 5000).unwrap().len(), 999);
            // Additions fold, within a batch and across batches; a sum that comes to zero is no key.
            store
                .commit(Batch { ops: vec![add("s1", &[(0, 5), (3, 1)]), add("s1", &[(0, 2)]), add("s2", &[(1, 1)])] })
                .unwrap();
            store
                .commit(Batch { ops: vec![add("s1", &[(3, -1)]), add("s2", &[(1, -1)]), add("s3", &[(7, -4)])] })
                .unwrap();
            assert_eq!(sum(store.as_ref(), "s1"), Some(vec![(0, 7)]));
            assert_eq!(sum(store.as_ref(), "s2"), None);
            assert_eq!(keys(store.scan(b"s", None, 10).unwrap()), ["s1", "s3"]);
            // Part of each sum: every key a scan returns, with the cells asked for (maybe none).
            let part = store.scan_cells(b"s", None, 10, &|key| if key == b"s1" { 0..1 } else { 0..7 }).unwrap();
            let part: Vec<_> =
                part.into_iter().map(|(k, v)| (k, Counters::decode(&v).unwrap().cells().to_vec())).collect();
            assert!(part.contains(&(b"s1".to_vec(), vec![(0, 7)])), "{part:?}");
            assert!(part.contains(&(b"s3".to_vec(), vec![])), "{part:?}");
        }
        let store = open();
        assert_eq!(keys(store.scan(b"a", None, 10).unwrap()), ["a1", "a3", "a4"]);
        assert_eq!(store.scan(b"d", None, 5000).unwrap().len(), 2000);
        store.commit(Batch { ops: vec![add("s3", &[(7, 4), (8, 1)])] }).unwrap();
        assert_eq!(sum(store.as_ref(), "s3"), Some(vec![(8, 1)]));
        assert_eq!(sum(store.as_ref(), "s1"), Some(vec![(0, 7)]));
        store.clear().unwrap();
        assert!(store.scan(b"", None, 10).unwrap().is_empty());
        store.commit(Batch { ops: vec![put("e1", "e")] }).unwrap();
        assert_eq!(keys(store.scan(b"", None, 10).unwrap()), ["e1"]);
    }
}
