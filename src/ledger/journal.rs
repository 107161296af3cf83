//! The journal: the ground truth of the ledger. Every accepted write appends one entry with a
//! gapless sequence number, a strictly increasing server timestamp, the principal, the request id
//! and the event with its full before/after content. Each entry's hash is SHA-256 over the
//! previous entry's hash and the entry's own canonical bytes, so changing any byte of any entry
//! breaks the chain from there on.
//!
//! `verify` re-walks the chain and rebuilds every derived record from the journal alone (with the
//! same `events::apply_entry` the writer uses), then compares the rebuild with what is stored and
//! reports the first divergence: sequence, key, expected and found.

use super::codec;
use super::events::{self, Event};
use super::keys;
use super::tx::Tx;
use crate::domain::principal::PrincipalName;
use crate::domain::{LedgerError, Micros};
use crate::store::{MemoryStore, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use uuid::Uuid;

pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub sequence: u64,
    pub at: Micros,
    pub principal: PrincipalName,
    /// The request id and the fingerprint of the request, for idempotent retries.
    pub request: Option<(Uuid, [u8; 32])>,
    pub event: Event,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// The last entry's sequence and hash; (0, zeros) before the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub sequence: u64,
    pub hash: Hash,
}

impl Entry {
    /// SHA-256 over the previous hash and the canonical (postcard) bytes of everything else.
    pub fn compute_hash(&self) -> Hash {
        let body = postcard::to_allocvec(&(self.sequence, self.at, &self.principal, &self.request, &self.event))
            .expect("in-memory encoding");
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash);
        hasher.update(&body);
        hasher.finalize().into()
    }
}

pub fn head(tx: &Tx<'_>) -> Result<Head, LedgerError> {
    Ok(tx.get::<Head>(keys::META_JOURNAL_HEAD)?.unwrap_or_default())
}

pub fn stored_head(store: &dyn Store) -> Result<Head, LedgerError> {
    head(&Tx::new(store))
}

/// Appends the entry for `event` and applies it to the derived records.
pub fn append(
    tx: &mut Tx<'_>,
    at: Micros,
    principal: &PrincipalName,
    request: Option<(Uuid, [u8; 32])>,
    event: Event,
) -> Result<Entry, LedgerError> {
    let previous = head(tx)?;
    let mut entry = Entry {
        sequence: previous.sequence + 1,
        at,
        principal: principal.clone(),
        request,
        event,
        prev_hash: previous.hash,
        hash: [0; 32],
    };
    entry.hash = entry.compute_hash();
    events::apply_entry(tx, &entry)?;
    tx.put(keys::journal(entry.sequence), &entry);
    tx.put(keys::META_JOURNAL_HEAD.to_vec(), &Head { sequence: entry.sequence, hash: entry.hash });
    Ok(entry)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    pub head: Hash,
    pub keys_compared: u64,
    pub divergence: Option<Divergence>,
}

/// Entries read per scan while walking the journal.
const CHUNK: usize = 4096;

/// Reads entries `from..` in order, calling `f` on each (stops early when `f` says so).
pub fn walk(
    store: &dyn Store,
    from: u64,
    mut f: impl FnMut(Result<Entry, (u64, String)>) -> Result<bool, LedgerError>,
) -> Result<(), LedgerError> {
    let mut after = (from > 1).then(|| keys::journal(from - 1));
    loop {
        let batch =
            store.scan(keys::JOURNAL, after.as_deref(), CHUNK).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        let done = batch.len() < CHUNK;
        for (key, value) in batch {
            let sequence = keys::journal_sequence(&key).unwrap_or(0);
            let decoded = codec::decode::<Entry>(&key, &value).map_err(|e| (sequence, e.to_string()));
            if !f(decoded)? {
                return Ok(());
            }
            after = Some(key);
        }
        if done {
            return Ok(());
        }
    }
}

/// The key families that are derived from the journal and compared by `verify`.
const DERIVED: &[&[u8]] =
    &[b"A", b"C", b"D", b"G", b"H", b"I", b"J", b"K", b"N", b"P", b"Q", b"R", b"T", b"U", b"X", b"Y"];

fn printable(key: &[u8]) -> String {
    key.iter().map(|&b| if b.is_ascii_graphic() { (b as char).to_string() } else { format!("\\x{b:02x}") }).collect()
}

