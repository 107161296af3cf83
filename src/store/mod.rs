//! Storage: the narrow interface the ledger needs from a key-value store, so that a second backend
//! (a distributed transactional KV store) can be added without touching the domain or gRPC.
//!
//! The contract is small on purpose: point reads, ordered prefix scans, and one atomic, durable
//! batch commit. The ledger's single writer is the only caller of `commit`.

mod memory;
mod runs;
mod sled_store;

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

/// A set of puts and deletes to apply all at once.
#[derive(Debug, Default)]
pub struct Batch {
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` entries whose key starts with `prefix`, in ascending key order, starting
    /// strictly after `after` when given.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// Applies every operation of `batch` atomically and returns only once it is durable on disk:
    /// a crash after the return loses none of it, a crash before keeps all or none of it.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;

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
            self.commit(Batch { ops: held.into_iter().map(|(key, _)| (key, None)).collect() })?;
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

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        (self.guard)(Access::Commit)?;
        self.inner.commit(batch)
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
    use super::{Batch, Store};

    fn put(k: &str, v: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
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
                .commit(Batch { ops: vec![(b"a2".to_vec(), None), put("b1", "x"), put("b1", "y"), put("a4", "a4")] })
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
        }
        let store = open();
        assert_eq!(keys(store.scan(b"a", None, 10).unwrap()), ["a1", "a3", "a4"]);
        assert_eq!(store.scan(b"d", None, 5000).unwrap().len(), 2000);
        store.clear().unwrap();
        assert!(store.scan(b"", None, 10).unwrap().is_empty());
        store.commit(Batch { ops: vec![put("e1", "e")] }).unwrap();
        assert_eq!(keys(store.scan(b"", None, 10).unwrap()), ["e1"]);
    }
}
