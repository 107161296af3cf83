//! Journal format version 0: the entries written before the journal had a format of its own (up
//! to commit 84ac8ba). They were the postcard encoding of the server's own structs, with each
//! change carrying the whole pledge before and after. They are kept byte for byte (prefixed with
//! the version byte 0), so their hashes, which cover exactly those bytes, still verify and the
//! chain continues into version 1 unbroken.
//!
//! The types below are frozen copies of the release's `Entry` and `Event`. Their fields hold domain
//! types whose serde shape must therefore not change; the checked-in data directory and export of
//! that release (tests/fixtures/release-84ac8ba) are decoded by the tests to keep that true.

use super::{Entry, Event, Hash, JournalError, RequestKey, Stored};
use crate::domain::Micros;
use crate::domain::credit_line::CreditLine;
use crate::domain::pledge::Pledge;
use crate::domain::principal::PrincipalName;
use crate::ledger::principals::{CertificateBinding, PrincipalRecord};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const VERSION: u8 = 0;

/// The release's event, variant for variant (postcard encodes the variant index).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LegacyEvent {
    PledgeRegistered { pledge: Pledge },
    PledgeChanged { before: Pledge, after: Pledge },
    PledgeReleased { before: Pledge, after: Pledge },
    CreditLineCreated { line: CreditLine },
    PrincipalCreated { record: PrincipalRecord },
    PrincipalRevoked { before: PrincipalRecord, after: PrincipalRecord },
    CertificateBound { record: PrincipalRecord, binding: CertificateBinding },
}

/// The release's entry, field for field; also the line format of its `ipledger export`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegacyEntry {
    pub sequence: u64,
    pub at: Micros,
    pub principal: PrincipalName,
    pub request: Option<(Uuid, [u8; 32])>,
    pub event: LegacyEvent,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl LegacyEntry {
    /// The release's hash: SHA-256 over the previous hash and the postcard bytes of the rest.
    pub fn compute_hash(&self) -> Hash {
        let body = postcard::to_allocvec(&(self.sequence, self.at, &self.principal, &self.request, &self.event))
            .expect("in-memory encoding");
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash);
        hasher.update(&body);
        hasher.finalize().into()
    }

    /// The entry kept as version 0 of the journal.
    pub fn to_stored(&self) -> Stored {
        let mut bytes = vec![VERSION];
        bytes.extend(postcard::to_allocvec(self).expect("in-memory encoding"));
        Stored { sequence: self.sequence, hash: self.hash, bytes }
    }
}

/// Decodes a version-0 entry and checks its hash the release's way.
pub fn decode(stored: &Stored) -> Result<Entry, JournalError> {
    let corrupt = |what: String| JournalError::Corrupt(format!("entry {} (version 0): {what}", stored.sequence));
    let legacy: LegacyEntry = postcard::from_bytes(&stored.bytes[1..]).map_err(|e| corrupt(e.to_string()))?;
    if legacy.compute_hash() != legacy.hash {
        return Err(corrupt("its hash does not match its content".to_owned()));
    }
    let event = match legacy.event {
        LegacyEvent::PledgeRegistered { pledge } => Event::PledgeRegistered { pledge },
        LegacyEvent::PledgeChanged { after, .. } => {
            let change =
                after.changes.last().cloned().ok_or_else(|| corrupt("a change that lists no change".to_owned()))?;
            Event::PledgeChanged { id: after.id, change }
        }
        LegacyEvent::PledgeReleased { after, .. } => {
            let release = after.release.ok_or_else(|| corrupt("a release of a pledge not released".to_owned()))?;
            Event::PledgeReleased { id: after.id, release }
        }
        LegacyEvent::CreditLineCreated { line } => Event::CreditLineCreated { line },
        LegacyEvent::PrincipalCreated { record } => Event::PrincipalCreated { record },
        LegacyEvent::PrincipalRevoked { after, .. } => Event::PrincipalRevoked { name: after.principal.name },
        LegacyEvent::CertificateBound { record, binding } => {
            Event::CertificateBound { name: record.principal.name, binding }
        }
    };
    Ok(Entry {
        sequence: legacy.sequence,
        at: legacy.at,
        principal: legacy.principal,
        request: legacy.request.map(|(id, fingerprint)| RequestKey { id, fingerprint, form: VERSION }),
        event,
        prev_hash: legacy.prev_hash,
        hash: legacy.hash,
    })
}

/// The release's request fingerprint (form 0): SHA-256 of the postcard bytes of the principal's
/// name and the command. A retry, after the upgrade, of a request first sent to the release is
/// recognised by it; the serde shape of `apply::Command` is frozen for this reason.
pub fn fingerprint<C: serde::Serialize>(principal: &PrincipalName, command: &C) -> Hash {
    let bytes = postcard::to_allocvec(&(principal, command)).expect("in-memory encoding");
    Sha256::digest(bytes).into()
}
