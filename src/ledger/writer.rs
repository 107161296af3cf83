//! The single writer: one thread owns every write. It takes whatever requests are queued (up to
//! `GROUP_MAX`), executes them one after another against one view of derived state, appends the
//! group's journal entries durably in one append, and only then applies the group's derived
//! records (in memory: readers see a group only once it is durable) and answers each caller.
//!
//! Because the writer is alone, a read-then-write never races: "one active pledge per right" holds
//! under any number of concurrent clients without optimistic transactions or retries.

use super::apply::{self, Command, Executed, Outcome};
use super::derived::Derived;
use super::journal::{Head, Journal, JournalError, Stored};
use super::principals::Principals;
use super::tx::Tx;
use crate::domain::principal::Principal;
use crate::domain::{LedgerError, Micros};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};

/// Requests taken into one group commit at most: bounds the batch's memory and the latency of the
/// first caller in the group.
pub const GROUP_MAX: usize = 4096;

/// A write's result: the outcome, whether it replays an earlier request, and the journal sequence
/// after which the caller reads its own write.
pub type Reply = Result<(Outcome, bool, u64), LedgerError>;

/// Work for the writer: a write, or a task run between two groups (tests hold the writer so).
pub enum Job {
    Write(Box<Write>),
    Exclusive(ExclusiveTask),
}

/// A task run on the writer thread with no write under way.
pub type ExclusiveTask = Box<dyn FnOnce() + Send>;

/// Strictly increasing microsecond timestamps: they keep increasing across restarts (the clock
/// starts after the journal's last entry) even if the wall clock steps back.
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
    /// Turns true when the writer refuses every write (fail-stop after a failure whose outcome it
    /// cannot establish), so health can say NOT_SERVING and an orchestrator restarts the server.
    pub writes_stopped: watch::Receiver<bool>,
}

/// What the writer writes to.
pub struct Targets {
    pub journal: Arc<dyn Journal>,
    pub derived: Arc<Derived>,
    pub principals: Arc<Principals>,
}

pub fn spawn(targets: Targets, queue_max: usize) -> Result<Spawned, LedgerError> {
    let (sender, receiver) = mpsc::channel(queue_max);
    let head = targets.journal.head()?;
    let last = match super::journal::read_one(targets.journal.as_ref(), head.sequence)? {
        Some(stored) => stored.decode()?.at,
        None => 0,
    };
    let (committed_tx, committed) = watch::channel(head.sequence);
    let (stopped_tx, writes_stopped) = watch::channel(false);
    let writer = Writer { targets, head, clock: Clock { last }, committed: committed_tx, writes_stopped: stopped_tx };
    let handle = std::thread::Builder::new()
        .name("ipledger-writer".to_owned())
        .spawn(move || writer.run(receiver))
        .map_err(|e| LedgerError::Unavailable(format!("cannot start the writer thread: {e}")))?;
    Ok(Spawned { sender, handle, committed, writes_stopped })
}

struct Writer {
    targets: Targets,
    /// The journal's head: the last entry appended and applied.
    head: Head,
    clock: Clock,
    committed: watch::Sender<u64>,
    writes_stopped: watch::Sender<bool>,
}

