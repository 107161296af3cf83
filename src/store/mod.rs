//! Storage: the narrow interface the ledger needs from a key-value store, so that a second backend
//! (a distributed transactional KV store) can be added without touching the domain or gRPC.
//!
//! The contract is small on purpose: point reads, ordered prefix scans, and one atomic, durable
//! batch commit. The ledger's single writer is the only caller of `commit`.

mod memory;
mod sled_store;

pub use memory::MemoryStore;
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
}
