//! A journal in memory, for tests and for the scratch rebuilds of `verify`.

use super::{Head, Journal, JournalError, Stored, check_append};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryJournal {
    entries: Mutex<Vec<Stored>>,
}

impl Journal for MemoryJournal {
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        let mut held = self.entries.lock().map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?;
        let head = held.last().map(Stored::head).unwrap_or_default();
        if head != expected {
            return Err(JournalError::HeadMoved { expected: expected.sequence, found: head.sequence });
        }
        check_append(expected, entries)?;
        held.extend_from_slice(entries);
        Ok(held.last().map(Stored::head).unwrap_or_default())
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
        let held = self.entries.lock().map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?;
        let start = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
        Ok(held.iter().skip(start).take(limit).cloned().collect())
    }

    fn head(&self) -> Result<Head, JournalError> {
        let held = self.entries.lock().map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?;
        Ok(held.last().map(Stored::head).unwrap_or_default())
    }

    fn size_on_disk(&self) -> Result<u64, JournalError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_memory_journal_passes_the_backend_suite() {
        super::super::suite::run(&super::MemoryJournal::default());
    }
}
