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
use crate::store::Store;
use principals::Principals;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

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
        let principals = Arc::new(Principals::load(store.as_ref())?);
        let writer::Spawned { sender, handle, committed, writes_stopped } =
            writer::spawn(store.clone(), principals.clone(), queue_max)?;
        let ledger = Ledger { store, principals, committed, writes_stopped, writer: sender, queue_max };
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
        let (reply, answer) = oneshot::channel();
        self.writer
            .try_send(writer::Job::Write(Box::new(writer::Write { actor: actor.clone(), command, reply })))
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
    ) -> Result<oneshot::Receiver<writer::Reply>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(writer::Job::Write(Box::new(writer::Write { actor: actor.clone(), command, reply })))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger is shutting down".to_owned()))?;
        Ok(answer)
    }

    /// Runs a read on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, LedgerError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| LedgerError::Internal(format!("read task failed: {e}")))?
    }
}

pub use writer::Reply;
