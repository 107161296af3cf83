//! The embedded journal: its own sled database (apart from derived state, so that a flush of the
//! journal writes only the journal). Keys are big-endian sequences, so an append writes at the end
//! of the key space, the cheap place in a B-tree; values are hash(32) followed by the entry's bytes.
//! A group is one `apply_batch` and one `flush`: durable when `append` returns.
//!
//! sled's `flush_async` is never used (concurrent calls can deadlock, sled issue 1308); one writer
//! appends, so flushes never overlap.

use super::{Hash, Head, Journal, JournalError, Stored, check_append};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug)]
pub struct SledJournal {
    db: sled::Db,
    /// The head as of the last durable append (appends are serialised by this lock); `None` after
    /// a flush failed, when what is durable is unknown until the journal is opened again.
    head: Mutex<Option<Head>>,
}

const LOCK_WAIT_MS: u64 = 3000;
const LOCK_RETRY_MS: u64 = 50;

fn unavailable(e: sled::Error) -> JournalError {
    JournalError::Unavailable(e.to_string())
}

fn unknown_after_failure() -> JournalError {
    JournalError::OutcomeUnknown("an append failed part-way; reopen the journal to learn its head".to_owned())
}

fn stored(key: &[u8], value: &[u8]) -> Result<Stored, JournalError> {
    let corrupt = || JournalError::Corrupt(format!("journal record at key {} is malformed", super::hex(key)));
    let sequence = u64::from_be_bytes(key.try_into().map_err(|_| corrupt())?);
    let hash: Hash = value.get(..32).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?;
    Ok(Stored { sequence, hash, bytes: value[32..].to_vec() })
}

impl SledJournal {
    /// Opens (or creates) the journal in `dir`.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledJournal, JournalError> {
        // Appends flush themselves; sled's timer flush is only a backstop.
        let config = sled::Config::new().path(dir).cache_capacity(cache_bytes).flush_every_ms(Some(1000));
        // A process that just closed the journal may hold its lock for a moment more.
        let mut waited_ms = 0;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if e.to_string().contains("could not acquire lock") && waited_ms < LOCK_WAIT_MS => {
                    std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
                    waited_ms += LOCK_RETRY_MS;
                }
                Err(e) => return Err(unavailable(e)),
            }
        };
        let head = match db.last().map_err(unavailable)? {
            Some((k, v)) => stored(&k, &v)?.head(),
            None => Head::default(),
        };
        Ok(SledJournal { db, head: Mutex::new(Some(head)) })
    }
}

impl Journal for SledJournal {
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        let mut held = self.head.lock().map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?;
        let head = held.ok_or_else(unknown_after_failure)?;
        if head != expected {
            return Err(JournalError::HeadMoved { expected: expected.sequence, found: head.sequence });
        }
        check_append(expected, entries)?;
        let Some(last) = entries.last() else { return Ok(head) };
        let mut batch = sled::Batch::default();
        for entry in entries {
            let mut value = Vec::with_capacity(32 + entry.bytes.len());
            value.extend_from_slice(&entry.hash);
            value.extend_from_slice(&entry.bytes);
            batch.insert(&entry.sequence.to_be_bytes(), value);
        }
        // From here on the batch may be in sled's memory without being durable: a failure leaves
        // the outcome unknown (and the head too, until a restart reads what the disk kept).
        *held = None;
        self.db.apply_batch(batch).map_err(|e| JournalError::OutcomeUnknown(e.to_string()))?;
        self.db.flush().map_err(|e| JournalError::OutcomeUnknown(e.to_string()))?;
        *held = Some(last.head());
        Ok(last.head())
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
        let mut out = Vec::with_capacity(limit.min(4096));
        for item in self.db.range(from.to_be_bytes()..).take(limit) {
            let (k, v) = item.map_err(unavailable)?;
            out.push(stored(&k, &v)?);
        }
        Ok(out)
    }

    fn head(&self) -> Result<Head, JournalError> {
        self.head
            .lock()
            .map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?
            .ok_or_else(unknown_after_failure)
    }

    fn size_on_disk(&self) -> Result<u64, JournalError> {
        self.db.size_on_disk().map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sled_journal_passes_the_backend_suite_and_keeps_its_head_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let head = {
            let journal = super::SledJournal::open(dir.path(), 1 << 20).unwrap();
            super::super::suite::run(&journal);
            super::Journal::head(&journal).unwrap()
        };
        let journal = super::SledJournal::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(super::Journal::head(&journal).unwrap(), head);
    }
}
