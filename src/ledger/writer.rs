//! The single writer: one thread owns every write. It takes whatever requests are queued (up to
//! `GROUP_MAX`), executes them one after another against one view of derived state, appends the
//! group's journal entries durably in one append, and only then applies the group's derived
//! records (in memory: readers see a group only once it is durable) and answers each caller.
//!
//! Because the writer is alone, a read-then-write never races: "one active pledge per right" holds
//! under any number of concurrent clients without optimistic transactions or retries.

use super::command::{Command, Executed, Outcome};
use super::decider;
use super::derived::Derived;
use super::journal::lease::WriterLease;
use super::journal::{Head, Journal, JournalError, Stored, merkle};
use super::principals::Principals;
use super::role::{self, NodeRole};
use super::tx::Tx;
use crate::domain::principal::Principal;
use crate::domain::{LedgerError, Micros};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Requests taken into one group commit at most: bounds the batch's memory and the latency of the
/// first caller in the group.
pub const GROUP_MAX: usize = 4096;
const _: () = assert!(GROUP_MAX <= super::journal::SIGNED_RUN_MAX, "a group is one signed run");

/// A write's result: the outcome, whether it replays an earlier request, and the journal sequence
/// after which the caller reads its own write.
pub type Reply = Result<(Outcome, bool, u64), LedgerError>;

/// Work for the writer: a write, a task run between two groups (tests hold the writer so), or a
/// wake-up after the node's role changed.
pub enum Job {
    Write(Box<Write>),
    Exclusive(ExclusiveTask),
    Wake,
}

/// A task run on the writer thread with no write under way.
pub type ExclusiveTask = Box<dyn FnOnce() + Send>;

/// Journal entries a follower applies in one derived-state batch at most.
const FOLLOW_CHUNK: usize = 1024;

/// How long a follower waits for news of an append before it reads the journal anyway.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// How long a failing follower or takeover waits before it tries again; in a cluster no longer
/// than a quarter of the lease (the lease thread's period), so that a short lease (tests, the
/// simulation) is not outlasted by one pause.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// How many leases a follower may go without reaching the journal's head before its health says
/// NOT_SERVING: three leases is longer than a writer's failover (about one and a half leases), so
/// a failover alone never takes the followers out of service, yet reads are never served stale
/// for long without a load balancer hearing of it.
const STALE_LEASES: u32 = 3;

/// Why a follower (or a new writer catching up) could not apply the journal.
#[derive(Debug)]
enum FollowError {
    /// The journal could not be read, or derived state not written: tried again.
    Unavailable(LedgerError),
    /// The journal holds an entry this node refuses: one that does not decode, does not follow
    /// the chain, or that the rules refuse as its principal at its time (a row inserted into the
    /// table with a database credential). Nothing of it is applied, and the node stops following.
    Refused(LedgerError),
}

impl std::fmt::Display for FollowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowError::Unavailable(e) => write!(f, "{e}"),
            FollowError::Refused(e) => write!(f, "a journal entry is refused: {e}"),
        }
    }
}

impl From<JournalError> for FollowError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Corrupt(_) => FollowError::Refused(e.into()),
            other => FollowError::Unavailable(other.into()),
        }
    }
}

impl From<LedgerError> for FollowError {
    /// A store that failed is tried again; any other failure is the entry's.
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Unavailable(_) => FollowError::Unavailable(e),
            other => FollowError::Refused(other),
        }
    }
}

/// Strictly increasing microsecond timestamps: they keep increasing across restarts (the clock
/// starts after the journal's last entry) even if the wall clock steps back.
struct Clock {
    last: Micros,
    wall: super::WallClock,
}