/// Re-walks the chain, rebuilds the derived records from the journal, and compares.
pub fn verify(store: &dyn Store) -> Result<Report, LedgerError> {
    let rebuilt = MemoryStore::default();
    // Which entry last wrote each key, to name the sequence of a diverging record.
    let mut writer_of: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut previous = Head::default();
    let mut divergence = None;
    walk(store, 1, |entry| {
        let entry = match entry {
            Ok(e) => e,
            Err((sequence, message)) => {
                divergence = Some(Divergence {
                    sequence,
                    key: printable(&keys::journal(sequence)),
                    expected: "a decodable journal entry".to_owned(),
                    found: message,
                });
                return Ok(false);
            }
        };
        let expected_sequence = previous.sequence + 1;
        let fault = if entry.sequence != expected_sequence {
            Some(("sequence".to_owned(), expected_sequence.to_string(), entry.sequence.to_string()))
        } else if entry.prev_hash != previous.hash {
            Some(("prev_hash".to_owned(), hex(&previous.hash), hex(&entry.prev_hash)))
        } else if entry.compute_hash() != entry.hash {
            Some(("hash".to_owned(), hex(&entry.compute_hash()), hex(&entry.hash)))
        } else {
            None
        };
        if let Some((field, expected, found)) = fault {
            divergence = Some(Divergence {
                sequence: expected_sequence,
                key: format!("{} ({field})", printable(&keys::journal(expected_sequence))),
                expected,
                found,
            });
            return Ok(false);
        }
        let mut tx = Tx::new(&rebuilt);
        if let Err(e) = events::apply_entry(&mut tx, &entry) {
            divergence = Some(Divergence {
                sequence: entry.sequence,
                key: printable(&keys::journal(entry.sequence)),
                expected: "an entry that applies to the state before it".to_owned(),
                found: e.to_string(),
            });
            return Ok(false);
        }
        tx.accept();
        let batch = tx.into_batch();
        for (key, _) in &batch.ops {
            writer_of.insert(key.clone(), entry.sequence);
        }
        rebuilt.commit(batch).map_err(|e| LedgerError::Internal(e.to_string()))?;
        previous = Head { sequence: entry.sequence, hash: entry.hash };
        Ok(true)
    })?;
    let mut report = Report { entries: previous.sequence, head: previous.hash, keys_compared: 0, divergence };
    if report.divergence.is_some() {
        return Ok(report);
    }
    let stored_head = stored_head(store)?;
    if stored_head != previous {
        report.divergence = Some(Divergence {
            sequence: previous.sequence,
            key: printable(keys::META_JOURNAL_HEAD),
            expected: format!("{} {}", previous.sequence, hex(&previous.hash)),
            found: format!("{} {}", stored_head.sequence, hex(&stored_head.hash)),
        });
        return Ok(report);
    }
    for family in DERIVED {
        let expected = rebuilt.scan(family, None, usize::MAX).map_err(|e| LedgerError::Internal(e.to_string()))?;
        let mut expected = expected.into_iter().peekable();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let found =
                store.scan(family, after.as_deref(), CHUNK).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
            let done = found.len() < CHUNK;
            for (key, value) in found {
                // Every rebuilt key before this stored one is missing from the store.
                if let Some((ek, ev)) = expected.next_if(|(ek, _)| *ek < key) {
                    report.divergence = Some(divergence_at(&writer_of, &ek, Some(&ev), None));
                    return Ok(report);
                }
                report.keys_compared += 1;
                match expected.next_if(|(ek, _)| *ek == key) {
                    Some((_, ev)) if ev == value => {}
                    Some((ek, ev)) => {
                        report.divergence = Some(divergence_at(&writer_of, &ek, Some(&ev), Some(&value)));
                        return Ok(report);
                    }
                    None => {
                        report.divergence = Some(divergence_at(&writer_of, &key, None, Some(&value)));
                        return Ok(report);
                    }
                }
                after = Some(key);
            }
            if done {
                break;
            }
        }
        if let Some((ek, ev)) = expected.next() {
            report.divergence = Some(divergence_at(&writer_of, &ek, Some(&ev), None));
            return Ok(report);
        }
    }
    Ok(report)
}

fn divergence_at(
    writer_of: &HashMap<Vec<u8>, u64>,
    key: &[u8],
    expected: Option<&[u8]>,
    found: Option<&[u8]>,
) -> Divergence {
    Divergence {
        sequence: writer_of.get(key).copied().unwrap_or(0),
        key: printable(key),
        expected: events::describe(expected),
        found: events::describe(found),
    }
}

/// Entries restored per atomic batch (one flush each).
const RESTORE_BATCH: usize = 1000;