/// How a group ended.
enum GroupEnd {
    /// Durable and applied (or nothing to write).
    Committed,
    /// Nothing of it was written: the writer goes on with the next group.
    NotWritten,
    /// What the journal or derived state holds is unknown: the writer stops writing.
    Stop(String),
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(GROUP_MAX);
        let mut exclusive: Option<ExclusiveTask> = None;
        // Set when the writer cannot know what the stores hold: every later write is refused
        // until an operator restarts the server (fail-stop).
        let mut failed: Option<String> = None;
        // Ends when every sender is gone and the queue is drained: shutdown commits all it accepted.
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
                Some(reason) => refuse(&mut jobs, reason),
                None if jobs.is_empty() => {}
                None => {
                    if let GroupEnd::Stop(reason) = self.commit_group(&mut jobs) {
                        failed = Some(reason);
                        self.writes_stopped.send_replace(true);
                    }
                }
            }
            if let Some(task) = exclusive.take() {
                task();
            }
        }
        if failed.is_none()
            && let Err(e) = self.targets.derived.checkpoint_and_wait()
        {
            tracing::error!(error = %e, "the last checkpoint failed: the next start replays the journal after the previous one");
        }
        tracing::info!(head = self.head.sequence, "writer stopped: queue closed and drained");
    }

    /// Executes and commits one group.
    fn commit_group(&mut self, jobs: &mut Vec<Write>) -> GroupEnd {
        let started = Instant::now();
        let derived = self.targets.derived.clone();
        let mut tx = Tx::new(derived.as_ref());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut tickets = Vec::with_capacity(jobs.len());
        let mut appended: Vec<Stored> = Vec::new();
        let group_start = self.head;
        let mut head = self.head;
        // Revocations decided in this group: a later request of the same principal is refused too.
        let mut revoked_here: Vec<crate::domain::principal::PrincipalName> = Vec::new();
        for job in jobs.drain(..) {
            let now = self.clock.tick();
            let name = &job.actor.name;
            let result = if self.targets.principals.is_revoked(name) || revoked_here.contains(name) {
                // Queued before its principal was revoked: a revocation stops everything after it.
                Err(LedgerError::Unauthenticated(format!("{name} was revoked before its write was decided")))
            } else {
                apply::execute(&mut tx, &job.actor, &job.command, now, head)
            };
            let reply = match result {
                Ok(Executed::Appended { outcome, entry, stored }) => {
                    if let Outcome::Principal(record) = &outcome
                        && record.principal.revoke_time.is_some()
                    {
                        revoked_here.push(record.principal.name.clone());
                    }
                    tx.accept();
                    head = stored.head();
                    debug_assert_eq!(entry.sequence, head.sequence);
                    appended.push(stored);
                    Ok((outcome, false, head.sequence))
                }
                // A retry reads the state of this group: it is answered with the group.
                Ok(Executed::Replayed(outcome)) => {
                    tx.reject();
                    Ok((outcome, true, head.sequence))
                }
                Err(e) => {
                    tx.reject();
                    Err(e)
                }
            };
            replies.push((job.reply, reply));
            tickets.push(job.ticket);
        }
        let executed_us = started.elapsed().as_micros() as u64;
        if appended.is_empty() {
            // Only refusals and replays of committed requests: nothing to make durable.
            answer(replies);
            return GroupEnd::Committed;
        }
        let end = match self.append(group_start, &appended) {
            Ok(()) => self.apply(tx, head, &replies),
            Err(end) => end,
        };
        match &end {
            GroupEnd::Committed => {
                crate::metrics::METRICS.group_requests.observe(replies.len() as f64);
                crate::metrics::METRICS
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64() - executed_us as f64 / 1e6);
                tracing::debug!(
                    requests = replies.len(),
                    entries = appended.len(),
                    executed_us,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "group committed"
                );
                answer(replies);
            }
            GroupEnd::NotWritten | GroupEnd::Stop(_) => {
                for (reply, _) in replies {
                    let _ = reply.send(Err(LedgerError::Unavailable("the write was not committed".to_owned())));
                }
            }
        }
        drop(tickets);
        end
    }

    /// Appends the group durably; on a failure, learns from the journal's head what was written.
    fn append(&mut self, expected: Head, entries: &[Stored]) -> Result<(), GroupEnd> {
        let target = entries.last().map(Stored::head).unwrap_or(expected);
        let error = match self.targets.journal.append(expected, entries) {
            Ok(head) if head == target => return Ok(()),
            Ok(head) => JournalError::OutcomeUnknown(format!(
                "the append returned head {}, not {}",
                head.sequence, target.sequence
            )),
            Err(e) => e,
        };
        tracing::error!(error = %error, entries = entries.len(), "journal append failed");
        match error {
            JournalError::Unavailable(_) => Err(GroupEnd::NotWritten),
            JournalError::OutcomeUnknown(_) => match self.targets.journal.head() {
                Ok(head) if head == expected => Err(GroupEnd::NotWritten),
                // Everything is there: the group is committed after all.
                Ok(head) if head == target => Ok(()),
                Ok(head) => {
                    Err(GroupEnd::Stop(format!("the journal's head is {} after a failed append", head.sequence)))
                }
                Err(e) => Err(GroupEnd::Stop(format!("the journal's head is unknown after a failed append: {e}"))),
            },
            JournalError::HeadMoved { .. } | JournalError::Corrupt(_) => Err(GroupEnd::Stop(error.to_string())),
        }
    }

    /// Makes a durable group visible: derived records, the live principals, the committed head.
    fn apply(&mut self, tx: Tx<'_>, head: Head, replies: &[(oneshot::Sender<Reply>, Reply)]) -> GroupEnd {
        let derived = &self.targets.derived;
        if let Err(e) = derived.apply(tx.into_batch(), head) {
            return GroupEnd::Stop(format!("derived state cannot take a committed group: {e}"));
        }
        self.head = head;
        // Durable now: make principal changes effective before anyone hears of them.
        for (_, result) in replies {
            if let Ok((Outcome::Principal(record), false, _)) = result
                && let Err(e) = self.targets.principals.apply_committed(derived.as_ref(), record)
            {
                tracing::error!(error = %e, "cannot read the certificate bindings just committed");
            }
        }
        self.committed.send_replace(head.sequence);
        if derived.checkpoint_due()
            && let Err(e) = derived.checkpoint()
        {
            return GroupEnd::Stop(e.to_string());
        }
        GroupEnd::Committed
    }
}

