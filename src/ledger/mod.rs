//! The ledger: the journal (the ground state), the one write path (a single writer appending
//! groups of entries), the projector that derives every other record from the entries, and the
//! read path over derived state (point reads, index scans, exposure rows).

pub mod alerts;
mod codec;
pub mod command;
pub mod decider;
pub mod derived;
pub mod export;
pub mod journal;
pub mod keys;
pub mod principals;
pub mod projector;
pub mod query;
pub mod records;
pub mod replay;
pub mod risk_decider;
pub mod risk_projector;
pub mod role;
pub mod signing;
mod sums;
pub mod tokens;
pub mod transparency;
pub mod tree;
mod tx;
mod writer;

pub use command::{Answer, Channel, Command, Outcome, PledgeAnswer};
pub use writer::GROUP_MAX;

use crate::domain::LedgerError;
use crate::domain::Reason;
use crate::domain::principal::Principal;
use crate::store::{Access, Store, StoreError};
use principals::Principals;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// The layout of the derived records this build writes (keys, values). 3: derived state apart
/// from the journal, checkpointed with the head it reflects; request records by sequence. 4: the
/// risk side (rights' records, pledges' risk, programmes, claims, the risk columns of the rows)
/// and rights whose expiry may be bounded or unknown. 5: the risk columns as of a date in the
/// as-of sums, and programmes' commitments by date. 6: a right's recorded states carry their
/// withdrawal; claims' bases hold the compensation of the pledge's other claims, and a bank's
/// lending for stop lines counts what was lent (`risk_projector::lent`). 7: a right's holding (`R`) keeps its
/// active pledge and the count of its pledges in one record, kept after a release (no `Jn` key).
/// 8: the records are the same, stored as sorted runs (`store::RunStore`) instead of one sled key
/// each; a directory of the scattered layout is removed when opened. 9: exposure rows and as-of
/// sums and banks' lending are counters (`store::Counters`, cells laid out in `sums`), added to blind. 10: a
/// pledgor's record (`Y`) lists its pledges (`projector::PledgorPledge`), not an interval list per row. 11: the
/// records are the same; a store of 10 may hold keys whose sum is zero (additions that cancelled
/// before a checkpoint were stored as a value, which a rebuild never writes, so `verify` reported a
/// divergence; found by tests/sim.rs), so it is rebuilt once. 12: the journal's Merkle tree (`L`,
/// `tree`) is derived state too, so a store of 11 (which has none) is rebuilt once. 13 (issue 25): a
/// pledge keeps its co-pledgors and a right's state its co-holders, invalidation and overdue fee;
/// programmes carry their caps and valuer's share, claims their valuer's part, the limit that bound
/// and the fund parts the caps were checked against, and a borrower's year (`Vq`) is kept; alerts:
/// the watched pledges (`Vw`, `Vx`), banks' alert policies (`Vo`) and the alerts each entry raised
/// (`Vz`). A store of 12 has none of these, so it is rebuilt once. Derived records
/// of another layout would be misread, so such a store is cleared and rebuilt from the journal when
/// it is opened.
pub const DERIVED_LAYOUT: u32 = 13;

/// Makes `base` a checkpoint of this build's layout and of this journal: clears it (for a rebuild
/// from the journal) when it holds another layout or a state the journal does not contain.
fn check_layout(journal: &dyn journal::Journal, base: &dyn Store) -> Result<(), LedgerError> {
    let key = keys::META_DERIVED_LAYOUT;
    let found: Option<u32> = tx::Tx::new(base).get(key)?;
    let matches = replay::checkpoint_matches(journal, base)?;
    if found == Some(DERIVED_LAYOUT) && matches {
        return Ok(());
    }
    let empty = base.scan(b"", None, 1).map_err(|e| LedgerError::Unavailable(e.to_string()))?.is_empty();
    if !empty {
        let from = found.map_or_else(|| "unversioned".to_owned(), |v| v.to_string());
        tracing::warn!(
            from,
            to = DERIVED_LAYOUT,
            of_this_journal = matches,
            "derived state of another layout or journal: rebuilding it from the journal"
        );
        replay::clear(base)?;
    }
    mark_layout(base)
}

/// Marks an empty derived-state store with this build's layout (a restore fills it).
pub fn mark_layout(base: &dyn Store) -> Result<(), LedgerError> {
    let batch = crate::store::Batch {
        ops: vec![(keys::META_DERIVED_LAYOUT.to_vec(), crate::store::Op::Put(codec::encode(&DERIVED_LAYOUT)))],
    };
    base.commit(batch).map_err(|e| LedgerError::Unavailable(e.to_string()))
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
        Access::Commit => Err(StoreError::Unavailable("a read may not commit".to_owned())),
        Access::Get | Access::Scan if Instant::now() >= at => {
            Err(StoreError::Unavailable("the read's deadline passed".to_owned()))
        }
        Access::Get | Access::Scan => Ok(()),
    })
}

