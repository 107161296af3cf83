//! The journal: the ground state of the ledger. Every accepted write appends one entry with a
//! gapless sequence number, a strictly increasing server time, the principal, the request id and
//! fingerprint, and the event: what the write changed, never a copy of derived records. Everything
//! else the ledger holds (records, indexes, exposure, as-of sums, statistics facts) is derived
//! from the journal by the projector and can be rebuilt from it.
//!
//! Entries are stored in a format of their own (`format`, specified in docs/journal-format.md), with
//! a version byte per entry; entries written before that format existed (version 0) are read by
//! `legacy`. Each entry's hash covers its version byte and its bytes, which name the previous
//! entry's hash, so changing any byte of any entry breaks the chain from there on.
//!
//! The journal sits behind `Journal` (append a group durably after an expected head, read from a
//! sequence, head), apart from the derived-state store, so that an engine other than the embedded
//! one can hold it.

pub mod format;
pub mod lease;
pub mod legacy;
mod memory;
pub mod merkle;
pub(crate) mod postgres;
mod sled_journal;

pub use memory::{MemoryJournal, MemoryLease};
pub use postgres::{PostgresJournal, Target as PostgresTarget};
pub use sled_journal::SledJournal;

use crate::domain::Micros;
use crate::domain::credit_line::CreditLine;
use crate::domain::ident::RightNumber;
use crate::domain::pledge::{Change, Pledge, Release};
use crate::domain::principal::PrincipalName;
use crate::domain::programme::{Claim, Decision, Payment, Programme};
use crate::domain::right::RightState;
use crate::domain::risk::{NewDefault, NewResolution, Valuation};
use crate::domain::text::Note;
use crate::ledger::principals::{CertificateBinding, PrincipalRecord};
use uuid::Uuid;

pub type Hash = [u8; 32];

/// The last entry's sequence and hash; (0, zeros) before the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub sequence: u64,
    pub hash: Hash,
}

/// What an accepted write changed. Changes and releases name their pledge and carry what changed;
/// the pledge before and after is derived state (`Pledge::apply_change`, `Pledge::apply_release`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The pledge as registered (version 1, no changes).
    PledgeRegistered {
        pledge: Pledge,
    },
    PledgeChanged {
        id: Uuid,
        change: Change,
    },
    /// Released by the entry's principal at the entry's time.
    PledgeReleased {
        id: Uuid,
        release: Release,
    },
    CreditLineCreated {
        line: CreditLine,
    },
    PrincipalCreated {
        record: PrincipalRecord,
    },
    /// Revoked at the entry's time.
    PrincipalRevoked {
        name: PrincipalName,
    },
    CertificateBound {
        name: PrincipalName,
        binding: CertificateBinding,
    },
    /// A new state of a right's record, from an office's register.
    RightRecorded {
        number: RightNumber,
        state: RightState,
    },
    /// A default on pledge `id`, recorded by its bank.
    DefaultRecorded {
        id: Uuid,
        default: NewDefault,
    },
    DefaultResolved {
        id: Uuid,
        resolution: NewResolution,
    },
    /// An appraisal of a pledge; recorded by the entry's principal at the entry's time.
    ValuationRecorded {
        valuation: Valuation,
    },
    ProgrammeCreated {
        programme: Programme,
    },
    /// A claim as filed, with the compensation the programme's rules computed for it.
    ClaimFiled {
        claim: Claim,
    },
    ClaimDecided {
        id: Uuid,
        approved: bool,
        decision: Decision,
    },
    ClaimPaid {
        id: Uuid,
        payment: Payment,
    },
    /// The state of right `number` recorded at `recorded_at` is withdrawn by the entry's principal
    /// at the entry's time.
    RightStateWithdrawn {
        number: RightNumber,
        recorded_at: Micros,
        note: Note,
    },
    /// A witness's cosignature of a head of the journal's Merkle tree.
    TreeHeadCosigned {
        cosignature: TreeCosignature,
    },
    /// A bank's alert thresholds, set by the entry's principal at the entry's time.
    AlertPolicySet {
        bank: crate::domain::ident::CreditCode,
        policy: crate::domain::alert::AlertPolicy,
    },
    /// The writer opened business day `day` (China time, the entry's): the alerts that came due
    /// by the passing of days are derived with it.
    DayOpened {
        day: chrono::NaiveDate,
    },
}

