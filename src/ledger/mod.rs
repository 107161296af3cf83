//! The ledger: the one write path (a single writer committing groups of requests) and the read
//! path (point reads, index scans and exposure rows), over any `Store`.

pub mod apply;
mod codec;
pub mod events;
pub mod journal;
pub mod keys;
pub mod principals;
pub mod query;
pub mod tokens;
mod tx;
mod writer;

pub use apply::Command;
pub use events::Outcome;
pub use writer::GROUP_MAX;

use crate::domain::LedgerError;
use crate::domain::principal::Principal;
use crate::store::{Access, Store, StoreError};
use principals::Principals;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The layout of the derived records this build writes (keys, values). 2: request ids keyed by
/// principal, banks' names in their own family, facts indexed by pledgee, certificate bindings.
/// Derived records of another layout would be misread (a retry of an old request id would not be
/// found, and be applied twice), so such a store is rebuilt from its journal when it is opened.
pub const DERIVED_LAYOUT: u32 = 2;

/// Marks a new store with this build's layout; rebuilds the derived records of a store written by
/// a build with another layout from its journal first.
fn check_layout(store: &dyn Store) -> Result<(), LedgerError> {
    let key = keys::META_DERIVED_LAYOUT;
    let found: Option<u32> = tx::Tx::new(store).get(key)?;
    let sequence = journal::stored_head(store)?.sequence;
    match found {
        Some(DERIVED_LAYOUT) => Ok(()),
        None if sequence == 0 => {
            let batch = crate::store::Batch { ops: vec![(key.to_vec(), Some(codec::encode(&DERIVED_LAYOUT)))] };
            store.commit(batch).map_err(|e| LedgerError::Unavailable(e.to_string()))
        }
        found => {
            // Derived records of another layout would be misread: rebuild them from the journal,
            // the ground truth, then mark the layout (an interrupted rebuild starts over).
            let from = found.map_or_else(|| "1 (unversioned)".to_owned(), |v| v.to_string());
            tracing::warn!(
                from,
                to = DERIVED_LAYOUT,
                "derived records of another layout: rebuilding them from the journal"
            );
            let entries = journal::rebuild_derived(store)?;
            let batch = crate::store::Batch { ops: vec![(key.to_vec(), Some(codec::encode(&DERIVED_LAYOUT)))] };
            store.commit(batch).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
            tracing::warn!(entries, "derived records rebuilt from the journal");
            Ok(())
        }
    }
}

/// When the call a read serves must be answered by, and the timeout that set it.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

tokio::task_local! {
    static DEADLINE: Deadline;
}

/// Runs `body` (a call's handler) so that every `Ledger::read` it starts stops once `timeout` has
/// passed since now.
pub async fn with_deadline<T>(timeout: Duration, body: impl std::future::Future<Output = T>) -> T {
    DEADLINE.scope(Deadline { at: Instant::now() + timeout, timeout }, body).await
}

/// A store that refuses every access after `at`, and every commit (only the writer commits, on the
/// real store): how a read learns that nobody waits for it.
fn deadlined(store: Arc<dyn Store>, at: Instant) -> crate::store::Guarded<impl Fn(Access) -> Result<(), StoreError>> {
    crate::store::Guarded::new(store, move |access| match access {
        Access::Commit => Err(StoreError("a read may not commit".to_owned())),
        Access::Get | Access::Scan if Instant::now() >= at => Err(StoreError("the read's deadline passed".to_owned())),
        Access::Get | Access::Scan => Ok(()),
    })
}

/// Handle shared by the request handlers. Writes go to the writer thread; reads run on the
/// blocking pool, never on the async workers.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    principals: Arc<Principals>,
    committed: tokio::sync::watch::Receiver<u64>,
    writes_stopped: tokio::sync::watch::Receiver<bool>,
    writer: mpsc::Sender<writer::Job>,
    queue_max: usize,
    reads_in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("queue_max", &self.queue_max).finish_non_exhaustive()
    }
}

/// Owns the writer thread; `shutdown` waits until everything accepted is committed.
#[derive(Debug)]
pub struct WriterGuard {
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl WriterGuard {
    /// Call after every `Ledger` clone is dropped: the writer drains its queue, commits, and stops.
    pub fn join(&self) {
        let handle = self.handle.lock().map(|mut h| h.take()).unwrap_or(None);
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }
}

impl Ledger {
    pub fn start(store: Arc<dyn Store>, queue_max: usize) -> Result<(Ledger, WriterGuard), LedgerError> {
        check_layout(store.as_ref())?;
        let principals = Arc::new(Principals::load(store.as_ref())?);
        let writer::Spawned { sender, handle, committed, writes_stopped } =
            writer::spawn(store.clone(), principals.clone(), queue_max)?;
        let ledger = Ledger {
            store,
            principals,
            committed,
            writes_stopped,
            writer: sender,
            queue_max,
            reads_in_flight: Arc::default(),
        };
        Ok((ledger, WriterGuard { handle: Mutex::new(Some(handle)) }))
    }

    /// Follows the sequence of the last committed journal entry.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Turns true when the writer stopped accepting writes after a storage failure (fail-stop).
    pub fn writes_stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.writes_stopped.clone()
    }

