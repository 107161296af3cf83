//! The live principals, in memory: who a bearer token or a client certificate stands for.
//! Loaded from the store at start; the writer updates it right after committing a change and
//! before acknowledging it, so a revoked token stops working the moment its revocation returns.
//!
//! A client certificate stands for a principal only through a binding an admin made (its exact
//! subject, or one of its subject alternative names), never because a name in it happens to equal
//! a principal's name. A binding belongs to one principal; a revoked principal's bindings stop
//! working with its token.

use super::codec;
use super::keys;
use crate::domain::LedgerError;
use crate::domain::principal::{Principal, PrincipalName, TokenHash};
// The binding is a domain value; named here too, where the live maps use it.
pub use crate::domain::principal::{BINDING_CHARS_MAX, BINDINGS_PER_PRINCIPAL_MAX, CertificateBinding};
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
    /// Whose a certificate binding is (live or not: `by_name` decides whether it authenticates).
    by_binding: HashMap<CertificateBinding, PrincipalName>,
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
        let bindings = store
            .scan(keys::CERTIFICATE_BINDINGS, None, PRINCIPALS_MAX)
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let mut maps = principals.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, value) in bindings {
            let (name, binding): (PrincipalName, CertificateBinding) = codec::decode(&key, &value)?;
            maps.by_binding.insert(binding, name);
        }
        drop(maps);
        Ok(principals)
    }

    /// Reflects a committed principal record and re-reads its certificate bindings from `store`
    /// (the writer calls this right after the commit, before acknowledging it).
    pub fn apply_committed(&self, store: &dyn Store, record: &PrincipalRecord) -> Result<(), LedgerError> {
        self.apply(record);
        let name = &record.principal.name;
        let key = keys::certificate_bindings_of(name);
        let stored = store.get(&key).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let bindings: Vec<CertificateBinding> =
            stored.map(|v| codec::decode(&key, &v)).transpose()?.unwrap_or_default();
        let mut maps = self.maps.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for binding in bindings {
            maps.by_binding.insert(binding, name.clone());
        }
        Ok(())
    }

    /// Reflects the record of `name` as `store` now holds it (a follower, after applying journal
    /// entries that created or changed it).
    pub fn refresh(&self, store: &dyn Store, name: &PrincipalName) -> Result<(), LedgerError> {
        let key = keys::principal(name);
        let Some(value) = store.get(&key).map_err(|e| LedgerError::Unavailable(e.to_string()))? else {
            return Err(LedgerError::Internal(format!("principal {name} is missing from derived state")));
        };
        let record: PrincipalRecord = codec::decode(&key, &value)?;
        self.apply_committed(store, &record)
    }

    /// The live principal that the bindings among `presented` name, if they name exactly one:
    /// bindings of two principals, or of a revoked one, authenticate nobody.
    pub fn by_certificate(&self, presented: &[CertificateBinding]) -> Option<Principal> {
        let maps = self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut owner: Option<&PrincipalName> = None;
        for binding in presented {
            if let Some(name) = maps.by_binding.get(binding) {
                match owner {
                    Some(other) if other != name => return None,
                    _ => owner = Some(name),
                }
            }
        }
        maps.by_name.get(owner?).cloned()
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

    /// The bindings of the principal named `name` (live or not), for answers about it.
    pub fn bindings(store: &dyn Store, name: &PrincipalName) -> Result<Vec<CertificateBinding>, LedgerError> {
        let key = keys::certificate_bindings_of(name);
        let stored = store.get(&key).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        Ok(stored.map(|v| codec::decode(&key, &v)).transpose()?.unwrap_or_default())
    }

    pub fn is_empty(&self) -> bool {
        self.maps.read().unwrap_or_else(|poisoned| poisoned.into_inner()).by_name.is_empty()
    }
}
