//! An in-memory backend: the same contract without durability. The journal verifier rebuilds
//! derived state into it, and unit tests run the ledger on it.

use super::{Batch, Entry, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct MemoryStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        use std::ops::Bound;
        let map = self.map();
        let start = match after {
            Some(a) => Bound::Excluded(a.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_and(batch, &mut || {})
    }

    fn commit_and(&self, batch: Batch, visible: &mut dyn FnMut()) -> Result<(), StoreError> {
        let mut map = self.map.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Checked whole before any of it is applied: a batch lands all or nothing.
        let mut next: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, op) in batch.ops {
            let current = match next.get(&k) {
                Some(v) => v.clone(),
                None => map.get(&k).cloned(),
            };
            next.insert(k, super::fold_op(current, op)?);
        }
        for (k, v) in next {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        // Under the lock: no read sees the batch before `visible` ran.
        visible();
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_store_contract_holds() {
        // One store shared by both opens: memory keeps what it was given while it lives.
        let store = std::sync::Arc::new(super::MemoryStore::default());
        crate::store::contract::check(|| Box::new(Shared(store.clone())));
    }

    struct Shared(std::sync::Arc<super::MemoryStore>);

    impl super::Store for Shared {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, super::StoreError> {
            self.0.get(key)
        }
        fn scan(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<super::Entry>, super::StoreError> {
            self.0.scan(prefix, after, limit)
        }
        fn commit(&self, batch: super::Batch) -> Result<(), super::StoreError> {
            self.0.commit(batch)
        }
        fn size_on_disk(&self) -> Result<u64, super::StoreError> {
            self.0.size_on_disk()
        }
    }
}
