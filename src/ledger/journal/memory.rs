//! A journal in memory, for tests and for the scratch rebuilds of `verify`; and, shared by several
//! nodes (`MemoryJournal::node`) with a `MemoryLease`, the journal and writer's lease of a cluster
//! in memory: what the simulation (tests/sim.rs) runs its takeovers on.
//!
//! The shared journal has the PostgreSQL journal's shape: one record of entries, group signatures
//! and the lease, with a journal handle per node that appends under the term its lease last
//! acquired and is refused (`JournalError::Fenced`, nothing written) once another node took the
//! lease over. The lease reads a clock of its own (`MemoryJournal::advance_clock`) that moves only
//! when a test moves it: a lease expires exactly when the test (the simulation's seed) says, however
//! slowly the threads run.

use super::lease::{Term, WriterLease};
use super::{GroupSignature, GroupSigner, Head, Journal, JournalError, Stored, check_append};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What the nodes of one memory journal share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Notified at every append: a follower waiting for news (`wait_for_append`) wakes at once.
    appended: Condvar,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Stored>,
    signatures: Vec<GroupSignature>,
    lease: LeaseRecord,
    /// The lease's clock: time since the journal was made, as tests advance it.
    now: Duration,
}

/// The lease, as PostgreSQL's row holds it.
#[derive(Debug, Default)]
struct LeaseRecord {
    /// Empty: nobody ever held it.
    holder: String,
    /// Grows at every takeover; 0 before the first.
    term: i64,
    /// `None`: released (PostgreSQL's 'epoch'), or never held.
    expires_at: Option<Duration>,
}

impl LeaseRecord {
    fn live(&self, now: Duration) -> bool {
        !self.holder.is_empty() && self.expires_at.is_some_and(|at| at >= now)
    }
}

/// One node's handle on a memory journal (`default()`: a journal of its own).
#[derive(Default)]
pub struct MemoryJournal {
    shared: Arc<Shared>,
    /// The lease term this node appends under (0: no lease, one node alone), set by its lease.
    term: Arc<AtomicI64>,
    /// Signs each appended group, as a node of a cluster does (`None`: groups go unsigned).
    signer: Option<Arc<dyn GroupSigner>>,
}

impl std::fmt::Debug for MemoryJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryJournal").field("term", &self.term).finish_non_exhaustive()
    }
}

fn poisoned<T>(_: T) -> JournalError {
    JournalError::Unavailable("poisoned".to_owned())
}

impl MemoryJournal {
    /// Another node's handle on the same journal and lease: its own term (none yet) and signer.
    pub fn node(&self) -> MemoryJournal {
        MemoryJournal { shared: self.shared.clone(), term: Arc::default(), signer: None }
    }

    /// Signs every group appended from now on with `signer` (the cluster's key).
    pub fn sign_groups_with(mut self, signer: Arc<dyn GroupSigner>) -> MemoryJournal {
        self.signer = Some(signer);
        self
    }

    /// The term this handle appends under, shared with the lease that sets it.
    pub fn term(&self) -> Arc<AtomicI64> {
        self.term.clone()
    }

    /// Moves the lease's clock on by `by` (for every node of the journal): a lease not renewed
    /// for longer than its ttl expires.
    pub fn advance_clock(&self, by: Duration) {
        let mut state = self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.now += by;
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, JournalError> {
        self.shared.state.lock().map_err(poisoned)
    }
}

impl Journal for MemoryJournal {
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        let mut held = self.lock()?;
        // Under the same lock as the lease: a takeover and this append are ordered, as
        // PostgreSQL's row lock orders them.
        let term = self.term.load(Ordering::SeqCst);
        if term > 0 && held.lease.term != term {
            return Err(JournalError::Fenced { held: term, found: held.lease.term });
        }
        let head = held.entries.last().map(Stored::head).unwrap_or_default();
        if head != expected {
            return Err(JournalError::HeadMoved { expected: expected.sequence, found: head.sequence });
        }
        check_append(expected, entries)?;
        held.entries.extend_from_slice(entries);
        let head = held.entries.last().map(Stored::head).unwrap_or_default();
        if let (Some(signer), Some(_)) = (&self.signer, entries.last()) {
            let signed = signer.sign_group(head);
            assert_eq!(signed.sequence, head.sequence, "a group's signature names its last entry");
            held.signatures.push(signed);
        }
        self.shared.appended.notify_all();
        Ok(head)
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
        let held = self.lock()?;
        let start = usize::try_from(from.max(1) - 1).unwrap_or(usize::MAX);
        Ok(held.entries.iter().skip(start).take(limit).cloned().collect())
    }

    fn head(&self) -> Result<Head, JournalError> {
        Ok(self.lock()?.entries.last().map(Stored::head).unwrap_or_default())
    }

    fn wait_for_append(&self, after: u64, timeout: Duration) {
        let Ok(held) = self.lock() else { return };
        let _ = self.shared.appended.wait_timeout_while(held, timeout, |state| state.entries.len() as u64 <= after);
    }

    fn size_on_disk(&self) -> Result<u64, JournalError> {
        Ok(0)
    }

    fn group_signatures(&self, from: u64, limit: usize) -> Result<Vec<GroupSignature>, JournalError> {
        let held = self.lock()?;
        // Signatures are appended in sequence order: find the first at or after `from`.
        let start = held.signatures.partition_point(|s| s.sequence < from);
        Ok(held.signatures.iter().skip(start).take(limit).cloned().collect())
    }
}