/// Rebuilds every derived record of `store` from its own journal, in place: deletes the derived
/// families, then applies the entries in order, a batch at a time. Run when the derived layout
/// changed between builds. Safe to repeat after a crash part-way: the caller marks the new layout
/// only after this returns, so an interrupted rebuild starts over.
pub fn rebuild_derived(store: &dyn Store) -> Result<u64, LedgerError> {
    let unavailable = |e: crate::store::StoreError| LedgerError::Unavailable(e.to_string());
    for family in DERIVED {
        loop {
            let keys = store.scan(family, None, RESTORE_BATCH).map_err(unavailable)?;
            if keys.is_empty() {
                break;
            }
            let ops = keys.into_iter().map(|(key, _)| (key, None)).collect();
            store.commit(crate::store::Batch { ops }).map_err(unavailable)?;
        }
    }
    let head = stored_head(store)?.sequence;
    let mut after: Option<Vec<u8>> = None;
    let mut applied = 0u64;
    loop {
        let chunk = store.scan(keys::JOURNAL, after.as_deref(), RESTORE_BATCH).map_err(unavailable)?;
        let Some((last, _)) = chunk.last() else { break };
        after = Some(last.clone());
        let mut tx = Tx::new(store);
        for (key, value) in &chunk {
            let entry: Entry = codec::decode(key, value)?;
            events::apply_entry(&mut tx, &entry)?;
            applied += 1;
        }
        tx.accept();
        store.commit(tx.into_batch()).map_err(unavailable)?;
        tracing::info!(applied, head, "rebuilding derived records from the journal");
    }
    assert_eq!(applied, head, "the journal holds every entry up to its head");
    Ok(applied)
}

/// Builds a ledger in an empty store from a journal dump: checks the chain entry by entry, applies
/// each with the writer's own `apply_entry`, and sets the metadata (journal head, clock, serial).
pub fn restore(
    store: &dyn Store,
    entries: impl IntoIterator<Item = Result<Entry, String>>,
) -> Result<Head, LedgerError> {
    let unavailable = |e: crate::store::StoreError| LedgerError::Unavailable(e.to_string());
    // Empty but for the layout mark a new store gets when it is opened.
    let held = store.scan(b"", None, 2).map_err(unavailable)?;
    if held.iter().any(|(key, _)| key != keys::META_DERIVED_LAYOUT) {
        return Err(LedgerError::refused("DATA_DIR_NOT_EMPTY", "restore needs an empty data directory"));
    }
    let mut previous = Head::default();
    let mut serial = 0u64;
    let mut clock = 0;
    let mut tx = Tx::new(store);
    let mut in_batch = 0;
    for (line, entry) in entries.into_iter().enumerate() {
        let entry = entry.map_err(|e| LedgerError::invalid_field(format!("line {}", line + 1), e))?;
        let broken = |what: &str| {
            LedgerError::refused(
                "JOURNAL_CHAIN_BROKEN",
                format!("entry {} (line {}): {what}", entry.sequence, line + 1),
            )
            .with("sequence", entry.sequence)
        };
        if entry.sequence != previous.sequence + 1 {
            return Err(broken(&format!("expected sequence {}", previous.sequence + 1)));
        }
        if entry.prev_hash != previous.hash {
            return Err(broken("its previous hash is not the hash of the entry before it"));
        }
        if entry.compute_hash() != entry.hash {
            return Err(broken("its hash does not match its content"));
        }
        if let Event::PledgeRegistered { pledge } = &entry.event {
            serial = serial.max(pledge.registration_number.assigned_serial().unwrap_or(0));
        }
        events::apply_entry(&mut tx, &entry)?;
        tx.put(keys::journal(entry.sequence), &entry);
        previous = Head { sequence: entry.sequence, hash: entry.hash };
        clock = entry.at;
        in_batch += 1;
        if in_batch == RESTORE_BATCH {
            tx.accept();
            store.commit(std::mem::replace(&mut tx, Tx::new(store)).into_batch()).map_err(unavailable)?;
            in_batch = 0;
        }
    }
    tx.put(keys::META_JOURNAL_HEAD.to_vec(), &previous);
    tx.put(keys::META_CLOCK.to_vec(), &clock);
    if serial > 0 {
        tx.put(keys::META_REGISTRATION_SERIAL.to_vec(), &serial);
    }
    tx.accept();
    store.commit(tx.into_batch()).map_err(unavailable)?;
    Ok(previous)
}