impl Clock {
    fn tick(&mut self) -> Micros {
        let wall = (self.wall)();
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
    /// Turns true when the writer refuses every write (fail-stop after a failure whose outcome
    /// it cannot establish, or a journal entry it refused to apply): health says NOT_SERVING and
    /// an orchestrator restarts the server.
    pub writes_stopped: watch::Receiver<bool>,
    /// True while this node, a follower, has not reached the journal's head for longer than
    /// `stale_max`: health says NOT_SERVING (its reads would be stale) until it catches up.
    pub behind: watch::Receiver<bool>,
    /// Whether this node writes or follows.
    pub role: watch::Receiver<NodeRole>,
}

/// What the writer writes to.
pub struct Targets {
    pub journal: Arc<dyn Journal>,
    pub derived: Arc<Derived>,
    pub principals: Arc<Principals>,
    /// The cluster's public key, on a node that shares its journal: what follows must be signed
    /// by it (`replay::read_signed`).
    pub cluster_key: Option<super::signing::PublicKey>,
}

/// Starts the writer thread on derived state caught up with the journal. With `lease`, the node
/// writes only while it holds the lease and follows the journal otherwise; without, it always
/// writes (the embedded journal).
pub fn spawn(
    targets: Targets,
    queue_max: usize,
    wall_clock: super::WallClock,
    lease: Option<Arc<dyn WriterLease>>,
) -> Result<Spawned, LedgerError> {
    let (sender, receiver) = mpsc::channel(queue_max);
    // Where derived state is: in a cluster, the journal may already be further.
    let head = targets.derived.through().map_err(|e| LedgerError::Unavailable(e.to_string()))?;
    let last = match super::journal::read_one(targets.journal.as_ref(), head.sequence)? {
        Some(stored) => stored.decode()?.at,
        None => 0,
    };
    let (committed_tx, committed) = watch::channel(head.sequence);
    let (stopped_tx, writes_stopped) = watch::channel(false);
    let (behind_tx, behind) = watch::channel(false);
    let (role_tx, role) = match &lease {
        None => watch::channel(NodeRole::Writer { term: 0 }),
        Some(_) => watch::channel(NodeRole::Follower { writer: None }),
    };
    let retry_pause = lease.as_ref().map_or(RETRY_PAUSE, |lease| RETRY_PAUSE.min(lease.ttl() / 4));
    let (settle_max, stale_max, role_tx, controller) = match lease {
        None => (Duration::ZERO, Duration::MAX, Some(role_tx), None),
        Some(lease) => {
            let (requests_tx, requests) = std::sync::mpsc::channel();
            let queue = sender.downgrade();
            let wake = move || {
                if let Some(sender) = queue.upgrade() {
                    let _ = sender.try_send(Job::Wake);
                }
            };
            // Long enough for PostgreSQL to fail over (Patroni's election) and answer again.
            let settle_max = lease.ttl() * 12;
            let stale_max = lease.ttl() * STALE_LEASES;
            std::thread::Builder::new()
                .name("ipledger-lease".to_owned())
                .spawn(move || role::run_lease(lease, role_tx, requests, wake))
                .map_err(|e| LedgerError::Unavailable(format!("cannot start the lease thread: {e}")))?;
            (settle_max, stale_max, None, Some(requests_tx))
        }
    };
    let writer = Writer {
        targets,
        head,
        clock: Clock { last, wall: wall_clock },
        committed: committed_tx,
        writes_stopped: stopped_tx,
        behind: behind_tx,
        role: role.clone(),
        _role: role_tx,
        controller,
        leading: None,
        settle_max,
        stale_max,
        retry_pause,
        followed_at: Instant::now(),
        day_checked: None,
    };
    let handle = std::thread::Builder::new()
        .name("ipledger-writer".to_owned())
        .spawn(move || writer.run(receiver))
        .map_err(|e| LedgerError::Unavailable(format!("cannot start the writer thread: {e}")))?;
    Ok(Spawned { sender, handle, committed, writes_stopped, behind, role })
}

struct Writer {
    targets: Targets,
    /// The journal's head as derived state reflects it: the last entry appended or followed, and
    /// applied.
    head: Head,
    clock: Clock,
    committed: watch::Sender<u64>,
    writes_stopped: watch::Sender<bool>,
    /// `Spawned::behind`.
    behind: watch::Sender<bool>,
    role: watch::Receiver<NodeRole>,
    /// The role's sender when nobody else sets it (the embedded journal: always the writer).
    _role: Option<watch::Sender<NodeRole>>,
    /// The lease thread, in a cluster.
    controller: Option<std::sync::mpsc::Sender<role::Request>>,
    /// The term this writer caught up for and appends under.
    leading: Option<i64>,
    /// How long an append of unknown outcome is retried against the journal before the callers
    /// are told the outcome is unknown.
    settle_max: Duration,
    /// `RETRY_PAUSE`, within a quarter of the lease.
    retry_pause: Duration,
    /// How long a follower may go without reaching the journal's head before health says
    /// NOT_SERVING (`STALE_LEASES`).
    stale_max: Duration,
    /// When this node last reached the journal's head as a follower (or last wrote).
    followed_at: Instant,
    /// The business day (China time) whose alerts due by the passing of days this writer last
    /// examined (`open_day`): examined once a day.
    day_checked: Option<chrono::NaiveDate>,
}

/// How a group ended.
enum GroupEnd {
    /// Durable and applied (or nothing to write).
    Committed,
    /// Nothing of it was written: each caller gets this error, and the writer goes on.
    NotWritten(LedgerError),
    /// This node must not write now (fenced, or the outcome is unknown): each caller gets this
    /// error and, in a cluster, the node gives up its lease and follows the journal.
    StepDown(LedgerError),
    /// Derived state or the journal is in a state the writer cannot go on from: it stops writing.
    /// Each caller gets the error, or its result when the group was committed before (`None`).
    Stop(String, Option<LedgerError>),
}

/// What the writer loop does next.
#[derive(PartialEq)]
enum Turn {
    Continue,
    /// The queue is closed and drained: shut down.
    Closed,
}

fn not_committed() -> LedgerError {
    LedgerError::Unavailable("the write was not committed".to_owned())
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(GROUP_MAX);
        // Set when the writer cannot know what the stores hold: every later write is refused
        // until an operator restarts the server (fail-stop).
        let mut failed: Option<String> = None;
        loop {
            let role = self.role.borrow().clone();
            let turn = match role {
                NodeRole::Writer { term } => self.write_turn(term, &mut receiver, &mut jobs, &mut failed),
                NodeRole::Follower { writer } => self.follow_turn(writer, &mut receiver, &mut failed),
            };
            if turn == Turn::Closed {
                break;
            }
        }
        if let Some(controller) = &self.controller {
            let _ = controller.send(role::Request::Stop);
        }
        if failed.is_none()
            && let Err(e) = self.targets.derived.checkpoint_and_wait()
        {
            tracing::error!(error = %e, "the last checkpoint failed: the next start replays the journal after the previous one");
        }
        tracing::info!(head = self.head.sequence, "writer stopped: queue closed and drained");
    }