/// How a ledger runs.
#[derive(Clone)]
pub struct Options {
    /// Writes waiting for the writer at most.
    pub queue_max: usize,
    /// Derived state held in memory before a checkpoint.
    pub checkpoint_bytes: usize,
    /// Where the writer reads the time it dates entries with (and "today" for the rules):
    /// `system_clock` in a server; a simulation's own clock, drawn from its seed, in tests.
    pub wall_clock: WallClock,
}

/// A source of the wall-clock time in microseconds since the epoch (UTC). The writer keeps its
/// entries' times strictly increasing whatever it returns.
pub type WallClock = Arc<dyn Fn() -> crate::domain::Micros + Send + Sync>;

/// The machine's clock.
pub fn system_clock() -> WallClock {
    Arc::new(|| chrono::Utc::now().timestamp_micros())
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("queue_max", &self.queue_max)
            .field("checkpoint_bytes", &self.checkpoint_bytes)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// For tests: a small queue, the default checkpoint size and the machine's clock.
    pub fn small() -> Options {
        Options { queue_max: 16, checkpoint_bytes: derived::CHECKPOINT_BYTES, wall_clock: system_clock() }
    }
}

/// Handle shared by the request handlers. Writes go to the writer thread; reads run on the
/// blocking pool, never on the async workers.
#[derive(Clone)]
pub struct Ledger {
    journal: Arc<dyn journal::Journal>,
    derived: Arc<derived::Derived>,
    signer: Arc<signing::Signer>,
    store: Arc<dyn Store>,
    principals: Arc<Principals>,
    committed: tokio::sync::watch::Receiver<u64>,
    writes_stopped: tokio::sync::watch::Receiver<bool>,
    behind: tokio::sync::watch::Receiver<bool>,
    role: tokio::sync::watch::Receiver<role::NodeRole>,
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
    /// Opens the ledger on a journal and a derived-state store: derived state is checked against
    /// the journal (rebuilt when it is of another layout), caught up by replaying the entries after
    /// its checkpoint, and the writer starts after the journal's head.
    pub fn start(
        journal: Arc<dyn journal::Journal>,
        base: Arc<dyn Store>,
        signer: signing::Signer,
        options: Options,
    ) -> Result<(Ledger, WriterGuard), LedgerError> {
        Ledger::start_node(journal, base, signer, options, None)
    }

    /// `start`, as one node of a cluster when `lease` is given: the node writes while it holds
    /// the writer's lease and follows the journal (serving reads) while another node does.
    pub fn start_node(
        journal: Arc<dyn journal::Journal>,
        base: Arc<dyn Store>,
        signer: signing::Signer,
        options: Options,
        lease: Option<Arc<dyn journal::lease::WriterLease>>,
    ) -> Result<(Ledger, WriterGuard), LedgerError> {
        let Options { queue_max, checkpoint_bytes, wall_clock } = options;
        check_layout(journal.as_ref(), base.as_ref())?;
        let derived = derived::Derived::new(base, checkpoint_bytes, journal.as_ref())
            .map_err(|e| LedgerError::Unavailable(e.to_string()))?;
        // A shared journal (a cluster's) is checked entry by entry: a database credential can write it.
        // A shared journal (a cluster's) is read only where the cluster's key signed it.
        let cluster_key = lease.is_some().then(|| signer.public_key());
        replay::catch_up(journal.as_ref(), &derived, cluster_key.as_ref())?;
        let principals = Arc::new(Principals::load(derived.as_ref())?);
        let targets = writer::Targets {
            journal: journal.clone(),
            derived: derived.clone(),
            principals: principals.clone(),
            cluster_key,
        };
        let writer::Spawned { sender, handle, committed, writes_stopped, behind, role } =
            writer::spawn(targets, queue_max, wall_clock, lease)?;
        let store: Arc<dyn Store> = derived.clone();
        let ledger = Ledger {
            journal,
            derived,
            signer: Arc::new(signer),
            store,
            principals,
            committed,
            writes_stopped,
            behind,
            role,
            writer: sender,
            queue_max,
            reads_in_flight: Arc::default(),
        };
        Ok((ledger, WriterGuard { handle: Mutex::new(Some(handle)) }))
    }