/// A witness's signature of the tree head (`tree_size`, `root_hash`): that it checked the head
/// extends every head it saw before (`signing::cosignature_message` is what is signed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeCosignature {
    pub tree_size: u64,
    pub root_hash: Hash,
    pub witness: PrincipalName,
    pub public_key: [u8; 32],
    #[serde(with = "bytes64")]
    pub signature: [u8; 64],
}

/// Serde of 64-byte arrays (serde derives arrays up to 32).
mod bytes64 {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let bytes: Vec<u8> = serde::Deserialize::deserialize(d)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("a signature has 64 bytes"))
    }
}

impl Event {
    /// The principal an event creates or changes (whose authentication may change with it).
    pub fn principal(&self) -> Option<&PrincipalName> {
        match self {
            Event::PrincipalCreated { record } => Some(&record.principal.name),
            Event::PrincipalRevoked { name } | Event::CertificateBound { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::PledgeRegistered { .. } => "PLEDGE_REGISTERED",
            Event::PledgeChanged { .. } => "PLEDGE_CHANGED",
            Event::PledgeReleased { .. } => "PLEDGE_RELEASED",
            Event::CreditLineCreated { .. } => "CREDIT_LINE_CREATED",
            Event::PrincipalCreated { .. } => "PRINCIPAL_CREATED",
            Event::PrincipalRevoked { .. } => "PRINCIPAL_REVOKED",
            Event::CertificateBound { .. } => "CERTIFICATE_BOUND",
            Event::RightRecorded { .. } => "RIGHT_RECORDED",
            Event::RightStateWithdrawn { .. } => "RIGHT_STATE_WITHDRAWN",
            Event::DefaultRecorded { .. } => "DEFAULT_RECORDED",
            Event::DefaultResolved { .. } => "DEFAULT_RESOLVED",
            Event::ValuationRecorded { .. } => "VALUATION_RECORDED",
            Event::ProgrammeCreated { .. } => "PROGRAMME_CREATED",
            Event::ClaimFiled { .. } => "CLAIM_FILED",
            Event::ClaimDecided { .. } => "CLAIM_DECIDED",
            Event::ClaimPaid { .. } => "CLAIM_PAID",
            Event::TreeHeadCosigned { .. } => "TREE_HEAD_COSIGNED",
            Event::AlertPolicySet { .. } => "ALERT_POLICY_SET",
            Event::DayOpened { .. } => "DAY_OPENED",
        }
    }

    /// The pledge this event is about, if any (claims' decisions and payments name their claim).
    pub fn pledge_id(&self) -> Option<Uuid> {
        match self {
            Event::PledgeRegistered { pledge } => Some(pledge.id),
            Event::PledgeChanged { id, .. }
            | Event::PledgeReleased { id, .. }
            | Event::DefaultRecorded { id, .. }
            | Event::DefaultResolved { id, .. } => Some(*id),
            Event::ValuationRecorded { valuation } => Some(valuation.pledge_id),
            Event::ClaimFiled { claim } => Some(claim.pledge_id),
            _ => None,
        }
    }

    /// Whether the event is a pledge's own version (registration, change, release): only those
    /// are versions in the pledge's history.
    pub fn versions_pledge(&self) -> bool {
        matches!(self, Event::PledgeRegistered { .. } | Event::PledgeChanged { .. } | Event::PledgeReleased { .. })
    }
}

/// A request's id and the fingerprint of its canonical form, with the form's version (0: the
/// fingerprint of entries written before the journal format; see `format::fingerprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestKey {
    pub id: Uuid,
    pub fingerprint: Hash,
    pub form: u8,
}

/// A decoded journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sequence: u64,
    pub at: Micros,
    pub principal: PrincipalName,
    pub request: Option<RequestKey>,
    pub event: Event,
    pub prev_hash: Hash,
    pub hash: Hash,
    /// The version of the rules it was decided under (`RULES`; 0 before rules were versioned).
    pub rules: u32,
}

