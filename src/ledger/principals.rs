//! The live principals, in memory: who a bearer token or a client certificate's name stands for.
//! Loaded from the store at start; the writer updates it right after committing a change and
//! before acknowledging it, so a revoked token stops working the moment its revocation returns.

use super::codec;
use super::keys;
use crate::domain::LedgerError;
use crate::domain::principal::{Principal, PrincipalName, TokenHash};
use crate::store::Store;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

/// The stored record of a principal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrincipalRecord {
    pub principal: Principal,
    pub token_hash: TokenHash,
}

#[derive(Debug, Default)]
struct Maps {
    by_token: HashMap<TokenHash, Principal>,
    by_name: HashMap<PrincipalName, Principal>,
    /// Names whose revocation is committed: the writer refuses their queued writes.
    revoked: HashSet<PrincipalName>,
}

#[derive(Debug)]
pub struct Principals {
    maps: RwLock<Maps>,
    /// Counts committed revocations: open streams watch it and end when their principal is gone.
    revocations: tokio::sync::watch::Sender<u64>,
}

impl Default for Principals {
    fn default() -> Principals {
        Principals { maps: RwLock::default(), revocations: tokio::sync::watch::Sender::new(0) }
    }
}

/// Principals loaded at start at most: far more than the banks and offices of a country.
const PRINCIPALS_MAX: usize = 1_000_000;

impl Principals {
    pub fn load(store: &dyn Store) -> Result<Principals, LedgerError> {
        let principals = Principals::default();
        let entries =
            store.scan(keys::PRINCIPALS, None, PRINCIPALS_MAX).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        for (key, value) in entries {
            let record: PrincipalRecord = codec::decode(&key, &value)?;
            principals.apply(&record);
        }
        Ok(principals)
    }

    /// Reflects a committed record: live principals authenticate, revoked ones no longer do.
    pub fn apply(&self, record: &PrincipalRecord) {
        let mut maps = self.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if record.principal.revoke_time.is_some() {
            maps.by_token.remove(&record.token_hash);
            maps.by_name.remove(&record.principal.name);
            maps.revoked.insert(record.principal.name.clone());
            drop(maps);
            self.revocations.send_modify(|count| *count += 1);
        } else {
            maps.by_token.insert(record.token_hash, record.principal.clone());
            maps.by_name.insert(record.principal.name.clone(), record.principal.clone());
        }
    }

    pub fn by_token(&self, hash: &TokenHash) -> Option<Principal> {
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner()).by_token.get(hash).cloned()
    }

    pub fn by_name(&self, name: &PrincipalName) -> Option<Principal> {
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner()).by_name.get(name).cloned()
    }

    /// Whether `name`'s revocation is committed. Principals the server acts as itself (`system`,
    /// `operator`) are never revoked.
    pub fn is_revoked(&self, name: &PrincipalName) -> bool {
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner()).revoked.contains(name)
    }

    /// Changes after every committed revocation; check `is_revoked` when it does.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner()).by_name.is_empty()
    }
}