    /// The journal's durable head, signed with the server's key. On the blocking pool: a journal
    /// engine may block (PostgreSQL's client runs a runtime of its own).
    pub async fn signed_head(&self) -> Result<signing::SignedHead, LedgerError> {
        let (journal, signer) = (self.journal.clone(), self.signer.clone());
        tokio::task::spawn_blocking(move || Ok(signer.sign(journal.head()?)))
            .await
            .map_err(|e| LedgerError::Internal(format!("the signed-head task failed: {e}")))?
    }

    /// The public half of the key that signs journal heads.
    pub fn public_key(&self) -> signing::PublicKey {
        self.signer.public_key()
    }

    /// The journal (entries are read from it directly: they never change once written).
    pub fn journal(&self) -> &Arc<dyn journal::Journal> {
        &self.journal
    }

    /// Verifies the journal's chain and the checkpointed derived state against a rebuild into
    /// `scratch`, beside the writer (writes go on; checkpoints wait). Runs on the blocking pool.
    pub async fn verify(&self, scratch: Arc<dyn Store>) -> Result<replay::Report, LedgerError> {
        let (journal, derived) = (self.journal.clone(), self.derived.clone());
        tokio::task::spawn_blocking(move || replay::verify(journal.as_ref(), &derived, scratch))
            .await
            .map_err(|e| LedgerError::Internal(format!("verify task failed: {e}")))?
    }

    /// Waits (up to `timeout`) until derived state reflects at least journal entry `sequence`, so
    /// a read after a write sees it. Errors when the journal has no such entry yet.
    pub async fn wait_for(&self, sequence: u64, timeout: Duration) -> Result<(), LedgerError> {
        let mut committed = self.committed.clone();
        let reached = tokio::time::timeout(timeout, committed.wait_for(|c| *c >= sequence)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(LedgerError::Unavailable("the ledger is shutting down".to_owned())),
            Err(_) => Err(LedgerError::refused(
                Reason::SEQUENCE_NOT_REACHED,
                format!("journal entry {sequence} is not committed here (committed: {})", *self.committed.borrow()),
            )
            .with("minSequence", sequence)),
        }
    }

    /// Follows the sequence of the last committed journal entry.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Turns true when the writer stopped accepting writes after a storage failure (fail-stop).
    pub fn writes_stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.writes_stopped.clone()
    }

    /// True while this node, a follower, is behind the journal for longer than its bound (three
    /// leases): its reads would be stale, so health says NOT_SERVING until it catches up.
    pub fn behind(&self) -> tokio::sync::watch::Receiver<bool> {
        self.behind.clone()
    }

    /// Runs `f` on the writer thread between two group commits (writes wait until it returns).
    pub async fn exclusive<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task = Box::new(move || {
            let _ = reply.send(f());
        });
        self.writer
            .send(writer::Job::Exclusive(task))
            .await
            .map_err(|_| LedgerError::Unavailable("the ledger is shutting down".to_owned()))?;
        answer.await.map_err(|_| LedgerError::Unavailable("the writer stopped".to_owned()))
    }

    /// Follows whether this node writes or follows another node's journal.
    pub fn role(&self) -> tokio::sync::watch::Receiver<role::NodeRole> {
        self.role.clone()
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
    pub async fn write(&self, actor: &Principal, command: Command) -> Result<(Outcome, bool, u64), LedgerError> {
        self.write_with(actor, command, Box::new(())).await
    }

    /// `write_with`, answering with the resource of the command's kind, and the entry's sequence.
    pub async fn write_as<T: command::Answer>(
        &self,
        actor: &Principal,
        command: Command,
        ticket: writer::Ticket,
    ) -> Result<(T, u64), LedgerError> {
        let (outcome, _, sequence) = self.write_with(actor, command, ticket).await?;
        let answer = T::from_outcome(outcome)
            .ok_or_else(|| LedgerError::Internal(format!("a {} write answered with another resource", T::RESOURCE)))?;
        Ok((answer, sequence))
    }

    /// `write`, with a ticket the writer holds until the write is decided and committed.
    pub async fn write_with(
        &self,
        actor: &Principal,
        command: Command,
        ticket: writer::Ticket,
    ) -> Result<(Outcome, bool, u64), LedgerError> {
        if let role::NodeRole::Follower { writer } = &*self.role.borrow() {
            return Err(LedgerError::NotWriter { writer: writer.clone() });
        }
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
        if let role::NodeRole::Follower { writer } = &*self.role.borrow() {
            return Err(LedgerError::NotWriter { writer: writer.clone() });
        }
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
    async fn a_read_stops_at_its_callers_deadline() {
        let (ledger, writer) = Ledger::start(
            Arc::new(journal::MemoryJournal::default()),
            Arc::new(MemoryStore::default()),
            signing::Signer::ephemeral().unwrap(),
            Options::small(),
        )
        .unwrap();
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