/// The version of the ledger's rules this build decides new entries under. 0: the rules before
/// they were versioned. 1: a registration is dated no later than the writer's today and a bank's
/// within `BANK_REGISTRATION_DAYS_MAX` days before it; an office records a right's state only with
/// standing for the right, dated no later than today; states may be withdrawn; a right is part of
/// at most `PLEDGES_PER_RIGHT_MAX` pledges. A rule added later gets a new version, so an entry
/// decided before it is judged again as it was decided (restore, followers) and history stays valid.
pub const RULES: u32 = 1;

/// An entry as the journal holds it: its sequence, its hash, and its bytes (version byte first).
/// The bytes are what was hashed; they are never re-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub sequence: u64,
    pub hash: Hash,
    pub bytes: Vec<u8>,
}

impl Stored {
    pub fn head(&self) -> Head {
        Head { sequence: self.sequence, hash: self.hash }
    }

    /// Decodes the entry (any version this build reads) and checks that its hash covers its bytes.
    pub fn decode(&self) -> Result<Entry, JournalError> {
        let entry = match self.bytes.first() {
            Some(&legacy::VERSION) => legacy::decode(self)?,
            Some(&format::VERSION) => format::decode(self)?,
            Some(other) => {
                return Err(JournalError::Corrupt(format!(
                    "entry {} has format version {other}, which this build does not know (written by a newer build?)",
                    self.sequence
                )));
            }
            None => return Err(JournalError::Corrupt(format!("entry {} is empty", self.sequence))),
        };
        if entry.sequence != self.sequence {
            return Err(JournalError::Corrupt(format!(
                "entry stored at {} says it is entry {}",
                self.sequence, entry.sequence
            )));
        }
        if entry.hash != self.hash {
            return Err(JournalError::Corrupt(format!("entry {}: its hash does not match its bytes", self.sequence)));
        }
        Ok(entry)
    }
}

/// The cluster's signature over the last entry of a group, stored with the group in the same
/// transaction by a journal that several nodes share (PostgreSQL): a follower applies an entry
/// another node wrote only once a signature by the cluster's key covers it (the chain covers
/// everything before the signed entry). What is signed is the entry's head, exactly as a signed
/// journal head (`signing`), so no new message kind exists. docs/journal-format.md, "Group
/// signatures".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSignature {
    /// The group's last entry.
    pub sequence: u64,
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
}

/// What signs groups as they are appended: the cluster's key (`signing::Signer`).
pub trait GroupSigner: Send + Sync + 'static {
    fn sign_group(&self, last: Head) -> GroupSignature;
}

/// Entries one group signature covers at most (a writer's group, `writer::GROUP_MAX`, or a
/// restore's copied chunk): how far a follower reads ahead for the signature of a group.
pub const SIGNED_RUN_MAX: usize = 4096;

/// A journal engine's failure, typed by what the caller can conclude from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// Nothing was written; trying again later may succeed.
    #[error("journal unavailable: {0}")]
    Unavailable(String),
    /// The append may or may not be durable: read the head to learn which.
    #[error("journal append outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The head is not the one the append expected: another writer appended (or this one is
    /// stale). Nothing was written.
    #[error("journal head moved: expected {expected}, found {found}")]
    HeadMoved { expected: u64, found: u64 },
    /// Stored bytes that do not decode or do not hash to what they claim.
    #[error("journal corrupt: {0}")]
    Corrupt(String),
    /// Another node holds the writer's lease under a newer term than this writer's: nothing was
    /// written, and this node must stop writing (it follows the journal instead).
    #[error("another node took the writer's lease (term {found}; this writer's term is {held})")]
    Fenced { held: i64, found: i64 },
}

impl From<JournalError> for crate::domain::LedgerError {
    fn from(e: JournalError) -> Self {
        crate::domain::LedgerError::Unavailable(e.to_string())
    }
}