fn answer(replies: Vec<(oneshot::Sender<Reply>, Reply)>) {
    for (reply, result) in replies {
        // A caller that went away (deadline, cancel) still had its write committed; a retry with
        // the same request id will find it.
        let _ = reply.send(result);
    }
}

fn refuse(jobs: &mut Vec<Write>, reason: &str) {
    for job in jobs.drain(..) {
        let _ = job.reply.send(Err(LedgerError::Unavailable(format!(
            "writes are stopped after a storage failure ({reason}); restart the server"
        ))));
    }
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
    use crate::ledger::journal::MemoryJournal;
    use crate::store::{MemoryStore, Store};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use uuid::Uuid;

    /// How the next append of a `Flaky` journal fails.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fault {
        None,
        /// Refused before anything was written.
        Unavailable,
        /// Lost on the way: nothing written, outcome unknown to the writer.
        LostBeforeWrite,
        /// Written, then the acknowledgement was lost.
        LostAfterWrite,
        /// Another writer appended first.
        Fenced,
    }

    /// A journal whose appends fail as told, counting the appends that wrote.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryJournal,
        fault: Mutex<Option<Fault>>,
        appends: AtomicUsize,
    }

    impl Flaky {
        fn fail_next(&self, fault: Fault) {
            *self.fault.lock().unwrap() = Some(fault);
        }
    }

    impl Journal for Flaky {
        fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
            let fault = self.fault.lock().unwrap().take().unwrap_or(Fault::None);
            let unknown = || JournalError::OutcomeUnknown("connection reset".to_owned());
            match fault {
                Fault::None => {}
                Fault::Unavailable => return Err(JournalError::Unavailable("disk on fire".to_owned())),
                Fault::LostBeforeWrite => return Err(unknown()),
                Fault::LostAfterWrite => {
                    self.inner.append(expected, entries)?;
                    self.appends.fetch_add(1, Ordering::SeqCst);
                    return Err(unknown());
                }
                Fault::Fenced => {
                    return Err(JournalError::HeadMoved { expected: expected.sequence, found: expected.sequence + 1 });
                }
            }
            let head = self.inner.append(expected, entries)?;
            self.appends.fetch_add(1, Ordering::SeqCst);
            Ok(head)
        }

        fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
            self.inner.read(from, limit)
        }

        fn head(&self) -> Result<Head, JournalError> {
            self.inner.head()
        }

        fn size_on_disk(&self) -> Result<u64, JournalError> {
            Ok(0)
        }
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

    fn start(journal: Arc<dyn Journal>) -> (Spawned, Arc<Derived>) {
        let derived = Derived::new(Arc::new(MemoryStore::default()), 1 << 20).unwrap();
        let targets = Targets { journal, derived: derived.clone(), principals: Arc::default() };
        (spawn(targets, 16).unwrap(), derived)
    }

    #[test]
    fn writes_queued_before_their_principals_revocation_are_refused() {
        let derived = Derived::new(Arc::new(MemoryStore::default()), 1 << 20).unwrap();
        let principals = Arc::new(Principals::default());
        let targets = Targets { journal: Arc::new(MemoryJournal::default()), derived, principals: principals.clone() };
        let Spawned { sender, handle, .. } = spawn(targets, 16).unwrap();
        let name = |n: &str| crate::domain::principal::PrincipalName::parse(n).unwrap();
        for n in ["a", "b"] {
            let command =
                Command::CreatePrincipal { name: name(n), role: Role::Admin, token_hash: [n.as_bytes()[0]; 32] };
            submit(&sender, command).unwrap();
        }
        // Hold the writer so that a's revocation and a's next write land in one group.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        sender.blocking_send(Job::Exclusive(Box::new(move || hold.recv().unwrap()))).unwrap();
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

    /// The credit lines derived state shows.
    fn lines(derived: &Derived) -> usize {
        derived.scan(crate::ledger::keys::CREDIT_LINES, None, 100).unwrap().len()
    }

    #[test]
    fn a_failed_append_leaves_nothing_visible_and_the_writer_resumes_when_the_head_shows_what_was_written() {
        let journal = Arc::new(Flaky::default());
        let (Spawned { sender, handle, writes_stopped, committed }, derived) = start(journal.clone());
        let id = Uuid::new_v4();
        let (_, replayed, sequence) = submit(&sender, create_line(id)).unwrap();
        assert_eq!((replayed, sequence, *committed.borrow()), (false, 1, 1));
        let (_, replayed, _) = submit(&sender, create_line(id)).unwrap();
        assert!(replayed);
        assert_eq!(journal.appends.load(Ordering::SeqCst), 1, "a replay of a committed write writes nothing");

        // Refused, or lost before it was written: the caller is told it failed, nothing of it is
        // visible, and the next write goes through without a restart.
        for fault in [Fault::Unavailable, Fault::LostBeforeWrite] {
            journal.fail_next(fault);
            let (shown, head) = (lines(&derived), *committed.borrow());
            let id = Uuid::new_v4();
            assert!(matches!(submit(&sender, create_line(id)), Err(LedgerError::Unavailable(_))), "{fault:?}");
            assert_eq!(lines(&derived), shown, "{fault:?}: nothing of a failed group is visible");
            assert_eq!(*committed.borrow(), head);
            let (_, replayed, sequence) = submit(&sender, create_line(id)).unwrap();
            assert!(!replayed, "{fault:?}: the retry is a new write, not a replay of a failure");
            assert_eq!(sequence, journal.head().unwrap().sequence);
        }
        assert!(!*writes_stopped.borrow());
        // Written, acknowledgement lost: the head shows it, so it is committed after all.
        journal.fail_next(Fault::LostAfterWrite);
        let (_, replayed, sequence) = submit(&sender, create_line(Uuid::new_v4())).unwrap();
        assert!(!replayed);
        assert_eq!((sequence, lines(&derived)), (4, 4));
        // Another writer appended: this one is stale and stops writing.
        journal.fail_next(Fault::Fenced);
        assert!(matches!(submit(&sender, create_line(Uuid::new_v4())), Err(LedgerError::Unavailable(_))));
        for _ in 0..1000 {
            if *writes_stopped.borrow() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(*writes_stopped.borrow(), "health learns that writes stopped");
        assert!(matches!(submit(&sender, create_line(Uuid::new_v4())), Err(LedgerError::Unavailable(_))));
        assert_eq!(journal.head().unwrap().sequence, 4);
        drop(sender);
        handle.join().unwrap();
    }
}
