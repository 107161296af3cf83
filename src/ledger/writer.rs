//! The single writer: one thread owns every write. It takes whatever requests are queued (up to
//! `GROUP_MAX`), executes them one after another against one view, commits the group as one atomic
//! batch with one flush, and only then answers each caller with its own result.
//!
//! Because the writer is alone, a read-then-write never races: "one active pledge per right" holds
//! under any number of concurrent clients without optimistic transactions or retries.

use super::apply::{self, Command, Outcome};
use super::keys;
use super::tx::Tx;
use crate::domain::{LedgerError, Micros};
use crate::store::Store;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Requests taken into one group commit at most: bounds the batch's memory and the latency of the
/// first caller in the group.
pub const GROUP_MAX: usize = 4096;

pub type Reply = Result<(Outcome, bool), LedgerError>;

pub struct Job {
    pub command: Command,
    pub reply: oneshot::Sender<Reply>,
}

/// Strictly increasing microsecond timestamps, persisted so they keep increasing across restarts
/// even if the wall clock steps back.
struct Clock {
    last: Micros,
}

impl Clock {
    fn tick(&mut self) -> Micros {
        let wall = chrono::Utc::now().timestamp_micros();
        self.last = wall.max(self.last + 1);
        self.last
    }
}

pub fn spawn(
    store: Arc<dyn Store>,
    queue_max: usize,
) -> Result<(mpsc::Sender<Job>, std::thread::JoinHandle<()>), LedgerError> {
    let (sender, receiver) = mpsc::channel(queue_max);
    let last = Tx::new(store.as_ref()).get::<Micros>(keys::META_CLOCK)?.unwrap_or(0);
    let handle = std::thread::Builder::new()
        .name("ipledger-writer".to_owned())
        .spawn(move || run(store, receiver, Clock { last }))
        .map_err(|e| LedgerError::Unavailable(format!("cannot start the writer thread: {e}")))?;
    Ok((sender, handle))
}

fn run(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Job>, mut clock: Clock) {
    let mut jobs = Vec::with_capacity(GROUP_MAX);
    // Ends when every sender is gone and the queue is drained: shutdown flushes all it accepted.
    while let Some(first) = receiver.blocking_recv() {
        jobs.push(first);
        while jobs.len() < GROUP_MAX {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        commit_group(store.as_ref(), &mut jobs, &mut clock);
    }
    tracing::info!("writer stopped: queue closed and drained");
}

fn commit_group(store: &dyn Store, jobs: &mut Vec<Job>, clock: &mut Clock) {
    let started = Instant::now();
    let mut tx = Tx::new(store);
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs.drain(..) {
        let now = clock.tick();
        let result = apply::execute(&mut tx, &job.command, now);
        match &result {
            Ok(_) => tx.accept(),
            Err(_) => tx.reject(),
        }
        replies.push((job.reply, result));
    }
    tx.put(keys::META_CLOCK.to_vec(), &clock.last);
    tx.accept();
    let batch = tx.into_batch();
    let ops = batch.ops.len();
    match store.commit(batch) {
        Ok(()) => {
            tracing::debug!(
                requests = replies.len(),
                ops,
                elapsed_us = started.elapsed().as_micros() as u64,
                "group committed"
            );
            for (reply, result) in replies {
                // A caller that went away (deadline, cancel) still had its write committed; a retry
                // with the same request id will find it.
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, requests = replies.len(), "group commit failed; nothing of it is acknowledged");
            for (reply, _) in replies {
                let _ = reply.send(Err(LedgerError::Unavailable(format!("the write was not committed: {e}"))));
            }
        }
    }
}