/// Where the journal lives. One writer appends; any number of readers read.
pub trait Journal: Send + Sync + 'static {
    /// Appends `entries` (consecutive, the first right after `expected`) durably, only if the
    /// journal's head is `expected`. Returns once every entry is durable.
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError>;

    /// Up to `limit` entries from sequence `from` on, in order.
    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError>;

    fn head(&self) -> Result<Head, JournalError>;

    /// The head, once every entry up to it is as durable as an acknowledged append: what the
    /// writer answers from after an append whose outcome it could not learn. An engine that can
    /// show an entry before it is durable (PostgreSQL shows a commit whose wait for the
    /// synchronous standby was cancelled) waits here until it is.
    fn durable_head(&self) -> Result<Head, JournalError> {
        self.head()
    }

    /// Waits up to `timeout` for an entry after `after` to be appended (by another node): how a
    /// follower learns of new entries without polling hard. May return early; the caller reads.
    fn wait_for_append(&self, after: u64, timeout: std::time::Duration) {
        let _ = after;
        std::thread::sleep(timeout);
    }

    /// Bytes the journal occupies on disk.
    fn size_on_disk(&self) -> Result<u64, JournalError>;

    /// Up to `limit` group signatures of entries at or after `from`, in order. Only a journal
    /// that several nodes share keeps them; one node's own journal (embedded, memory) has none.
    fn group_signatures(&self, from: u64, limit: usize) -> Result<Vec<GroupSignature>, JournalError> {
        let _ = (from, limit);
        Ok(Vec::new())
    }

    /// Appends `source`'s entries after `expected` up to `through`, all of them or none, only if
    /// the journal's head is `expected`: how a restore into a shared journal commits a dump it
    /// staged and checked whole, so that no node ever sees a part of a dump nobody vouched for.
    /// By default one `append` of them all (atomic in every engine, the entries in memory);
    /// PostgreSQL streams them into one transaction.
    fn append_from(&self, expected: Head, source: &dyn Journal, through: Head) -> Result<Head, JournalError> {
        assert!(through.sequence >= expected.sequence, "a copy ends at or after where it starts");
        let entries = source.read(expected.sequence + 1, (through.sequence - expected.sequence) as usize)?;
        check_copy(expected, &entries, through)?;
        self.append(expected, &entries)
    }
}

/// Checks that `entries` are a source's whole chain from `expected` to `through`: what a copy
/// between journals commits must be exactly what was checked, not a part of it.
pub(crate) fn check_copy(expected: Head, entries: &[Stored], through: Head) -> Result<(), JournalError> {
    let mut previous = expected;
    for stored in entries {
        let entry = stored.decode()?;
        if entry.sequence != previous.sequence + 1 || entry.prev_hash != previous.hash {
            return Err(JournalError::Corrupt(format!(
                "entry {} does not follow entry {} in the copy",
                entry.sequence, previous.sequence
            )));
        }
        previous = stored.head();
    }
    if previous != through {
        return Err(JournalError::Corrupt(format!(
            "the copy ends at {}, not at {}",
            previous.sequence, through.sequence
        )));
    }
    Ok(())
}

/// What a `Guarded` journal is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Append,
    Read,
    Head,
}

/// A journal that asks `guard` before every access and fails the access as the guard says: how
/// tests inject a slow, failing or fenced journal.
pub struct Guarded<G> {
    inner: std::sync::Arc<dyn Journal>,
    guard: G,
}

impl<G> Guarded<G> {
    pub fn new(inner: std::sync::Arc<dyn Journal>, guard: G) -> Guarded<G> {
        Guarded { inner, guard }
    }
}

impl<G> std::fmt::Debug for Guarded<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").finish_non_exhaustive()
    }
}

impl<G: Fn(Access) -> Result<(), JournalError> + Send + Sync + 'static> Journal for Guarded<G> {
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        (self.guard)(Access::Append)?;
        self.inner.append(expected, entries)
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
        (self.guard)(Access::Read)?;
        self.inner.read(from, limit)
    }

    fn head(&self) -> Result<Head, JournalError> {
        (self.guard)(Access::Head)?;
        self.inner.head()
    }

    fn durable_head(&self) -> Result<Head, JournalError> {
        (self.guard)(Access::Head)?;
        self.inner.durable_head()
    }

    fn wait_for_append(&self, after: u64, timeout: std::time::Duration) {
        self.inner.wait_for_append(after, timeout)
    }

    fn size_on_disk(&self) -> Result<u64, JournalError> {
        self.inner.size_on_disk()
    }

    fn group_signatures(&self, from: u64, limit: usize) -> Result<Vec<GroupSignature>, JournalError> {
        (self.guard)(Access::Read)?;
        self.inner.group_signatures(from, limit)
    }
}