/// The writer's lease of a memory journal, with the contract of PostgreSQL's (`lease::Lease`):
/// acquiring sets the term the node's journal handle appends under, and the journal refuses an
/// append under a term that was taken over. Its time is the journal's clock (`advance_clock`).
#[derive(Debug)]
pub struct MemoryLease {
    shared: Arc<Shared>,
    node: String,
    ttl: Duration,
    fence: Arc<AtomicI64>,
}

impl MemoryLease {
    /// The lease of `journal` (any node's handle on it) as `node`; `fence` is the term of the
    /// node's own handle (`MemoryJournal::term`), set whenever this node acquires the lease.
    pub fn connect(journal: &MemoryJournal, node: &str, ttl: Duration, fence: Arc<AtomicI64>) -> MemoryLease {
        assert!(!node.is_empty(), "an empty name is nobody's");
        MemoryLease { shared: journal.shared.clone(), node: node.to_owned(), ttl, fence }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, JournalError> {
        self.shared.state.lock().map_err(poisoned)
    }
}

impl WriterLease for MemoryLease {
    fn node(&self) -> &str {
        &self.node
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn acquire(&self) -> Result<Option<Term>, JournalError> {
        let mut state = self.lock()?;
        let now = state.now;
        if state.lease.live(now) {
            return Ok(None);
        }
        let lease = &mut state.lease;
        lease.holder.clone_from(&self.node);
        lease.term += 1;
        lease.expires_at = Some(now + self.ttl);
        // Set before the lock is released: no append of this node can see the new term without it.
        self.fence.store(lease.term, Ordering::SeqCst);
        Ok(Some(Term(lease.term)))
    }

    fn renew(&self, term: Term) -> Result<bool, JournalError> {
        let mut state = self.lock()?;
        let now = state.now;
        let lease = &mut state.lease;
        if lease.holder != self.node || lease.term != term.0 || !lease.live(now) {
            return Ok(false);
        }
        lease.expires_at = Some(now + self.ttl);
        Ok(true)
    }

    fn release(&self, term: Term) -> Result<(), JournalError> {
        let mut state = self.lock()?;
        if state.lease.holder == self.node && state.lease.term == term.0 {
            state.lease.expires_at = None;
        }
        Ok(())
    }

    fn holder(&self) -> Result<Option<(String, Term)>, JournalError> {
        let state = self.lock()?;
        Ok(state.lease.live(state.now).then(|| (state.lease.holder.clone(), Term(state.lease.term))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::journal::lease::suite;

    #[test]
    fn the_memory_journal_passes_the_backend_suite() {
        super::super::suite::run(&MemoryJournal::default());
    }

    #[test]
    fn the_memory_lease_passes_the_lease_suite() {
        let journal = MemoryJournal::default();
        let ttl = Duration::from_millis(400);
        let a = MemoryLease::connect(&journal, "node-a:50051", ttl, Arc::default());
        let b = MemoryLease::connect(&journal, "node-b:50051", ttl, Arc::default());
        let expire = || journal.advance_clock(ttl + Duration::from_millis(1));
        suite::one_node_holds_the_lease_until_it_expires(&a, &b, &expire);
    }

    #[test]
    fn an_append_under_a_term_that_was_taken_over_is_refused_and_writes_nothing() {
        let a = MemoryJournal::default();
        let b = a.node();
        let ttl = Duration::from_millis(300);
        let a_lease = MemoryLease::connect(&a, "a:1", ttl, a.term());
        let b_lease = MemoryLease::connect(&b, "b:1", ttl, b.term());
        let expire = || a.advance_clock(ttl + Duration::from_millis(1));
        suite::an_append_under_a_term_that_was_taken_over_is_refused((&a, &a_lease), (&b, &b_lease), &expire);
    }

    #[test]
    fn a_lease_renewed_within_its_ttl_never_expires_and_time_stands_still_unless_moved() {
        let journal = MemoryJournal::default();
        let ttl = Duration::from_millis(100);
        let a = MemoryLease::connect(&journal, "a:1", ttl, journal.term());
        let term = a.acquire().unwrap().expect("free");
        assert_eq!(journal.term().load(Ordering::SeqCst), term.0, "acquiring sets the journal's term");
        for _ in 0..5 {
            journal.advance_clock(ttl / 2);
            assert!(a.renew(term).unwrap());
        }
        // Exactly the ttl since the last renewal still holds (PostgreSQL: `expires_at >= now()`).
        journal.advance_clock(ttl);
        assert_eq!(a.holder().unwrap(), Some(("a:1".to_owned(), term)));
        journal.advance_clock(Duration::from_millis(1));
        assert_eq!(a.holder().unwrap(), None);
    }

    #[test]
    fn a_node_waiting_for_news_wakes_at_the_append_and_signed_groups_are_read_back() {
        let key = Arc::new(crate::ledger::signing::Signer::ephemeral().unwrap());
        let journal = MemoryJournal::default().sign_groups_with(key.clone());
        let follower = journal.node();
        let entries = super::super::suite::chain(Head::default(), 3);
        let waiting = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            follower.wait_for_append(0, Duration::from_secs(30));
            (started.elapsed(), follower.group_signatures(1, 10).unwrap())
        });
        std::thread::sleep(Duration::from_millis(50));
        let head = journal.append(Head::default(), &entries).unwrap();
        let (waited, signatures) = waiting.join().unwrap();
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert_eq!(signatures.len(), 1);
        assert_eq!(signatures[0].sequence, head.sequence);
        signatures[0].verify(head, &key.public_key()).unwrap();
    }
}
