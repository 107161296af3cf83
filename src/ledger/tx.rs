//! The writer's view of the store while it builds one group commit: reads see the store plus every
//! write accepted earlier in the group, and each command's writes can be kept or dropped alone, so
//! one refused request never fails the others in its group.

use super::codec;
use crate::domain::LedgerError;
use crate::store::{Batch, Store};
use std::collections::HashMap;

pub struct Tx<'s> {
    store: &'s dyn Store,
    /// Writes of the commands accepted so far in this group.
    group: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Writes of the command being executed.
    command: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("group", &self.group.len()).field("command", &self.command.len()).finish()
    }
}

impl<'s> Tx<'s> {
    pub fn new(store: &'s dyn Store) -> Tx<'s> {
        Tx { store, group: HashMap::new(), command: HashMap::new() }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        if let Some(v) = self.command.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(key) {
            return Ok(v.clone());
        }
        self.store.get(key).map_err(|e| LedgerError::Unavailable(e.to_string()))
    }

    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, LedgerError> {
        self.get_raw(key)?.map(|bytes| codec::decode(key, &bytes)).transpose()
    }

    pub fn put<T: serde::Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.command.insert(key, Some(codec::encode(value)));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.command.insert(key, None);
    }

    /// Keeps the current command's writes in the group.
    pub fn accept(&mut self) {
        let command = std::mem::take(&mut self.command);
        self.group.extend(command);
    }

    /// Drops the current command's writes.
    pub fn reject(&mut self) {
        self.command.clear();
    }

    /// Whether the accepted commands wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.group.is_empty()
    }

    pub fn into_batch(self) -> Batch {
        assert!(self.command.is_empty(), "every command is accepted or rejected before commit");
        let mut ops: Vec<_> = self.group.into_iter().collect();
        // Sorted keys make the batch deterministic and kinder to the B-tree.
        ops.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Batch { ops }
    }
}
