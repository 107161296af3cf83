//! The single writer: one thread owns every write. It takes whatever requests are queued (up to
//! `GROUP_MAX`), executes them one after another against one view, commits the group as one atomic
//! batch with one flush, and only then answers each caller with its own result.
//!
//! Because the writer is alone, a read-then-write never races: "one active pledge per right" holds
//! under any number of concurrent clients without optimistic transactions or retries.

use super::apply::{self, Command};
use super::events::Outcome;
use super::keys;
use super::principals::Principals;
use super::tx::Tx;
use crate::domain::principal::Principal;
use crate::domain::{LedgerError, Micros};
use crate::store::Store;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

/// Requests taken into one group commit at most: bounds the batch's memory and the latency of the
/// first caller in the group.
pub const GROUP_MAX: usize = 4096;

pub type Reply = Result<(Outcome, bool), LedgerError>;

/// Work for the writer: a write, or a task that must see the store with no write under way (the
/// journal verifier), run between two group commits.
pub enum Job {
    Write(Box<Write>),
    Exclusive(ExclusiveTask),
}

/// A task run on the writer thread with no write under way.
pub type ExclusiveTask = Box<dyn FnOnce(&dyn Store) + Send>;

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

/// The writer's side of a running ledger.
pub struct Spawned {
    pub sender: mpsc::Sender<Job>,
    pub handle: std::thread::JoinHandle<()>,
    /// The sequence of the last committed journal entry, updated after every commit.
    pub committed: watch::Receiver<u64>,
    /// Turns true when a commit failed and the writer refuses every write (fail-stop), so health
    /// can say NOT_SERVING and an orchestrator restarts the server.
    pub writes_stopped: watch::Receiver<bool>,
}

pub fn spawn(store: Arc<dyn Store>, principals: Arc<Principals>, queue_max: usize) -> Result<Spawned, LedgerError> {
    let (sender, receiver) = mpsc::channel(queue_max);
    let last = Tx::new(store.as_ref()).get::<Micros>(keys::META_CLOCK)?.unwrap_or(0);
    let head = super::journal::stored_head(store.as_ref())?.sequence;
    let (committed_tx, committed) = watch::channel(head);
    let (stopped_tx, writes_stopped) = watch::channel(false);
    let handle = std::thread::Builder::new()
        .name("ipledger-writer".to_owned())
        .spawn(move || run(store, principals, receiver, Clock { last }, committed_tx, stopped_tx))
        .map_err(|e| LedgerError::Unavailable(format!("cannot start the writer thread: {e}")))?;
    Ok(Spawned { sender, handle, committed, writes_stopped })
}

fn run(
    store: Arc<dyn Store>,
    principals: Arc<Principals>,
    mut receiver: mpsc::Receiver<Job>,
    mut clock: Clock,
    committed: watch::Sender<u64>,
    writes_stopped: watch::Sender<bool>,
) {
    let mut jobs = Vec::with_capacity(GROUP_MAX);
    let mut exclusive: Option<ExclusiveTask> = None;
    // Set when a commit failed: what the store holds is then unknown, so the writer stops writing
    // (fail-stop) and every later write is refused until an operator restarts the server.
    let mut failed: Option<String> = None;
    // Ends when every sender is gone and the queue is drained: shutdown flushes all it accepted.
    while let Some(first) = receiver.blocking_recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(write) => jobs.push(*write),
                // Commit what came before it, then run it alone.
                Job::Exclusive(task) => {
                    exclusive = Some(task);
                    break;
                }
            }
            if jobs.len() < GROUP_MAX {
                next = receiver.try_recv().ok();
            }
        }
        match &failed {
            Some(reason) => {
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(LedgerError::Unavailable(format!(
                        "writes are stopped after a storage failure ({reason}); restart the server"
                    ))));
                }
            }
            None if jobs.is_empty() => {}
            None => {
                failed = commit_group(store.as_ref(), &principals, &mut jobs, &mut clock).err();
                writes_stopped.send_replace(failed.is_some());
                if failed.is_none()
                    && let Ok(head) = super::journal::stored_head(store.as_ref())
                {
                    committed.send_replace(head.sequence);
                }
            }
        }
        if let Some(task) = exclusive.take() {
            task(store.as_ref());
        }
    }
    tracing::info!("writer stopped: queue closed and drained");
}

pub struct Write {
    pub actor: Principal,
    pub command: Command,
    pub reply: oneshot::Sender<Reply>,
    /// Held until the write is decided and committed: the caller's admission (the bytes it may
    /// have queued), given back only when the writer is done with the request.
    pub ticket: Ticket,
}