    /// One group as the writer (catching up first when the term is new to it). Ends when every
    /// sender is gone and the queue is drained: shutdown commits all it accepted.
    fn write_turn(
        &mut self,
        term: i64,
        receiver: &mut mpsc::Receiver<Job>,
        jobs: &mut Vec<Write>,
        failed: &mut Option<String>,
    ) -> Turn {
        if self.leading != Some(term) && failed.is_none() {
            match self.take_over() {
                Ok(()) => {}
                Err(FollowError::Refused(e)) => {
                    self.fail_stop(failed, format!("the journal holds an entry this node refuses: {e}"));
                    return Turn::Continue;
                }
                Err(FollowError::Unavailable(e)) => {
                    tracing::warn!(error = %e, term, "cannot catch up with the journal before writing; trying again");
                    std::thread::sleep(self.retry_pause);
                    return Turn::Continue;
                }
            }
            self.leading = Some(term);
            if term > 0 {
                tracing::warn!(term, head = self.head.sequence, "this node writes");
            }
        }
        let Some(first) = receiver.blocking_recv() else { return Turn::Closed };
        let mut exclusive: Option<ExclusiveTask> = None;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(write) => jobs.push(*write),
                // Commit what came before it, then run it alone.
                Job::Exclusive(task) => {
                    exclusive = Some(task);
                    break;
                }
                Job::Wake => {}
            }
            if jobs.len() < GROUP_MAX {
                next = receiver.try_recv().ok();
            }
        }
        let still = *self.role.borrow() == NodeRole::Writer { term };
        match &failed {
            Some(reason) => refuse(jobs, reason),
            None if jobs.is_empty() => {}
            // The lease was lost while these waited: another node decides them.
            None if !still => refuse_not_writer(jobs, None),
            None => match self.commit_group(jobs) {
                GroupEnd::Stop(reason, _) => self.fail_stop(failed, reason),
                GroupEnd::StepDown(answer) => match &self.controller {
                    Some(controller) => {
                        self.leading = None;
                        let _ = controller.send(role::Request::StepDown);
                    }
                    // Nobody else can write the embedded journal: stop.
                    None => {
                        *failed = Some(answer.to_string());
                        self.writes_stopped.send_replace(true);
                    }
                },
                GroupEnd::Committed | GroupEnd::NotWritten(_) => {}
            },
        }
        if let Some(task) = exclusive.take() {
            task();
        }
        Turn::Continue
    }

    /// Stops writing and following for good (until a restart): health says NOT_SERVING, and in a
    /// cluster the lease is released and no longer competed for, so that another node writes.
    fn fail_stop(&mut self, failed: &mut Option<String>, reason: String) {
        tracing::error!(reason = %reason, "this node stops writing and following; restart it once the cause is fixed");
        *failed = Some(reason);
        self.writes_stopped.send_replace(true);
        if let Some(controller) = &self.controller {
            let _ = controller.send(role::Request::Stop);
        }
    }

    /// One round as a follower: refuse what was queued (it raced the role change), wait for news
    /// of an append, apply what the journal has.
    fn follow_turn(
        &mut self,
        writer: Option<String>,
        receiver: &mut mpsc::Receiver<Job>,
        failed: &mut Option<String>,
    ) -> Turn {
        // A writer that just stepped down counts its time behind from now.
        if self.leading.take().is_some() {
            self.followed_at = Instant::now();
        }
        loop {
            match receiver.try_recv() {
                Ok(Job::Write(write)) => {
                    let _ = write.reply.send(Err(LedgerError::NotWriter { writer: writer.clone() }));
                }
                Ok(Job::Exclusive(task)) => task(),
                Ok(Job::Wake) => {}
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Turn::Closed,
            }
        }
        self.targets.journal.wait_for_append(self.head.sequence, FOLLOW_POLL);
        // Derived state of a stopped writer may be behind what it acknowledged: leave it alone.
        if failed.is_some() {
            return Turn::Continue;
        }
        match self.follow() {
            Ok(_) => self.caught_up(),
            Err(FollowError::Refused(e)) => {
                self.fail_stop(failed, format!("the journal holds an entry this node refuses: {e}"));
            }
            Err(FollowError::Unavailable(e)) => {
                tracing::warn!(error = %e, "cannot follow the journal; trying again");
                self.check_stale();
                std::thread::sleep(self.retry_pause);
            }
        }
        Turn::Continue
    }

    /// This node reflects the journal's head: a follower that was stale serves again.
    fn caught_up(&mut self) {
        self.followed_at = Instant::now();
        if self.behind.send_replace(false) {
            tracing::warn!(head = self.head.sequence, "the follower caught up with the journal: health says SERVING");
        }
    }

    /// A follower that has not reached the journal's head for `stale_max` says NOT_SERVING, so
    /// that load balancers stop sending it reads; its lag is in the log.
    fn check_stale(&mut self) {
        let behind = self.followed_at.elapsed();
        if !*self.behind.borrow() && behind >= self.stale_max {
            self.behind.send_replace(true);
            tracing::error!(
                behind_ms = behind.as_millis() as u64,
                bound_ms = self.stale_max.as_millis() as u64,
                head = self.head.sequence,
                "the follower could not follow the journal for longer than its bound: health says NOT_SERVING"
            );
        }
    }

    /// Before writing under a new term: apply every entry the journal has (the lease is held, so
    /// nobody appends meanwhile) and continue its clock.
    fn take_over(&mut self) -> Result<(), FollowError> {
        self.follow()?;
        let head = self.targets.journal.head()?;
        if head != self.head {
            return Err(FollowError::Unavailable(LedgerError::Unavailable(format!(
                "the journal's head is {} after catching up to {}",
                head.sequence, self.head.sequence
            ))));
        }
        self.caught_up();
        Ok(())
    }

    /// Applies the journal's entries after `self.head` into derived state, chunk by chunk, until
    /// there are none: what a follower does, and a new writer before it writes. Every entry is
    /// decided again first, as a restore decides a dump's (`replay::apply_checked`): another node
    /// wrote it, and so may anyone who can insert into the journal's table; and only entries a
    /// group signature of the cluster's key covers are read (`replay::read_signed`). A chunk with
    /// an entry refused is applied not at all.
    fn follow(&mut self) -> Result<u64, FollowError> {
        let mut applied = 0;
        loop {
            let from = self.head.sequence + 1;
            let chunk = match &self.targets.cluster_key {
                Some(key) => super::replay::read_signed(self.targets.journal.as_ref(), from, FOLLOW_CHUNK, key)?,
                None => {
                    let read = self.targets.journal.read(from, FOLLOW_CHUNK)?;
                    read.into_iter().map(|s| s.decode().map(|e| (s, e))).collect::<Result<_, _>>()?
                }
            };
            if chunk.is_empty() {
                return Ok(applied);
            }
            let derived = self.targets.derived.clone();
            let mut tx = Tx::new(derived.as_ref());
            let mut head = self.head;
            let mut principals = Vec::new();
            for (stored, entry) in &chunk {
                // The chain continues exactly where derived state is.
                super::replay::check_link(head, entry).map_err(FollowError::Refused)?;
                super::replay::apply_checked(&mut tx, entry)?;
                if let Some(name) = entry.event.principal() {
                    principals.push(name.clone());
                }
                self.clock.last = self.clock.last.max(entry.at);
                head = stored.head();
            }
            let leaves: Vec<_> = chunk.iter().map(|(stored, _)| merkle::leaf_hash(&stored.bytes)).collect();
            derived.apply(tx.into_batch(), head, &leaves).map_err(|e| LedgerError::Unavailable(e.to_string()))?;
            self.head = head;
            for name in &principals {
                self.targets.principals.refresh(derived.as_ref(), name)?;
            }
            self.committed.send_replace(head.sequence);
            applied += chunk.len() as u64;
            if derived.checkpoint_due() {
                derived.checkpoint().map_err(|e| LedgerError::Unavailable(e.to_string()))?;
            }
        }
    }

    /// Executes and commits one group.
    // Longer than ~70 lines: one group commit: decide each job, seal, append, apply, answer; the steps
    // share the group's transaction and replies.
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
        if let Some(stored) = self.open_day(&mut tx, head) {
            head = stored.head();
            appended.push(stored);
        }
        for job in jobs.drain(..) {
            let now = self.clock.tick();
            let name = &job.actor.name;
            let result = if self.targets.principals.is_revoked(name) || revoked_here.contains(name) {
                // Queued before its principal was revoked: a revocation stops everything after it.
                Err(LedgerError::Unauthenticated(format!("{name} was revoked before its write was decided")))
            } else {
                decider::execute(&mut tx, &job.actor, &job.command, now, head)
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
            Ok(()) => {
                let leaves: Vec<_> = appended.iter().map(|stored| merkle::leaf_hash(&stored.bytes)).collect();
                self.apply(tx, head, &leaves, &replies)
            }
            Err(end) => end,
        };
        match &end {
            GroupEnd::Committed | GroupEnd::Stop(_, None) => {
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
            GroupEnd::NotWritten(answer) | GroupEnd::StepDown(answer) | GroupEnd::Stop(_, Some(answer)) => {
                for (reply, _) in replies {
                    let _ = reply.send(Err(answer.clone()));
                }
            }
        }
        drop(tickets);
        end
    }

    /// Opens the business day before a group's first write when an alert came due by the passing
    /// of days (`alerts::day_to_open`): the entry is the group's first, so the feed carries those
    /// alerts with an entry of their day. Examined once a day; a day found with nothing due, or
    /// whose examination failed (logged), is not examined again.
    fn open_day(&mut self, tx: &mut Tx<'_>, head: Head) -> Option<Stored> {
        let today = crate::domain::pledge::china_date((self.clock.wall)().max(self.clock.last + 1));
        if self.day_checked == Some(today) {
            return None;
        }
        let now = self.clock.tick();
        let day = match super::alerts::day_to_open(tx, now) {
            Ok(Some(day)) => day,
            Ok(None) => {
                self.day_checked = Some(today);
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, %today, "the alerts due today could not be examined");
                self.day_checked = Some(today);
                return None;
            }
        };
        let system = Principal {
            name: crate::domain::principal::PrincipalName::parse(super::alerts::SYSTEM).expect("a valid name"),
            role: crate::domain::principal::Role::Admin,
            create_time: 0,
            revoke_time: None,
        };
        match decider::execute(tx, &system, &Command::OpenDay { day }, now, head) {
            // Checked again after the group: the day opened then answers `None` at once.
            Ok(Executed::Appended { stored, .. }) => {
                tx.accept();
                Some(stored)
            }
            Ok(Executed::Replayed(_)) | Err(_) => {
                tx.reject();
                self.day_checked = Some(today);
                None
            }
        }
    }

    /// Appends the group durably; on a failure, learns from the journal what was written.
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
            JournalError::Unavailable(_) => Err(GroupEnd::NotWritten(not_committed())),
            JournalError::Fenced { .. } => Err(GroupEnd::StepDown(LedgerError::NotWriter { writer: None })),
            JournalError::OutcomeUnknown(_) => self.settle(expected, target),
            // Another writer appended: in a cluster this one is stale and follows; alone, the
            // journal changed under it and it stops.
            JournalError::HeadMoved { .. } if self.controller.is_some() => {
                Err(GroupEnd::StepDown(LedgerError::NotWriter { writer: None }))
            }
            JournalError::HeadMoved { .. } | JournalError::Corrupt(_) => {
                Err(GroupEnd::Stop(error.to_string(), Some(not_committed())))
            }
        }
    }

    /// After an append of unknown outcome: asks the journal (for up to `settle_max`, through a
    /// failover) whether the group is there, and never assumes it is not.
    fn settle(&mut self, expected: Head, target: Head) -> Result<(), GroupEnd> {
        let started = Instant::now();
        loop {
            match self.targets.journal.durable_head() {
                Ok(head) if head == expected => return Err(GroupEnd::NotWritten(not_committed())),
                // Everything is there: the group is committed after all.
                Ok(head) if head == target => return Ok(()),
                Ok(head) => {
                    return Err(self.unknown(format!("the journal's head is {} after a failed append", head.sequence)));
                }
                Err(e) if started.elapsed() < self.settle_max => {
                    tracing::warn!(error = %e, "the journal is unreachable after an append of unknown outcome; asking again");
                    std::thread::sleep(self.retry_pause);
                }
                Err(e) => return Err(self.unknown(format!("the journal's head is unknown after a failed append: {e}"))),
            }
        }
    }

    /// A group whose outcome stays unknown: its callers are told so; in a cluster the node gives
    /// up writing (another decides from the journal), alone it stops.
    fn unknown(&self, reason: String) -> GroupEnd {
        match self.controller {
            Some(_) => GroupEnd::StepDown(LedgerError::OutcomeUnknown(reason)),
            None => GroupEnd::Stop(reason.clone(), Some(LedgerError::OutcomeUnknown(reason))),
        }
    }

    /// Makes a durable group visible: derived records, the live principals, the committed head.
    fn apply(
        &mut self,
        tx: Tx<'_>,
        head: Head,
        leaves: &[merkle::Hash],
        replies: &[(oneshot::Sender<Reply>, Reply)],
    ) -> GroupEnd {
        let derived = &self.targets.derived;
        if let Err(e) = derived.apply(tx.into_batch(), head, leaves) {
            let reason = format!("derived state cannot take a committed group: {e}");
            // Durable, so committed: the callers learn it by retrying with their request ids.
            return GroupEnd::Stop(reason.clone(), Some(LedgerError::OutcomeUnknown(reason)));
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
            // The group is durable and applied: its callers are answered; later writes stop.
            tracing::error!(error = %e, "a checkpoint failed: writes stop");
            return GroupEnd::Stop(e.to_string(), None);
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

fn refuse_not_writer(jobs: &mut Vec<Write>, writer: Option<String>) {
    for job in jobs.drain(..) {
        let _ = job.reply.send(Err(LedgerError::NotWriter { writer: writer.clone() }));
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
        let derived = Derived::new(Arc::new(MemoryStore::default()), 1 << 20, journal.as_ref()).unwrap();
        let targets = Targets { journal, derived: derived.clone(), principals: Arc::default(), cluster_key: None };
        (spawn(targets, 16, super::super::system_clock(), None).unwrap(), derived)
    }

    #[test]
    fn writes_queued_before_their_principals_revocation_are_refused() {
        let derived = Derived::new(Arc::new(MemoryStore::default()), 1 << 20, &MemoryJournal::default()).unwrap();
        let principals = Arc::new(Principals::default());
        let targets = Targets {
            journal: Arc::new(MemoryJournal::default()),
            derived,
            principals: principals.clone(),
            cluster_key: None,
        };
        let Spawned { sender, handle, .. } = spawn(targets, 16, super::super::system_clock(), None).unwrap();
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
        let (Spawned { sender, handle, writes_stopped, committed, .. }, derived) = start(journal.clone());
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

    /// Micros of `day` at noon in China (04:00 UTC).
    fn noon_in_china(day: &str) -> Micros {
        parse_date(day).unwrap().and_hms_opt(4, 0, 0).unwrap().and_utc().timestamp_micros()
    }

    #[test]
    fn a_day_opens_when_an_alert_comes_due_by_the_passing_of_days_and_a_restore_decides_it_again() {
        use crate::domain::risk::NewDefault;
        use crate::ledger::command::RiskCommand;
        use crate::ledger::journal::Event;
        use std::sync::atomic::AtomicI64;
        let now = Arc::new(AtomicI64::new(noon_in_china("2021-03-01")));
        let clock: super::super::WallClock = {
            let now = now.clone();
            Arc::new(move || now.load(Ordering::SeqCst))
        };
        let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::default());
        let derived = Derived::new(Arc::new(MemoryStore::default()), 1 << 20, journal.as_ref()).unwrap();
        let targets = Targets {
            journal: journal.clone(),
            derived: derived.clone(),
            principals: Arc::default(),
            cluster_key: None,
        };
        let Spawned { sender, handle, .. } = spawn(targets, 16, clock, None).unwrap();
        let write = |command: Command| send(&sender, admin("admin"), command).blocking_recv().unwrap().unwrap();
        let create = Command::CreatePrincipal {
            name: crate::domain::principal::PrincipalName::parse("admin").unwrap(),
            role: Role::Admin,
            token_hash: [1; 32],
        };
        send(&sender, admin("operator"), create).blocking_recv().unwrap().unwrap();
        let Event::PledgeRegistered { pledge } =
            crate::ledger::replay::tests_support::pledge(1, "91330100716105852F", "1234567", "admin", 0)
        else {
            unreachable!("a registration")
        };
        let register = Command::RegisterPledge {
            request_id: Uuid::new_v4(),
            pledge: pledge.content.clone(),
            channel: crate::ledger::command::Channel::Call,
        };
        let Outcome::Pledge(registered, _) = write(register).0 else { panic!("a pledge") };
        // Defaulted on 02-20, recorded on 03-01: unresolved for 90 days on 05-21.
        let default = NewDefault {
            defaulted_on: parse_date("2021-02-20").unwrap(),
            outstanding_principal: Money::parse_positive("100").unwrap(),
            loss: None,
        };
        let record = RiskCommand::RecordDefault { id: registered.id, default };
        write(Command::Risk { request_id: Uuid::new_v4(), command: record });
        let events = || -> Vec<String> {
            let entries = journal.read(1, 100).unwrap();
            entries.iter().map(|s| s.decode().unwrap().event.name().to_owned()).collect()
        };
        now.store(noon_in_china("2021-05-20"), Ordering::SeqCst);
        write(create_line(Uuid::new_v4()));
        assert_eq!(events().last().unwrap(), "CREDIT_LINE_CREATED", "nothing due on 05-20: no day opened");
        now.store(noon_in_china("2021-05-23"), Ordering::SeqCst);
        write(create_line(Uuid::new_v4()));
        write(create_line(Uuid::new_v4()));
        let names = events();
        assert_eq!(names[names.len() - 3..], ["DAY_OPENED", "CREDIT_LINE_CREATED", "CREDIT_LINE_CREATED"]);
        let opened = names.len() as u64 - 2;
        let raised = crate::ledger::query::alerts_raised(derived.as_ref(), opened).unwrap();
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, crate::domain::alert::AlertKind::DefaultUnresolved);
        assert_eq!((raised[0].pledge_id, raised[0].arose_on), (registered.id, parse_date("2021-05-21").unwrap()));
        drop(sender);
        handle.join().unwrap();

        // A restore decides the day's entry again, and derives the same alerts with it.
        let restored_journal = MemoryJournal::default();
        let restored = Derived::new(Arc::new(MemoryStore::default()), 1 << 20, &restored_journal).unwrap();
        let entries: Vec<Result<Stored, String>> = journal.read(1, 100).unwrap().into_iter().map(Ok).collect();
        crate::ledger::replay::restore(&restored_journal, &restored, entries).unwrap();
        assert_eq!(crate::ledger::query::alerts_raised(restored.as_ref(), opened).unwrap(), raised);
    }
}
