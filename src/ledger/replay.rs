//! Rebuilding derived state from the journal, the ground state: catching up at start from the last
//! checkpoint, verifying a running ledger, rebuilding after a change of layout, and restoring a
//! dump into a new data directory.
//!
//! `verify` re-walks the whole chain (each entry decodes, follows the one before and hashes to what
//! it claims), then rebuilds derived state into a scratch store up to the head of the last
//! checkpoint and compares it key by key with that checkpoint, reporting the first divergence:
//! sequence, key, expected and found. It streams both sides in chunks, so its memory is bounded by
//! the chunk and the scratch store's cache, whatever the ledger's size; writes go on meanwhile
//! (checkpoints wait until it is done).

use super::derived::{self, Derived};
use super::journal::{self, Entry, Head, Journal, Stored, merkle};
use super::keys;
use super::projector;
use super::tx::Tx;
use crate::domain::LedgerError;
use crate::domain::Reason;
use crate::store::Store;
use std::sync::Arc;

/// Entries read and applied per step.
const CHUNK: usize = 2048;

/// The first place where the stored ledger differs from its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The journal entry at fault, or the last one that wrote the diverging key (0: none did).
    pub sequence: u64,
    pub key: String,
    pub expected: String,
    pub found: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub entries: u64,
    pub head: journal::Hash,
    /// The head of the checkpoint the derived records were compared at.
    pub compared_at: u64,
    pub keys_compared: u64,
    pub divergence: Option<Divergence>,
}

fn unavailable(e: crate::store::StoreError) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

fn printable(key: &[u8]) -> String {
    key.iter().map(|&b| if b.is_ascii_graphic() { (b as char).to_string() } else { format!("\\x{b:02x}") }).collect()
}

