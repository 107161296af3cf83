//! Storage: the narrow interface the ledger needs from a key-value store, so that a second backend
//! (a distributed transactional KV store) can be added without touching the domain or gRPC.
//!
//! The contract is small on purpose: point reads, ordered prefix scans, and one atomic, durable
//! batch commit. The ledger's single writer is the only caller of `commit`.

mod memory;
mod sled_store;

pub use memory::MemoryStore;
pub use sled_store::SledStore;

/// A failure of the storage engine itself (I/O, corruption), never of a request.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

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