/// One entry by sequence.
pub fn read_one(journal: &dyn Journal, sequence: u64) -> Result<Option<Stored>, JournalError> {
    Ok(journal.read(sequence, 1)?.into_iter().next().filter(|s| s.sequence == sequence))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the order of an append: consecutive sequences right after `expected`, each chained to
/// the one before. Every engine checks this before it writes anything.
fn check_append(expected: Head, entries: &[Stored]) -> Result<(), JournalError> {
    for (i, entry) in entries.iter().enumerate() {
        let want = expected.sequence + 1 + i as u64;
        if entry.sequence != want {
            return Err(JournalError::Unavailable(format!(
                "append out of order: {} where {want} belongs",
                entry.sequence
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod suite {
    //! One backend test suite, run against every journal engine.
    use super::*;

    /// `n` real entries (revocations, the smallest kind) after `from`.
    pub(crate) fn chain(from: Head, n: u64) -> Vec<Stored> {
        let name = crate::domain::principal::PrincipalName::parse("bank-a").unwrap();
        let mut prev = from.hash;
        (from.sequence + 1..=from.sequence + n)
            .map(|s| {
                let event = Event::PrincipalRevoked { name: name.clone() };
                let (_, stored) = format::seal(s, prev, s as i64 * 1000, &name, None, event);
                prev = stored.hash;
                stored
            })
            .collect()
    }

    pub fn run(journal: &dyn Journal) {
        assert_eq!(journal.head().unwrap(), Head::default(), "a new journal is empty");
        assert!(journal.read(1, 10).unwrap().is_empty());
        let first = chain(Head::default(), 3);
        let head = journal.append(Head::default(), &first).unwrap();
        assert_eq!(head, first[2].head());
        assert_eq!(journal.head().unwrap(), head);
        assert_eq!(journal.read(1, 10).unwrap(), first);
        assert_eq!(journal.read(2, 1).unwrap(), first[1..2]);
        assert_eq!(read_one(journal, 3).unwrap(), Some(first[2].clone()));
        assert_eq!(read_one(journal, 4).unwrap(), None);
        // A stale writer's append is refused and writes nothing.
        let stale = chain(Head::default(), 1);
        assert_eq!(journal.append(Head::default(), &stale), Err(JournalError::HeadMoved { expected: 0, found: 3 }));
        // An append whose sequences do not follow its expected head writes nothing.
        let gap = chain(Head { sequence: 4, hash: head.hash }, 1);
        assert!(journal.append(head, &gap).is_err());
        assert_eq!(journal.head().unwrap(), head);
        let more = chain(head, 5000);
        let head = journal.append(head, &more).unwrap();
        assert_eq!(head.sequence, 5003);
        let read = journal.read(4, 100_000).unwrap();
        assert_eq!(read.len(), 5000);
        assert_eq!(read[4999], more[4999]);
        assert_eq!(journal.append(head, &[]).unwrap(), head, "an empty append is a no-op");
        assert!(journal.size_on_disk().is_ok());
        copies_all_or_nothing(journal, head);
    }

    /// `append_from`: a source's chain from the head on, whole; nothing when it would not end
    /// where asked, or when the head moved.
    fn copies_all_or_nothing(journal: &dyn Journal, head: Head) {
        let source = MemoryJournal::default();
        let held = journal.read(1, usize::MAX).unwrap();
        let more = chain(head, 3000);
        let through = more[2999].head();
        source.append(source.append(Head::default(), &held).unwrap(), &more).unwrap();
        let beyond = Head { sequence: through.sequence + 1, hash: through.hash };
        assert!(journal.append_from(head, &source, beyond).is_err(), "a copy short of its end");
        assert_eq!(journal.head().unwrap(), head, "a failed copy writes nothing");
        let stale = journal.append_from(Head::default(), &source, through);
        assert!(matches!(stale, Err(JournalError::HeadMoved { expected: 0, .. })), "{stale:?}");
        assert_eq!(journal.append_from(head, &source, through).unwrap(), through);
        assert_eq!(journal.read(head.sequence + 1, 5000).unwrap(), more);
    }
}