    /// Runs `f` on the writer thread between two group commits: it sees the store with no write
    /// under way (and writes wait until it returns).
    pub async fn exclusive<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, LedgerError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task = Box::new(move |store: &dyn Store| {
            let _ = reply.send(f(store));
        });
        self.writer
            .send(writer::Job::Exclusive(task))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger is shutting down".to_owned()))?;
        answer.await.map_err(|_| LedgerError::Unavailable("the writer stopped".to_owned()))?
    }

    /// Writes waiting for the writer now.
    pub fn queue_depth(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
    }

    /// The live principals, for authentication.
    pub fn principals(&self) -> &Principals {
        &self.principals
    }

    /// Submits a write; fails at once with `Overloaded` when the queue is full, so a caller never
    /// waits unboundedly. Returns the outcome and whether it replays an earlier request.
    pub async fn write(&self, actor: &Principal, command: Command) -> Result<(Outcome, bool), LedgerError> {
        self.write_with(actor, command, Box::new(())).await
    }

    /// `write`, with a ticket the writer holds until the write is decided and committed.
    pub async fn write_with(
        &self,
        actor: &Principal,
        command: Command,
        ticket: writer::Ticket,
    ) -> Result<(Outcome, bool), LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .try_send(writer::Job::Write(Box::new(writer::Write { actor: actor.clone(), command, reply, ticket })))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => LedgerError::Overloaded(self.queue_max),
                mpsc::error::TrySendError::Closed(_) => {
                    LedgerError::Unavailable("the ledger is shutting down".to_owned())
                }
            })?;
        answer.await.map_err(|_| LedgerError::Unavailable("the writer stopped".to_owned()))?
    }

    /// Queues a write, waiting for room in the queue (streams apply back-pressure this way), and
    /// returns a future of its result so a stream can keep many writes in flight.
    pub async fn enqueue(
        &self,
        actor: &Principal,
        command: Command,
        ticket: writer::Ticket,
    ) -> Result<oneshot::Receiver<writer::Reply>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(writer::Job::Write(Box::new(writer::Write { actor: actor.clone(), command, reply, ticket })))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger is shutting down".to_owned()))?;
        Ok(answer)
    }

    /// Runs a read on the blocking pool. Under `with_deadline`, the read stops at its first store
    /// access after the deadline: a caller that gave up leaves no work behind.
    pub async fn read<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, LedgerError> + Send + 'static,
    {
        let deadline = DEADLINE.try_with(|d| *d).ok();
        let store = self.store.clone();
        let reads = self.reads_in_flight.clone();
        reads.fetch_add(1, Ordering::Relaxed);
        let read = tokio::task::spawn_blocking(move || {
            let result = match deadline {
                None => f(store.as_ref()),
                Some(deadline) => {
                    let result = f(&deadlined(store, deadline.at));
                    match result {
                        Err(_) if Instant::now() >= deadline.at => {
                            Err(LedgerError::DeadlineExceeded(deadline.timeout.as_millis() as u64))
                        }
                        other => other,
                    }
                }
            };
            reads.fetch_sub(1, Ordering::Relaxed);
            result
        });
        read.await.map_err(|e| LedgerError::Internal(format!("read task failed: {e}")))?
    }

    /// Reads running on the blocking pool now (including ones whose caller has gone).
    pub fn reads_in_flight(&self) -> usize {
        self.reads_in_flight.load(Ordering::Relaxed)
    }
}

pub use writer::{Reply, Ticket};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_store_of_another_derived_layout_is_rebuilt_from_its_journal_and_a_new_one_marked() {
        use crate::domain::principal::{PrincipalName, Role};
        let store = Arc::new(MemoryStore::default());
        let layout = |store: &MemoryStore| tx::Tx::new(store).get::<u32>(keys::META_DERIVED_LAYOUT).unwrap();
        let (ledger, writer) = Ledger::start(store.clone(), 16).unwrap();
        assert_eq!(layout(&store), Some(DERIVED_LAYOUT), "a new store is marked");
        let name = PrincipalName::parse("bank-a").unwrap();
        let system = Principal {
            name: PrincipalName::parse("system").unwrap(),
            role: Role::Admin,
            create_time: 0,
            revoke_time: None,
        };
        let command = Command::CreatePrincipal { name: name.clone(), role: Role::Admin, token_hash: [7; 32] };
        ledger.write(&system, command).await.unwrap();
        drop(ledger);
        writer.join();
        // As a build before layouts were versioned left it: no mark, a derived record of its own
        // layout, and one of this layout missing.
        let ops = vec![
            (keys::META_DERIVED_LAYOUT.to_vec(), None),
            (keys::principal(&name), None),
            (b"Qold-layout".to_vec(), Some(vec![1])),
        ];
        store.commit(crate::store::Batch { ops }).unwrap();
        assert!(journal::verify(store.as_ref()).unwrap().divergence.is_some());

        let (ledger, writer) = Ledger::start(store.clone(), 16).unwrap();
        assert_eq!(layout(&store), Some(DERIVED_LAYOUT));
        assert!(ledger.principals().by_name(&name).is_some(), "the principal record is back");
        assert_eq!(store.get(b"Qold-layout").unwrap(), None);
        drop(ledger);
        writer.join();
        let report = journal::verify(store.as_ref()).unwrap();
        assert!(report.divergence.is_none(), "{:?}", report.divergence);
    }

    #[tokio::test]
    async fn a_read_stops_at_its_callers_deadline() {
        let (ledger, writer) = Ledger::start(Arc::new(MemoryStore::default()), 16).unwrap();
        let accesses = Arc::new(AtomicUsize::new(0));
        let counted = accesses.clone();
        // A read that would go on for a minute, one store access every millisecond.
        let read = ledger.read(move |store| {
            for _ in 0..60_000 {
                store.get(b"Mclock").map_err(|e| LedgerError::Unavailable(e.to_string()))?;
                counted.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(())
        });
        let started = Instant::now();
        let result = with_deadline(Duration::from_millis(50), read).await;
        assert!(matches!(result, Err(LedgerError::DeadlineExceeded(50))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Nothing keeps running for a caller that is gone.
        let after = accesses.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(accesses.load(Ordering::Relaxed), after);
        assert_eq!(ledger.reads_in_flight(), 0);
        drop(ledger);
        writer.join();
    }
}