/// Reads entries `from..=to` in chunks, decoded, calling `f` on each.
fn walk(
    journal: &dyn Journal,
    from: u64,
    to: u64,
    mut f: impl FnMut(Stored, Result<Entry, journal::JournalError>) -> Result<bool, LedgerError>,
) -> Result<(), LedgerError> {
    let mut next = from.max(1);
    while next <= to {
        let chunk = journal.read(next, CHUNK.min((to - next + 1) as usize))?;
        if chunk.is_empty() {
            return Err(LedgerError::Internal(format!("the journal ends before entry {next} (head {to})")));
        }
        for stored in chunk {
            next = stored.sequence + 1;
            let entry = stored.decode();
            if !f(stored, entry)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Decides `entry` again under the ledger's rules, as its principal at its time, against the state
/// in `tx` (`decider::validate`), then applies it: how a restore, a follower and a new writer take an
/// entry that another process wrote. An entry the rules refuse is refused with `ENTRY_REFUSED`,
/// whatever its hashes say.
pub(crate) fn apply_checked(tx: &mut Tx<'_>, entry: &Entry) -> Result<(), LedgerError> {
    super::decider::validate(tx, entry)?;
    // Only the decision counts: the records are the projector's, from the entry itself.
    tx.reject();
    projector::apply_entry(tx, entry)?;
    tx.accept();
    Ok(())
}

/// Checks that `entry` is the one right after `previous`: a journal that others can write may
/// hold rows that skip or fork the chain.
pub(crate) fn check_link(previous: Head, entry: &Entry) -> Result<(), LedgerError> {
    if entry.sequence == previous.sequence + 1 && entry.prev_hash == previous.hash {
        return Ok(());
    }
    Err(LedgerError::refused(
        Reason::JOURNAL_CHAIN_BROKEN,
        format!("journal entry {} does not follow entry {}", entry.sequence, previous.sequence),
    )
    .with("sequence", entry.sequence))
}

/// Reads up to `limit` entries from `from` on and returns, decoded, those that a node sharing the
/// journal may apply: the ones a group signature by the cluster's key `key` covers (a signature
/// of an entry covers it and, through the chain, every entry before it), and before them any
/// entries of a release before group signatures (rules 0: the rules floor, `decider::validate`,
/// keeps such an entry from following a newer one). Reads further, up to `SIGNED_RUN_MAX`
/// entries, when a group is longer than `limit`. Refuses a signature that does not verify
/// (`GROUP_SIGNATURE_INVALID`) and entries no signature covers (`GROUP_UNSIGNED`): a group's rows
/// and its signature are committed together, and the signatures are read after the rows, so
/// every row read by then has its signature visible.
pub(crate) fn read_signed(
    journal: &dyn Journal,
    from: u64,
    limit: usize,
    key: &crate::ledger::signing::PublicKey,
) -> Result<Vec<(Stored, Entry)>, LedgerError> {
    let mut limit = limit.clamp(1, journal::SIGNED_RUN_MAX);
    loop {
        let chunk = journal.read(from, limit)?;
        let Some(last) = chunk.last() else { return Ok(Vec::new()) };
        let to = last.sequence;
        let signatures = journal.group_signatures(from, chunk.len() + 1)?;
        let mut entries = Vec::with_capacity(chunk.len());
        for stored in &chunk {
            // Bytes that do not decode are refused like any entry the rules refuse, not retried.
            let entry = stored.decode().map_err(|e| match e {
                journal::JournalError::Corrupt(why) => LedgerError::refused(Reason::ENTRY_CORRUPT, why),
                other => other.into(),
            })?;
            entries.push(entry);
        }
        let mut signed = entries.iter().take_while(|e| e.rules == 0).count();
        for signature in signatures.iter().filter(|s| s.sequence <= to) {
            let index = signature.sequence.checked_sub(from).expect("signatures read from `from` on") as usize;
            signature.verify(chunk[index].head(), key).map_err(|why| {
                LedgerError::refused(
                    Reason::GROUP_SIGNATURE_INVALID,
                    format!(
                        "the signature of journal entry {}: {why} (every node of a cluster needs the same --signing-key)",
                        signature.sequence
                    ),
                )
                .with("sequence", signature.sequence)
            })?;
            signed = signed.max(index + 1);
        }
        if signed > 0 {
            return Ok(chunk.into_iter().zip(entries).take(signed).collect());
        }
        // A group longer than what was read: read up to its signature, within one signed run.
        match signatures.iter().find(|s| s.sequence > to) {
            Some(next) if next.sequence - from < journal::SIGNED_RUN_MAX as u64 => {
                limit = (next.sequence - from + 1) as usize;
            }
            _ => {
                return Err(LedgerError::refused(
                    Reason::GROUP_UNSIGNED,
                    format!(
                        "journal entries from {from} on carry no signature of the cluster's key {}: they were not written by a node of this cluster",
                        journal::hex(key)
                    ),
                )
                .with("sequence", from));
            }
        }
    }
}

/// Applies the journal's entries after what `derived` reflects, up to the journal's head, in chunks
/// (checkpointing when the overlay is full): the start of a ledger, with progress in the log.
/// `shared`: the cluster's public key, for a journal that others can write (PostgreSQL, where a
/// database credential suffices): each entry must be covered by a group signature of that key
/// (`read_signed`) and is decided again first (`apply_checked`). The embedded journal sits beside
/// derived state in the node's own directory, and is applied as it is.
pub fn catch_up(
    journal: &dyn Journal,
    derived: &Arc<Derived>,
    shared: Option<&crate::ledger::signing::PublicKey>,
) -> Result<u64, LedgerError> {
    let from = derived.through().map_err(unavailable)?;
    let head = journal.head()?;
    if head.sequence == from.sequence {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let mut applied = 0u64;
    let mut next = from.sequence + 1;
    let mut previous = from;
    while next <= head.sequence {
        let chunk = match shared {
            Some(key) => read_signed(journal, next, CHUNK, key)?,
            None => {
                journal.read(next, CHUNK)?.into_iter().map(|s| s.decode().map(|e| (s, e))).collect::<Result<_, _>>()?
            }
        };
        let Some((last, _)) = chunk.last() else { break };
        let through = last.head();
        let mut tx = Tx::new(derived.as_ref());
        for (stored, entry) in &chunk {
            if shared.is_some() {
                check_link(previous, entry)?;
                previous = stored.head();
                apply_checked(&mut tx, entry)?;
            } else {
                projector::apply_entry(&mut tx, entry)?;
                tx.accept();
            }
        }
        applied += chunk.len() as u64;
        next = through.sequence + 1;
        let batch = tx.into_batch();
        let leaves: Vec<_> = chunk.iter().map(|(stored, _)| merkle::leaf_hash(&stored.bytes)).collect();
        derived.apply(batch, through, &leaves).map_err(unavailable)?;
        if derived.checkpoint_due() {
            derived.checkpoint().map_err(unavailable)?;
            tracing::info!(applied, of = head.sequence - from.sequence, "replaying the journal into derived state");
        }
    }
    tracing::info!(
        from = from.sequence,
        to = head.sequence,
        applied,
        ms = started.elapsed().as_millis() as u64,
        "derived state caught up with the journal"
    );
    Ok(applied)
}

/// Whether `derived`'s checkpoint is a state of this journal: the entry it names is there with the
/// hash it recorded.
pub fn checkpoint_matches(journal: &dyn Journal, base: &dyn Store) -> Result<bool, LedgerError> {
    let through = derived::checkpointed_through(base).map_err(unavailable)?;
    if through.sequence == 0 {
        return Ok(true);
    }
    Ok(journal::read_one(journal, through.sequence)?.is_some_and(|s| s.hash == through.hash))
}

/// Deletes every record of a derived store (before a rebuild from the journal).
pub fn clear(base: &dyn Store) -> Result<(), LedgerError> {
    base.clear().map_err(unavailable)
}

/// Re-walks the chain and compares the checkpointed derived state with a rebuild in `scratch` (an
/// empty store).
pub fn verify(journal: &dyn Journal, derived: &Arc<Derived>, scratch: Arc<dyn Store>) -> Result<Report, LedgerError> {
    let head = journal.head()?;
    let mut report = Report { entries: 0, head: [0; 32], compared_at: 0, keys_compared: 0, divergence: None };
    if let Some(d) = check_chain(journal, head, &mut report)? {
        report.divergence = Some(d);
        return Ok(report);
    }
    // Everything applied so far into the base store, then the base held still while compared.
    derived.checkpoint_and_wait().map_err(unavailable)?;
    let (_pinned, through) = derived.pin().map_err(unavailable)?;
    report.compared_at = through.sequence;
    let rebuilt = Derived::new(scratch.clone(), derived::CHECKPOINT_BYTES, &journal::MemoryJournal::default())
        .map_err(unavailable)?;
    if let Some(d) = rebuild_into(journal, &rebuilt, through)? {
        report.divergence = Some(d);
        return Ok(report);
    }
    rebuilt.checkpoint_and_wait().map_err(unavailable)?;
    drop(rebuilt);
    if let Some((key, mut d)) = compare(derived.base(), scratch.as_ref(), &mut report.keys_compared)? {
        clear(scratch.as_ref())?;
        d.sequence = last_writer(journal, through.sequence, &key, scratch.as_ref())?;
        report.divergence = Some(d);
    }
    Ok(report)
}

/// Checks every entry's bytes, order and link; `None` when the chain holds.
fn check_chain(journal: &dyn Journal, head: Head, report: &mut Report) -> Result<Option<Divergence>, LedgerError> {
    let mut previous = Head::default();
    let mut divergence = None;
    walk(journal, 1, head.sequence, |stored, entry| {
        let expected_sequence = previous.sequence + 1;
        let fault = match entry {
            Err(e) => {
                Some(("entry".to_owned(), "a decodable entry whose hash covers its bytes".to_owned(), e.to_string()))
            }
            Ok(entry) if entry.sequence != expected_sequence => {
                Some(("sequence".to_owned(), expected_sequence.to_string(), entry.sequence.to_string()))
            }
            Ok(entry) if entry.prev_hash != previous.hash => {
                Some(("prev_hash".to_owned(), journal::hex(&previous.hash), journal::hex(&entry.prev_hash)))
            }
            Ok(_) => None,
        };
        if let Some((field, expected, found)) = fault {
            divergence = Some(Divergence {
                sequence: stored.sequence,
                key: format!("journal entry {} ({field})", stored.sequence),
                expected,
                found,
            });
            return Ok(false);
        }
        previous = stored.head();
        Ok(true)
    })?;
    report.entries = previous.sequence;
    report.head = previous.hash;
    if divergence.is_none() && previous != head {
        divergence = Some(Divergence {
            sequence: previous.sequence,
            key: "journal head".to_owned(),
            expected: format!("{} {}", head.sequence, journal::hex(&head.hash)),
            found: format!("{} {}", previous.sequence, journal::hex(&previous.hash)),
        });
    }
    Ok(divergence)
}

/// Applies entries 1..=through into `rebuilt`; a divergence when one does not apply.
fn rebuild_into(
    journal: &dyn Journal,
    rebuilt: &Arc<Derived>,
    through: Head,
) -> Result<Option<Divergence>, LedgerError> {
    let mut next = 1;
    while next <= through.sequence {
        let chunk = journal.read(next, CHUNK.min((through.sequence - next + 1) as usize))?;
        let Some(last) = chunk.last() else { break };
        let chunk_head = last.head();
        let mut tx = Tx::new(rebuilt.as_ref());
        for stored in &chunk {
            let entry = stored.decode()?;
            if let Err(e) = projector::apply_entry(&mut tx, &entry) {
                return Ok(Some(Divergence {
                    sequence: entry.sequence,
                    key: format!("journal entry {}", entry.sequence),
                    expected: "an entry that applies to the state before it".to_owned(),
                    found: e.to_string(),
                }));
            }
            tx.accept();
        }
        next = chunk_head.sequence + 1;
        let leaves: Vec<_> = chunk.iter().map(|stored| merkle::leaf_hash(&stored.bytes)).collect();
        rebuilt.apply(tx.into_batch(), chunk_head, &leaves).map_err(unavailable)?;
        if rebuilt.checkpoint_due() {
            rebuilt.checkpoint().map_err(unavailable)?;
        }
    }
    Ok(None)
}

/// Compares every derived family of `stored` with `expected`, streaming both in key order.
fn compare(
    stored: &dyn Store,
    expected: &dyn Store,
    compared: &mut u64,
) -> Result<Option<(Vec<u8>, Divergence)>, LedgerError> {
    for family in keys::DERIVED {
        let mut left = Cursor::new(stored, family);
        let mut right = Cursor::new(expected, family);
        loop {
            let (found, wanted) = (left.peek()?, right.peek()?);
            let divergence = match (found, wanted) {
                (None, None) => break,
                (Some((k, v)), Some((ek, ev))) if k == ek => {
                    *compared += 1;
                    if v != ev {
                        Some(at(&k, Some(&ev), Some(&v)))
                    } else {
                        left.next();
                        right.next();
                        None
                    }
                }
                (Some((k, v)), Some((ek, _))) if k < ek => Some(at(&k, None, Some(&v))),
                (Some((k, v)), None) => Some(at(&k, None, Some(&v))),
                (_, Some((ek, ev))) => Some(at(&ek, Some(&ev), None)),
            };
            if divergence.is_some() {
                return Ok(divergence);
            }
        }
    }
    Ok(None)
}

fn at(key: &[u8], expected: Option<&[u8]>, found: Option<&[u8]>) -> (Vec<u8>, Divergence) {
    let divergence = Divergence {
        sequence: 0,
        key: printable(key),
        expected: projector::describe(expected),
        found: projector::describe(found),
    };
    (key.to_vec(), divergence)
}

/// A store's records under a prefix, read a chunk at a time.
struct Cursor<'a> {
    store: &'a dyn Store,
    prefix: &'a [u8],
    buffer: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    after: Option<Vec<u8>>,
    done: bool,
}

impl<'a> Cursor<'a> {
    fn new(store: &'a dyn Store, prefix: &'a [u8]) -> Cursor<'a> {
        Cursor { store, prefix, buffer: Default::default(), after: None, done: false }
    }

    fn peek(&mut self) -> Result<Option<crate::store::Entry>, LedgerError> {
        if self.buffer.is_empty() && !self.done {
            let chunk = self.store.scan(self.prefix, self.after.as_deref(), CHUNK).map_err(unavailable)?;
            self.done = chunk.len() < CHUNK;
            self.after = chunk.last().map(|(k, _)| k.clone());
            self.buffer.extend(chunk);
        }
        Ok(self.buffer.front().cloned())
    }

    fn next(&mut self) {
        self.buffer.pop_front();
    }
}

/// The last entry up to `through` whose derived writes touch `key`: a second replay into the
/// emptied scratch store, run only when a divergence was found, so that verifying needs no memory
/// per key.
fn last_writer(journal: &dyn Journal, through: u64, key: &[u8], scratch: &dyn Store) -> Result<u64, LedgerError> {
    let mut writer = 0;
    let mut next = 1;
    while next <= through {
        let chunk = journal.read(next, CHUNK.min((through - next + 1) as usize))?;
        let Some(last) = chunk.last() else { break };
        next = last.sequence + 1;
        for stored in &chunk {
            let entry = stored.decode()?;
            let mut tx = Tx::new(scratch);
            projector::apply_entry(&mut tx, &entry)?;
            tx.accept();
            let batch = tx.into_batch();
            if batch.ops.iter().any(|(k, _)| k == key) {
                writer = entry.sequence;
            }
            scratch.commit(batch).map_err(unavailable)?;
        }
    }
    Ok(writer)
}

/// Builds a ledger from a dump's entries into an empty journal and derived state: checks each
/// entry's bytes and its link to the one before, decides it again under the ledger's rules as its
/// principal at its time (`decider::validate`), then appends and applies it, a chunk at a time.
pub fn restore(
    journal: &dyn Journal,
    derived: &Arc<Derived>,
    entries: impl IntoIterator<Item = Result<Stored, String>>,
) -> Result<Head, LedgerError> {
    let empty = journal.head()? == Head::default()
        && derived.base().scan(b"", None, 2).map_err(unavailable)?.iter().all(|(k, _)| k == keys::META_DERIVED_LAYOUT);
    if !empty {
        return Err(LedgerError::refused(Reason::DATA_DIR_NOT_EMPTY, "restore needs an empty data directory"));
    }
    let mut previous = Head::default();
    let mut appended = Head::default();
    let mut pending: Vec<Stored> = Vec::with_capacity(CHUNK);
    let mut tx = Tx::new(derived.as_ref());
    let flush =
        |pending: &mut Vec<Stored>, tx: Tx<'_>, appended: &mut Head, through: Head| -> Result<(), LedgerError> {
            *appended = journal.append(*appended, pending)?;
            let leaves: Vec<_> = pending.iter().map(|stored| merkle::leaf_hash(&stored.bytes)).collect();
            pending.clear();
            derived.apply(tx.into_batch(), through, &leaves).map_err(unavailable)?;
            if derived.checkpoint_due() {
                derived.checkpoint().map_err(unavailable)?;
            }
            Ok(())
        };
    for (line, stored) in entries.into_iter().enumerate() {
        let stored = stored.map_err(|e| LedgerError::invalid_field(format!("line {}", line + 1), e))?;
        let broken = |what: &str| {
            LedgerError::refused(
                Reason::JOURNAL_CHAIN_BROKEN,
                format!("entry {} (line {}): {what}", stored.sequence, line + 1),
            )
            .with("sequence", stored.sequence)
        };
        let entry = stored.decode().map_err(|e| broken(&e.to_string()))?;
        if entry.sequence != previous.sequence + 1 {
            return Err(broken(&format!("expected sequence {}", previous.sequence + 1)));
        }
        if entry.prev_hash != previous.hash {
            return Err(broken("its previous hash is not the hash of the entry before it"));
        }
        apply_checked(&mut tx, &entry)?;
        previous = stored.head();
        pending.push(stored);
        if pending.len() == CHUNK {
            let full = std::mem::replace(&mut tx, Tx::new(derived.as_ref()));
            flush(&mut pending, full, &mut appended, previous)?;
        }
    }
    flush(&mut pending, tx, &mut appended, previous)?;
    derived.checkpoint_and_wait().map_err(unavailable)?;
    Ok(previous)
}

/// sled's page cache for a staged restore.
const STAGING_CACHE_BYTES: u64 = 64 << 20;

/// A restore into a journal other nodes read (PostgreSQL): `restore` writes the dump into this
/// staging journal, a sled journal in a directory of its own inside the data directory, and the
/// dump goes into the shared journal in one step (`commit`) only once its signed head and every
/// entry are checked. Without it, a dump refused after its first chunk, or under a wrong key,
/// would be left in the shared journal for the nodes to serve. Removed when dropped.
pub struct Staging {
    dir: std::path::PathBuf,
    journal: Option<journal::SledJournal>,
}

impl std::fmt::Debug for Staging {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staging").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn journal_not_empty(head: Head) -> LedgerError {
    LedgerError::refused(
        Reason::JOURNAL_NOT_EMPTY,
        format!("restore needs an empty journal; it holds {} entries", head.sequence),
    )
}

impl Staging {
    /// Checks that `target` is empty, before anything of the dump is read, and makes the staging
    /// journal in `data_dir`.
    pub fn create(data_dir: &std::path::Path, target: &dyn Journal) -> Result<Staging, LedgerError> {
        let head = target.head()?;
        if head != Head::default() {
            return Err(journal_not_empty(head));
        }
        let dir = data_dir.join("restore-staging");
        let journal = journal::SledJournal::open(&dir, STAGING_CACHE_BYTES)?;
        Ok(Staging { dir, journal: Some(journal) })
    }

    pub fn journal(&self) -> &dyn Journal {
        self.journal.as_ref().expect("present until dropped")
    }

    /// Copies the restored dump, which ends at `head`, into `target`: all of it, or nothing when
    /// the copy fails (another restore or a writer got there first, PostgreSQL went away).
    pub fn commit(self, target: &dyn Journal, head: Head) -> Result<Head, LedgerError> {
        assert_eq!(self.journal().head()?, head, "the staged journal is the restored dump");
        match target.append_from(Head::default(), self.journal(), head) {
            Ok(copied) => Ok(copied),
            Err(journal::JournalError::HeadMoved { found, .. }) => {
                Err(journal_not_empty(Head { sequence: found, hash: [0; 32] }))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.journal.take();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the staging journal of a restore");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::domain::ident::CreditCode;
    use crate::domain::pledge::{Release, ReleaseReason};
    use crate::domain::principal::Role;
    use crate::domain::text::{Note, parse_date};
    use crate::ledger::journal::Event;
    use uuid::Uuid;

    fn restored(events: Vec<(&str, Event)>) -> Result<Head, LedgerError> {
        restored_into(events).1
    }

    fn check(events: Vec<(&str, Event)>, refused_at: Option<u64>) {
        let result = restored(events);
        match refused_at {
            None => assert!(result.is_ok(), "{result:?}"),
            Some(sequence) => {
                let e = result.expect_err("a crafted dump is refused");
                assert_eq!(e.reason(), "ENTRY_REFUSED", "{e:?}");
                assert!(e.to_string().contains(&format!("entry {sequence}:")), "{e}");
            }
        }
    }
    #[test]
    fn a_crafted_dump_cannot_do_what_the_rules_refuse_whatever_its_hashes() {
        let setup = || {
            vec![
                ("operator", created("root", Role::Admin)),
                ("root", created("bank-a", Role::Bank(CreditCode::parse(BANK_A).unwrap()))),
            ]
        };
        let with = |more: Vec<(&'static str, Event)>| setup().into_iter().chain(more).collect::<Vec<_>>();
        check(with(vec![("root", pledge(1, BANK_B, "1234567", "root", 1002))]), None);
        // A bank creates an admin.
        check(with(vec![("bank-a", created("evil", Role::Admin))]), Some(3));
        // A name nobody created writes.
        check(with(vec![("ghost", pledge(1, BANK_A, "1234567", "ghost", 1002))]), Some(3));
        // A bank registers a pledge into another bank's book, or opens its credit line.
        check(with(vec![("bank-a", pledge(1, BANK_B, "1234567", "bank-a", 1002))]), Some(3));
        check(with(vec![("bank-a", line(BANK_B, "bank-a", 1002))]), Some(3));
        // A bank releases another bank's pledge.
        let release = Release {
            released_on: parse_date("2021-06-01").unwrap(),
            reason: ReleaseReason::Repaid,
            note: Note::parse("").unwrap(),
        };
        let moved = Event::PledgeReleased { id: Uuid::from_u128(1), release };
        check(with(vec![("root", pledge(1, BANK_B, "1234567", "root", 1002)), ("bank-a", moved)]), Some(4));
        // A right pledged twice.
        let twice = vec![
            ("root", pledge(1, BANK_B, "1234567", "root", 1002)),
            ("root", pledge(2, BANK_A, "1234567", "root", 1003)),
        ];
        check(with(twice), Some(4));
        // Entries of a revoked principal.
        let revoked = vec![
            ("root", Event::PrincipalRevoked { name: name("bank-a") }),
            ("bank-a", pledge(1, BANK_A, "1234567", "bank-a", 1003)),
        ];
        check(with(revoked), Some(4));
    }

    /// A memory journal that keeps group signatures, as the PostgreSQL journal does.
    #[derive(Default)]
    struct Signed {
        entries: journal::MemoryJournal,
        signatures: std::sync::Mutex<Vec<journal::GroupSignature>>,
    }

    impl Journal for Signed {
        fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, journal::JournalError> {
            self.entries.append(expected, entries)
        }
        fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, journal::JournalError> {
            self.entries.read(from, limit)
        }
        fn head(&self) -> Result<Head, journal::JournalError> {
            self.entries.head()
        }
        fn size_on_disk(&self) -> Result<u64, journal::JournalError> {
            Ok(0)
        }
        fn group_signatures(
            &self,
            from: u64,
            limit: usize,
        ) -> Result<Vec<journal::GroupSignature>, journal::JournalError> {
            let held = self.signatures.lock().unwrap();
            Ok(held.iter().filter(|s| s.sequence >= from).take(limit).cloned().collect())
        }
    }

    impl Signed {
        /// Appends `n` entries as one group, signed by `signer` when given.
        fn group(&self, n: u64, signer: Option<&crate::ledger::signing::Signer>) {
            use journal::GroupSigner;
            let head = self.head().unwrap();
            let entries = journal::suite::chain(head, n);
            let last = self.append(head, &entries).unwrap();
            if let Some(signer) = signer {
                self.signatures.lock().unwrap().push(signer.sign_group(last));
            }
        }
    }

    #[test]
    fn a_follower_reads_only_what_the_cluster_s_key_signed_and_reads_ahead_for_a_long_group() {
        let key = crate::ledger::signing::Signer::ephemeral().unwrap();
        let public = key.public_key();
        let journal = Signed::default();
        // A group longer than the follower's chunk is read whole, up to its signature.
        journal.group(3000, Some(&key));
        journal.group(10, Some(&key));
        let read = read_signed(&journal, 1, 1024, &public).unwrap();
        assert_eq!(read.len(), 3000);
        assert_eq!(read_signed(&journal, 1, 5000, &public).unwrap().len(), 3010);
        // Rows nobody signed after signed ones: the signed ones are read, then a refusal.
        journal.group(5, None);
        assert_eq!(read_signed(&journal, 3001, 1024, &public).unwrap().len(), 10);
        let refused = read_signed(&journal, 3011, 1024, &public).unwrap_err();
        assert_eq!(refused.reason(), "GROUP_UNSIGNED", "{refused:?}");
        // A signature by another key over rows, even ones that link.
        let other = Signed::default();
        other.group(4, Some(&crate::ledger::signing::Signer::ephemeral().unwrap()));
        let refused = read_signed(&other, 1, 1024, &public).unwrap_err();
        assert_eq!(refused.reason(), "GROUP_SIGNATURE_INVALID", "{refused:?}");
        // A group longer than a signed run may be is refused rather than read without bound.
        let long = Signed::default();
        long.group(journal::SIGNED_RUN_MAX as u64 + 1, Some(&key));
        let refused = read_signed(&long, 1, 1024, &public).unwrap_err();
        assert_eq!(refused.reason(), "GROUP_UNSIGNED", "{refused:?}");
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! Builders of journal entries for the tests of replay.
    use super::*;
    use crate::domain::credit_line::{CreditLine, NewCreditLine};
    use crate::domain::ident::{CreditCode, RightKind, RightNumber};
    use crate::domain::money::Money;
    use crate::domain::pledge::{NewPledge, Party, Pledge, RegistrationNumber, Release, ReleaseReason, Right};
    use crate::domain::principal::{Principal, PrincipalName, Role};
    use crate::domain::region::{CountyCode, Region};
    use crate::domain::text::{Name, Note, parse_date};
    use crate::ledger::journal::{Event, MemoryJournal, RequestKey, format};
    use crate::ledger::principals::PrincipalRecord;
    use crate::store::MemoryStore;
    use uuid::Uuid;

    pub const BANK_A: &str = "91330100716105852F";
    pub const BANK_B: &str = "911100001000044477";

    pub fn name(n: &str) -> PrincipalName {
        PrincipalName::parse(n).unwrap()
    }

    pub fn created(n: &str, role: Role) -> Event {
        let principal = Principal { name: name(n), role, create_time: 0, revoke_time: None };
        Event::PrincipalCreated { record: PrincipalRecord { principal, token_hash: [n.len() as u8; 32] } }
    }

    pub fn party(code: &str) -> Party {
        Party { name: Name::parse("Some Co").unwrap(), credit_code: CreditCode::parse(code).unwrap() }
    }

    pub fn pledge(id: u128, pledgee: &str, right: &str, by: &str, at: i64) -> Event {
        let content = NewPledge::new(crate::domain::pledge::PledgeDraft {
            registration_number: None,
            pledgor: party("91330106MA2E00101C"),
            co_pledgors: Vec::new(),
            invalidation_pending_accepted: false,
            pledgee: party(pledgee),
            county: CountyCode::parse("330106").unwrap(),
            secured_amount: Money::parse_positive("100.00").unwrap(),
            debt_term_start: parse_date("2021-01-01").unwrap(),
            debt_term_end: parse_date("2022-01-01").unwrap(),
            registered_on: parse_date("2021-01-05").unwrap(),
            rights: vec![Right {
                number: RightNumber::parse(right, RightKind::Trademark).unwrap(),
                title: Note::parse("").unwrap(),
                expiry: crate::domain::pledge::Expiry::Given(parse_date("2030-01-01").unwrap()),
            }],
            credit_line_id: None,
        })
        .unwrap();
        let number = RegistrationNumber::assigned(content.registered_on, id as u64);
        Event::PledgeRegistered { pledge: Pledge::register(Uuid::from_u128(id), number, content, name(by), at) }
    }

    pub fn line(bank: &str, by: &str, at: i64) -> Event {
        let content = NewCreditLine::new(
            party(bank),
            Region::parse("330100").unwrap(),
            Note::parse("").unwrap(),
            Money::parse_positive("1000").unwrap(),
            parse_date("2021-01-01").unwrap(),
            parse_date("2025-01-01").unwrap(),
        )
        .unwrap();
        Event::CreditLineCreated { line: CreditLine::open(Uuid::from_u128(77), content, name(by), at) }
    }

    /// Seals `(principal, event)`s into a chained dump, as a writer with a stolen key could.
    pub fn dump(events: Vec<(&str, Event)>) -> Vec<Result<Stored, String>> {
        let mut head = Head::default();
        events
            .into_iter()
            .enumerate()
            .map(|(i, (by, event))| {
                // 2021-01-06 (UTC), the day after the helpers' registrations: inside a bank's window.
                let at = 1_609_891_200_000_000 + i as i64;
                let request = match &event {
                    Event::PrincipalCreated { .. }
                    | Event::PrincipalRevoked { .. }
                    | Event::CertificateBound { .. }
                    | Event::TreeHeadCosigned { .. } => None,
                    _ => Some(RequestKey {
                        id: Uuid::from_u128(i as u128 + 1),
                        fingerprint: [0; 32],
                        form: format::VERSION,
                    }),
                };
                let event = match event {
                    // Times are the entry's: fix those the helpers could not know.
                    Event::PledgeRegistered { mut pledge } => {
                        pledge.create_time = at;
                        pledge.update_time = at;
                        Event::PledgeRegistered { pledge }
                    }
                    Event::CreditLineCreated { mut line } => {
                        line.create_time = at;
                        line.update_time = at;
                        Event::CreditLineCreated { line }
                    }
                    other => other,
                };
                let (_, stored) = format::seal(head.sequence + 1, head.hash, at, &name(by), request, event);
                head = stored.head();
                Ok(stored)
            })
            .collect()
    }

    /// Restores `events` into a memory journal and derived state; the derived base and the result.
    pub fn restored_into(events: Vec<(&str, Event)>) -> (Arc<MemoryStore>, Result<Head, LedgerError>) {
        let journal = MemoryJournal::default();
        let base = Arc::new(MemoryStore::default());
        let derived = Derived::new(base.clone(), derived::CHECKPOINT_BYTES, &journal).unwrap();
        let result = restore(&journal, &derived, dump(events));
        (base, result)
    }

    /// A ledger with an entry of every kind, restored.
    pub fn restored_everything() -> (Arc<MemoryStore>, Head) {
        let change = crate::domain::pledge::Change {
            request_id: Uuid::from_u128(5),
            at: 1_004,
            by: name("bank-a"),
            effective_on: parse_date("2021-03-01").unwrap(),
            reason: crate::domain::text::Reason::parse("renegotiated").unwrap(),
            secured_amount: (Money::parse_positive("100.00").unwrap(), Money::parse_positive("90.00").unwrap()),
            debt_term_end: (parse_date("2022-01-01").unwrap(), parse_date("2022-01-01").unwrap()),
        };
        let release = Release {
            released_on: parse_date("2021-06-01").unwrap(),
            reason: ReleaseReason::Repaid,
            note: Note::parse("").unwrap(),
        };
        let binding = crate::ledger::principals::CertificateBinding::DnsName("teller.bank-a.example".to_owned());
        let witness = crate::ledger::signing::Signer::ephemeral().unwrap();
        let cosignature = crate::ledger::journal::TreeCosignature {
            tree_size: 3,
            root_hash: [7; 32],
            witness: name("city-office"),
            public_key: witness.public_key(),
            signature: witness.cosign(3, &[7; 32]),
        };
        let events = vec![
            ("operator", created("root", Role::Admin)),
            ("root", created("bank-a", Role::Bank(CreditCode::parse(BANK_A).unwrap()))),
            ("root", line(BANK_A, "root", 1_002)),
            ("bank-a", pledge(1, BANK_A, "1234567", "bank-a", 1_003)),
            ("bank-a", Event::PledgeChanged { id: Uuid::from_u128(1), change }),
            ("bank-a", Event::PledgeReleased { id: Uuid::from_u128(1), release }),
            ("root", Event::CertificateBound { name: name("bank-a"), binding }),
            ("root", created("office", Role::Office(Region::parse("330000").unwrap()))),
            ("root", Event::PrincipalRevoked { name: name("office") }),
            ("bank-a", pledge(2, BANK_A, "7654321", "bank-a", 1_009)),
            ("bank-a", Event::TreeHeadCosigned { cosignature }),
        ];
        let (base, head) = restored_into(events);
        (base, head.unwrap())
    }
}

#[cfg(test)]
mod families {
    use super::tests_support::*;
    use crate::store::Store;

    #[test]
    fn verify_compares_every_family_the_projector_writes() {
        let (base, _) = restored_everything();
        let mut families = std::collections::BTreeSet::new();
        for (key, _) in base.scan(b"", None, usize::MAX).unwrap() {
            families.insert(key[0]);
        }
        for family in &families {
            let derived = super::keys::DERIVED.iter().any(|f| f[0] == *family);
            assert!(derived || *family == b'M', "family {} is written but not compared by verify", *family as char);
        }
        // The Merkle tree stores its first key at entry 256 (`tree::TILE_LEAVES`); its keys are
        // checked by tree's own tests and the integration tests that verify a grown ledger.
        for family in super::keys::DERIVED.iter().filter(|f| f != &b"L") {
            assert!(families.contains(&family[0]), "family {} is compared but never written", family[0] as char);
        }
    }
}
