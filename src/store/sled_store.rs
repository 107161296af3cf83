//! The embedded backend: one sled tree with key prefixes. A group of writes is one `apply_batch`
//! (atomic) followed by one `flush` (durable), which is what makes group commit fast: sled does
//! about 2,500 flushed transactions a second one at a time, and 100,000 writes a second batched.
//!
//! sled's own `flush_async` is never used (concurrent calls can deadlock, sled issue 1308), and
//! neither is `generate_id` (it jumps by millions after a restart).

use super::{Batch, Entry, Store, StoreError};
use std::path::Path;

const LOCK_WAIT_MS: u64 = 3000;
const LOCK_RETRY_MS: u64 = 50;

#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
}

/// A sled failure where nothing was written.
pub(super) fn err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// A failure once a batch was handed to sled: it may be in memory, or on disk, or neither.
pub(super) fn unknown(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        e => StoreError::OutcomeUnknown(e.to_string()),
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. `cache_bytes` bounds sled's page cache.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        Ok(SledStore { db: open_db(dir, cache_bytes)? })
    }
}

/// Opens (or creates) a sled database in `dir` the way every store here does.
pub(super) fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        // Durability comes from our explicit flush after every batch; sled's timer flush is
        // only a backstop.
        .flush_every_ms(Some(1000));
    // A process that just closed the store may hold its lock for a moment more (sled's
    // background threads finish their tick): wait up to LOCK_WAIT_MS before giving up.
    let mut waited_ms = 0;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if e.to_string().contains("could not acquire lock") && waited_ms < LOCK_WAIT_MS => {
                std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
                waited_ms += LOCK_RETRY_MS;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

impl Store for SledStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        let iter = match after {
            Some(after) => {
                let mut start = after.to_vec();
                // The smallest key strictly greater than `after`.
                start.push(0);
                self.db.range(start..)
            }
            None => self.db.range(prefix.to_vec()..),
        };
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(err)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        // Additions are folded here, over what sled holds: this engine stores values only.
        let mut folded: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> = std::collections::BTreeMap::new();
        for (key, op) in batch.ops {
            let current = match folded.get(&key) {
                Some(v) => v.clone(),
                None if matches!(op, super::Op::Add(_)) => self.db.get(&key).map_err(err)?.map(|v| v.to_vec()),
                None => None,
            };
            folded.insert(key, super::fold_op(current, op)?);
        }
        let mut b = sled::Batch::default();
        for (key, value) in folded {
            match value {
                Some(v) => b.insert(key, v),
                None => b.remove(key),
            }
        }
        let started = std::time::Instant::now();
        self.db.apply_batch(b).map_err(unknown)?;
        let applied_us = started.elapsed().as_micros() as u64;
        let bytes = self.db.flush().map_err(unknown)?;
        tracing::trace!(
            applied_us,
            flushed_us = started.elapsed().as_micros() as u64 - applied_us,
            bytes,
            "sled batch"
        );
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_contract_holds() {
        let dir = tempfile::tempdir().unwrap();
        crate::store::contract::check(|| Box::new(SledStore::open(dir.path(), 1 << 20).unwrap()));
    }

    #[test]
    fn batch_scan_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path(), 1 << 20).unwrap();
            let mut batch = Batch::default();
            for k in ["a1", "a2", "a3", "b1"] {
                batch.put(k.as_bytes().to_vec(), k.as_bytes().to_vec());
            }
            store.commit(batch).unwrap();
            store.commit(Batch { ops: vec![(b"a2".to_vec(), super::super::Op::Delete)] }).unwrap();
        }
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let keys =
            |entries: Vec<Entry>| entries.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>();
        assert_eq!(keys(store.scan(b"a", None, 10).unwrap()), ["a1", "a3"]);
        assert_eq!(keys(store.scan(b"a", Some(b"a1"), 10).unwrap()), ["a3"]);
        assert_eq!(keys(store.scan(b"a", None, 1).unwrap()), ["a1"]);
        assert_eq!(store.get(b"b1").unwrap().as_deref(), Some(&b"b1"[..]));
    }
}