/// Whatever the caller's admission control needs held while a write is queued and decided.
pub type Ticket = Box<dyn std::any::Any + Send>;

/// Executes and commits one group; `Err` when the store failed to commit it.
fn commit_group(
    store: &dyn Store,
    principals: &Principals,
    jobs: &mut Vec<Write>,
    clock: &mut Clock,
) -> Result<(), String> {
    let started = Instant::now();
    let mut tx = Tx::new(store);
    let mut replies = Vec::with_capacity(jobs.len());
    let mut tickets = Vec::with_capacity(jobs.len());
    // Revocations decided in this group: a later request of the same principal is refused too.
    let mut revoked_here: Vec<crate::domain::principal::PrincipalName> = Vec::new();
    for job in jobs.drain(..) {
        let now = clock.tick();
        let name = &job.actor.name;
        let result = if principals.is_revoked(name) || revoked_here.contains(name) {
            // Queued before its principal was revoked: a revocation stops everything after it.
            Err(LedgerError::Unauthenticated(format!("{name} was revoked before its write was decided")))
        } else {
            apply::execute(&mut tx, &job.actor, &job.command, now)
        };
        match &result {
            Ok((Outcome::Principal(record), false)) if record.principal.revoke_time.is_some() => {
                revoked_here.push(record.principal.name.clone());
                tx.accept();
            }
            Ok(_) => tx.accept(),
            Err(_) => tx.reject(),
        }
        replies.push((job.reply, result));
        tickets.push(job.ticket);
    }
    if tx.is_empty() {
        // Only refusals and replays of already committed requests: nothing to make durable.
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        return Ok(());
    }
    tx.put(keys::META_CLOCK.to_vec(), &clock.last);
    tx.accept();
    let batch = tx.into_batch();
    let ops = batch.ops.len();
    if tracing::enabled!(tracing::Level::TRACE) {
        // Which key families a group writes, and how many bytes: where the store's time goes.
        let mut families = std::collections::BTreeMap::<u8, (usize, usize)>::new();
        for (key, value) in &batch.ops {
            let family = families.entry(key.first().copied().unwrap_or(b'?')).or_default();
            family.0 += 1;
            family.1 += key.len() + value.as_ref().map_or(0, Vec::len);
        }
        let families: Vec<String> =
            families.iter().map(|(f, (n, bytes))| format!("{}={n}/{bytes}B", *f as char)).collect();
        tracing::trace!(families = families.join(" "), "group keys");
    }
    let executed_us = started.elapsed().as_micros() as u64;
    match store.commit(batch) {
        Ok(()) => {
            crate::metrics::METRICS.group_requests.observe(replies.len() as f64);
            crate::metrics::METRICS.commit_seconds.observe(started.elapsed().as_secs_f64() - executed_us as f64 / 1e6);
            // Durable now: make principal changes effective before anyone hears of them.
            for (_, result) in &replies {
                if let Ok((Outcome::Principal(record), _)) = result
                    && let Err(e) = principals.apply_committed(store, record)
                {
                    tracing::error!(error = %e, "cannot read the certificate bindings just committed");
                }
            }
            tracing::debug!(
                requests = replies.len(),
                ops,
                executed_us,
                elapsed_us = started.elapsed().as_micros() as u64,
                "group committed"
            );
            for (reply, result) in replies {
                // A caller that went away (deadline, cancel) still had its write committed; a retry
                // with the same request id will find it.
                let _ = reply.send(result);
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, requests = replies.len(), "group commit failed; nothing of it is acknowledged");
            for (reply, _) in replies {
                let _ = reply.send(Err(LedgerError::Unavailable(format!("the write was not committed: {e}"))));
            }
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::credit_line::NewCreditLine;
    use crate::domain::ident::CreditCode;
    use crate::domain::money::Money;
    use crate::domain::pledge::Party;
    use crate::domain::principal::Role;
    use crate::domain::region::Region;
    use crate::domain::text::{Name, Note, parse_date};
    use crate::store::{Access, Guarded, MemoryStore, StoreError};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use uuid::Uuid;

    /// A disk whose commits can be made to fail, counting the commits it makes.
    #[derive(Default)]
    struct Disk {
        fail: AtomicBool,
        commits: AtomicUsize,
    }

    /// An in-memory store on `disk`.
    fn flaky(disk: Arc<Disk>) -> Arc<dyn Store> {
        Arc::new(Guarded::new(Arc::new(MemoryStore::default()), move |access| {
            if access == Access::Commit {
                if disk.fail.load(Ordering::SeqCst) {
                    return Err(StoreError("disk on fire".to_owned()));
                }
                disk.commits.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }))
    }

    fn create_line(request_id: Uuid) -> Command {
        let line = NewCreditLine::new(
            Party { name: Name::parse("Bank").unwrap(), credit_code: CreditCode::parse("91330100716105852F").unwrap() },
            Region::parse("330100").unwrap(),
            Note::parse("").unwrap(),
            Money::parse_positive("100").unwrap(),
            parse_date("2020-01-01").unwrap(),
            parse_date("2020-12-31").unwrap(),
        )
        .unwrap();
        Command::CreateCreditLine { request_id, line }
    }

    fn admin(name: &str) -> Principal {
        Principal {
            name: crate::domain::principal::PrincipalName::parse(name).unwrap(),
            role: crate::domain::principal::Role::Admin,
            create_time: 0,
            revoke_time: None,
        }
    }

    /// Queues `command` as `actor`; the answer arrives once its group is committed.
    fn send(sender: &mpsc::Sender<Job>, actor: Principal, command: Command) -> oneshot::Receiver<Reply> {
        let (reply, answer) = oneshot::channel();
        sender.blocking_send(Job::Write(Box::new(Write { actor, command, reply, ticket: Box::new(()) }))).unwrap();
        answer
    }

    fn submit(sender: &mpsc::Sender<Job>, command: Command) -> Reply {
        send(sender, admin("admin"), command).blocking_recv().unwrap()
    }

    #[test]
    fn writes_queued_before_their_principals_revocation_are_refused() {
        let principals = Arc::new(Principals::default());
        let Spawned { sender, handle, .. } = spawn(Arc::new(MemoryStore::default()), principals.clone(), 16).unwrap();
        let name = |n: &str| crate::domain::principal::PrincipalName::parse(n).unwrap();
        for n in ["a", "b"] {
            let command =
                Command::CreatePrincipal { name: name(n), role: Role::Admin, token_hash: [n.as_bytes()[0]; 32] };
            submit(&sender, command).unwrap();
        }
        // Hold the writer so that a's revocation and a's next write land in one group.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        sender.blocking_send(Job::Exclusive(Box::new(move |_| hold.recv().unwrap()))).unwrap();
        let revoke = send(&sender, admin("b"), Command::RevokePrincipal { name: name("a") });
        let after_in_group = send(&sender, admin("a"), create_line(Uuid::new_v4()));
        let unrelated = send(&sender, admin("b"), create_line(Uuid::new_v4()));
        release.send(()).unwrap();
        revoke.blocking_recv().unwrap().unwrap();
        assert!(matches!(after_in_group.blocking_recv().unwrap(), Err(LedgerError::Unauthenticated(_))));
        unrelated.blocking_recv().unwrap().unwrap();
        // And in a later group, from the committed revocation.
        assert!(principals.is_revoked(&name("a")));
        let later = send(&sender, admin("a"), create_line(Uuid::new_v4())).blocking_recv().unwrap();
        assert!(matches!(later, Err(LedgerError::Unauthenticated(_))), "{later:?}");
        drop(sender);
        handle.join().unwrap();
    }

    #[test]
    fn replays_need_no_commit_and_a_failed_commit_stops_all_writes() {
        let store = Arc::new(Disk::default());
        let Spawned { sender, handle, writes_stopped, .. } = spawn(flaky(store.clone()), Arc::default(), 16).unwrap();
        let id = Uuid::new_v4();
        let (_, replayed) = submit(&sender, create_line(id)).unwrap();
        assert!(!replayed);
        assert_eq!(store.commits.load(Ordering::SeqCst), 1);
        let (_, replayed) = submit(&sender, create_line(id)).unwrap();
        assert!(replayed);
        assert_eq!(store.commits.load(Ordering::SeqCst), 1, "a replay of a committed write writes nothing");

        store.fail.store(true, Ordering::SeqCst);
        assert!(!*writes_stopped.borrow());
        assert!(matches!(submit(&sender, create_line(Uuid::new_v4())), Err(LedgerError::Unavailable(_))));
        // Signalled right after the failed group's callers are answered.
        for _ in 0..1000 {
            if *writes_stopped.borrow() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(*writes_stopped.borrow(), "health learns that writes stopped");
        store.fail.store(false, Ordering::SeqCst);
        // The store may be in any state now: the writer refuses to build on it.
        assert!(matches!(submit(&sender, create_line(Uuid::new_v4())), Err(LedgerError::Unavailable(_))));
        assert_eq!(store.commits.load(Ordering::SeqCst), 1);
        drop(sender);
        handle.join().unwrap();
    }
}
