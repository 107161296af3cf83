//! A seeded simulation of the ledger with an auditor, in the manner of TigerBeetle's VOPR (scaled
//! down): a workload of registrations, changes, releases, credit lines, retries with the same
//! request id, racing bursts and restarts, drawn from a seed, runs against the real ledger (the
//! writer thread, the projector, derived state, checkpoints) over an in-memory journal that
//! injects faults at appends (refused appends, nothing written; appends whose outcome is unknown,
//! written or not) and an in-memory derived-state store that fails commits (a checkpoint that
//! fails: the writer stops taking writes, and the simulation restarts it as a supervisor would).
//! An auditor keeps a model of the books and checks every answer (accepted, replayed, or refused
//! for a reason the model predicts) and, after every step, the reads: each pledge, each right's
//! active pledge, each credit line's drawn amount, and the exposure rows of the country and every
//! county. Restarts drop the ledger (its uncheckpointed derived state with it) and open it again on
//! the same journal; `verify` compares derived state with a rebuild from the journal.
//!
//! The seed also decides the nodes: one alone (no lease: the embedded journal's writer), or a
//! cluster of two or three `Ledger` nodes, each with derived state of its own, over one shared
//! memory journal and its memory lease (`MemoryJournal::node`, `MemoryLease`: the term fencing of
//! PostgreSQL's journal, and groups signed with the cluster's key), the lease threads and writers
//! of `role.rs` and `writer.rs` deciding who writes. Writes go to the node that writes; a follower
//! (or a writer that learnt it lost its term) refuses with `NOT_WRITER`, which the auditor takes as
//! "not written" and checks: a retry of the same request id must not find it written. Besides the
//! steps above, a cluster's seed has events of its own:
//! - the writer's lease expires (as after a pause or a partition of its holder): a node takes
//!   over under a new term, after catching up, and every acknowledged write is read there;
//! - the writer's lease thread pauses past its lease while its writer thread goes on: another node
//!   takes over, and a write sent to the paused writer, which still believes it holds its term,
//!   must not be accepted nor be in the journal whatever it answers (its append is fenced);
//! - a follower is cut off from the journal while the writer writes: it applies nothing, then
//!   catches up, and its reads equal the model;
//! - a node restarts (a writer releases its lease as it stops, and another node takes over).
//!
//! After a step the writer's reads are audited, and now and then a follower's once it caught up;
//! at the end of a seed every node restarts, catches up, is audited and verified, and the
//! journal's request ids must be exactly those the auditor saw committed: none acknowledged was
//! lost across takeovers, none that was refused, fenced or answered unknown and then found
//! unwritten is there.
//!
//! The lease's expiry reads the shared journal's clock, which only the simulation moves: a lease
//! is lost exactly at the step the seed says, however slowly the threads run. The lease thread's
//! periods are wall-clock time (a quarter of `LEASE_TTL`, which is 20 ms here).
//!
//! A failure names its seed: `IPLEDGER_SIM_SEED=<seed> cargo test --test sim` runs that seed
//! alone. `IPLEDGER_SIM_SEEDS=<n>` runs n seeds (CI: 200). The wall clock the writers date
//! entries with (and take "today" from) is the simulation's (`Options::wall_clock`): it starts on
//! a day of 2025-2027 drawn from the seed and moves by seconds between steps and by a whole day
//! now and then, so that retries, changes and releases meet a new "today"; every entry must be
//! dated by it. What the seed does not decide: the order in which a racing burst reaches the
//! writer (the auditor checks a burst against the order the journal gives it), and which node
//! wins a takeover (the auditor follows whichever writes).

// Tests fail loudly: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

use chrono::{Days, NaiveDate};
use ipledger::domain::LedgerError;
use ipledger::domain::credit_line::NewCreditLine;
use ipledger::domain::exposure::{Bucket, Dimension};
use ipledger::domain::ident::{CreditCode, RightKind, RightNumber};
use ipledger::domain::money::Money;
use ipledger::domain::pledge::{NewPledge, Party, PledgeAmendment, PledgeDraft, Release, ReleaseReason, Right};
use ipledger::domain::principal::{Principal, PrincipalName, Role};
use ipledger::domain::region::{CountyCode, Region};
use ipledger::domain::text::Text;
use ipledger::ledger::journal::lease::{Term, WriterLease};
use ipledger::ledger::journal::{GroupSignature, Head, Journal, JournalError, MemoryJournal, MemoryLease, Stored};
use ipledger::ledger::role::NodeRole;
use ipledger::ledger::{Channel, Command, Ledger, Options, Outcome, WriterGuard, query, signing};
use ipledger::store::{Batch, Entry, MemoryStore, Store, StoreError};
use ipledger::workload::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Steps per seed: each a write (or a burst, a retry, a restart, a cluster's event) and an audit
/// of every read.
const STEPS: usize = 60;
/// Steps per seed of a cluster: each costs about half as much again (followers apply every
/// entry, and the auditor reads them too), and the seeds must fit CI's time.
const STEPS_CLUSTER: usize = 40;
/// Steps after which the simulated clock jumps a whole day, in percent (a few days a seed: a
/// registration's date stays within a bank's 30 days of it).
const DAY_JUMP_PERCENT: usize = 5;
/// Seeds CI runs when `IPLEDGER_SIM_SEEDS` is not set.
const SEEDS_DEFAULT: u64 = 200;
/// Attempts of one request before the simulation gives up on the injected faults (at 10% each,
/// 20 failures in a row is a one-in-10^20 event, not bad luck).
const ATTEMPTS_MAX: usize = 20;

const COUNTIES: [&str; 3] = ["330106", "330108", "320106"];
/// Trademark numbers: a small pool, so that registrations contend for rights.
const RIGHTS: usize = 10;
const BANKS: usize = 2;

/// Nodes of a seed, drawn from the seed: one alone (no lease, the embedded journal's writer), or a
/// cluster of two or three over one shared journal and lease.
const NODES: [usize; 3] = [1, 2, 3];
/// The simulated cluster's lease. Its expiry reads the shared journal's clock, which only the
/// simulation moves (a lease is lost exactly at the step the seed says, however slowly the threads
/// run); the lease thread's periods (a quarter of it) and the writer's bounds derived from it are
/// wall-clock time (`role.rs`), so it is short: a takeover takes a few milliseconds.
const LEASE_TTL: Duration = Duration::from_millis(20);
/// How long the simulation waits for the cluster to settle (a writer to appear, a follower to catch
/// up) before it calls the seed stuck: far longer than any of it takes.
const SETTLE_MAX: Duration = Duration::from_secs(20);
/// A follower's reads are audited after one step in this many, besides after its catching up in
/// the cluster's events and at the end of the seed.
const FOLLOWER_AUDIT_EVERY: usize = 4;
/// Cluster events per hundred steps of a cluster's seed (lease lost, a paused writer fenced, a
/// follower cut off from the journal and caught up).
const CLUSTER_EVENTS_PERCENT: usize = 15;

/// What the journal does to an append, drawn from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Refused: nothing written.
    Unavailable,
    /// Written, and the writer told the outcome is unknown.
    WrittenUnknown,
    /// Not written, and the writer told the outcome is unknown.
    LostUnknown,
}

/// One node's handle on the memory journal with faults at appends; a node of a cluster can also be
/// cut off from reading it (a follower whose route to the journal broke).
#[derive(Debug)]
struct FaultyJournal {
    inner: MemoryJournal,
    rng: Mutex<Rng>,
    /// Faults per thousand appends.
    per_mille: u64,
    injected: AtomicU64,
    /// Appends the journal refused for a term taken over: the fence at work.
    fenced: AtomicU64,
    /// While set, reads and the head fail (appends are left alone: only followers are cut).
    cut: AtomicBool,
}

impl FaultyJournal {
    fn fault(&self) -> Fault {
        let mut rng = self.rng.lock().unwrap();
        if rng.below(1000) >= self.per_mille {
            return Fault::None;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        match rng.below(3) {
            0 => Fault::Unavailable,
            1 => Fault::WrittenUnknown,
            _ => Fault::LostUnknown,
        }
    }
}

impl FaultyJournal {
    fn new(inner: MemoryJournal, seed: u64, per_mille: u64) -> FaultyJournal {
        FaultyJournal {
            inner,
            rng: Mutex::new(Rng::new(seed)),
            per_mille,
            injected: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            cut: AtomicBool::new(false),
        }
    }

    fn reachable(&self) -> Result<(), JournalError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(JournalError::Unavailable("injected: cut off from the journal".to_owned()));
        }
        Ok(())
    }

    fn append_counted(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        let appended = self.inner.append(expected, entries);
        if matches!(appended, Err(JournalError::Fenced { .. })) {
            self.fenced.fetch_add(1, Ordering::Relaxed);
        }
        appended
    }
}

impl Journal for FaultyJournal {
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        match self.fault() {
            Fault::None => self.append_counted(expected, entries),
            Fault::Unavailable => Err(JournalError::Unavailable("injected: refused".to_owned())),
            Fault::WrittenUnknown => {
                self.append_counted(expected, entries)?;
                Err(JournalError::OutcomeUnknown("injected: written, the answer lost".to_owned()))
            }
            Fault::LostUnknown => Err(JournalError::OutcomeUnknown("injected: not written, no answer".to_owned())),
        }
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
        self.reachable()?;
        self.inner.read(from, limit)
    }

    fn head(&self) -> Result<Head, JournalError> {
        self.reachable()?;
        self.inner.head()
    }

    /// Waits a few milliseconds at most: a follower's writer thread sees a role change (a
    /// takeover) and a shutdown (a restart) only between two waits, which the writer bounds at
    /// half a second, the tenth of a seed's steps.
    fn wait_for_append(&self, after: u64, timeout: Duration) {
        self.inner.wait_for_append(after, timeout.min(LEASE_TTL / 4))
    }

    fn group_signatures(&self, from: u64, limit: usize) -> Result<Vec<GroupSignature>, JournalError> {
        self.reachable()?;
        self.inner.group_signatures(from, limit)
    }

    fn size_on_disk(&self) -> Result<u64, JournalError> {
        self.inner.size_on_disk()
    }
}

/// A node's memory lease that the simulation can pause: while paused, every call waits (the lease
/// thread froze, as in a stop of the process or a long pause of its VM), and none is under way
/// once `pause` returns. The node's writer thread is not paused: it goes on believing it holds the
/// term it last heard of, which is what the fence is for.
#[derive(Debug)]
struct SimLease {
    inner: MemoryLease,
    paused: Mutex<bool>,
}

impl SimLease {
    fn gate<T>(&self, call: impl FnOnce(&MemoryLease) -> T) -> T {
        loop {
            let paused = self.paused.lock().unwrap();
            if !*paused {
                // Called with the gate held: `pause` waits for a call under way.
                return call(&self.inner);
            }
            drop(paused);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn pause(&self, paused: bool) {
        *self.paused.lock().unwrap() = paused;
    }
}

impl WriterLease for SimLease {
    fn node(&self) -> &str {
        self.inner.node()
    }

    fn ttl(&self) -> Duration {
        self.inner.ttl()
    }

    fn acquire(&self) -> Result<Option<Term>, JournalError> {
        self.gate(|l| l.acquire())
    }

    fn renew(&self, term: Term) -> Result<bool, JournalError> {
        self.gate(|l| l.renew(term))
    }

    fn release(&self, term: Term) -> Result<(), JournalError> {
        self.gate(|l| l.release(term))
    }

    fn holder(&self) -> Result<Option<(String, Term)>, JournalError> {
        self.gate(|l| l.holder())
    }
}

/// Derived state's store (in memory) with faults at commits: a checkpoint that fails. The
/// writer stops taking writes after one (what it applied is durable in the journal); the
/// simulation then restarts the ledger, as an operator's supervisor would, and derived state is
/// rebuilt from the last checkpoint that succeeded and the journal after it.
#[derive(Debug)]
struct FaultyStore {
    inner: MemoryStore,
    rng: Mutex<Rng>,
    /// Faults per thousand commits.
    per_mille: u64,
    injected: AtomicU64,
}

impl FaultyStore {
    fn fault(&self) -> Result<(), StoreError> {
        let mut rng = self.rng.lock().unwrap();
        if rng.below(1000) >= self.per_mille {
            return Ok(());
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        Err(StoreError::Unavailable("injected: the commit failed, nothing written".to_owned()))
    }
}

impl Store for FaultyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan(prefix, after, limit)
    }

    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.fault()?;
        self.inner.commit(batch)
    }

    fn commit_and(&self, batch: Batch, visible: &mut dyn FnMut()) -> Result<(), StoreError> {
        self.fault()?;
        self.inner.commit_and(batch, visible)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
}

/// The auditor's books.
#[derive(Debug, Clone, Default)]
struct Model {
    pledges: BTreeMap<Uuid, ModelPledge>,
    /// Right index -> the active pledge holding it.
    held: BTreeMap<usize, Uuid>,
    lines: BTreeMap<Uuid, ModelLine>,
}

#[derive(Debug, Clone)]
struct ModelPledge {
    bank: usize,
    county: usize,
    amount_fen: i128,
    rights: Vec<usize>,
    active: bool,
    line: Option<Uuid>,
}

#[derive(Debug, Clone)]
struct ModelLine {
    bank: usize,
    region: Region,
    limit_fen: i128,
    drawn_fen: i128,
}

/// A write as the simulation sent it, with what the model predicts.
#[derive(Debug, Clone)]
struct Sent {
    actor: Principal,
    command: Command,
}

/// One node: its handle on the shared journal, its own derived state, its lease (in a cluster)
/// and the ledger running on them.
#[derive(Debug)]
struct Node {
    journal: Arc<FaultyJournal>,
    store: Arc<FaultyStore>,
    /// `None`: the node alone, with no lease (it always writes).
    lease: Option<Arc<SimLease>>,
    ledger: Option<(Ledger, WriterGuard)>,
}

impl Node {
    fn ledger(&self) -> &Ledger {
        &self.ledger.as_ref().expect("started").0
    }

    fn stopped(&self) -> bool {
        *self.ledger().writes_stopped().borrow()
    }

    /// The term this node writes under, if it believes it writes.
    fn writing(&self) -> Option<i64> {
        match *self.ledger().role().borrow() {
            NodeRole::Writer { term } => Some(term),
            NodeRole::Follower { .. } => None,
        }
    }
}

struct Sim {
    seed: u64,
    rng: Rng,
    /// The journal every node shares, as the auditor reads it (no faults).
    journal: MemoryJournal,
    nodes: Vec<Node>,
    /// The cluster's key (`--signing-key`), the same on every node and across restarts.
    key: signing::Signer,
    model: Model,
    /// The wall clock every node's writer reads (µs since the epoch, UTC), moved only by the
    /// simulation: "today" and every entry's time come from the seed.
    clock: Arc<AtomicI64>,
    /// Where the clock started: no entry is dated before it.
    clock_start: i64,
    banks: Vec<(Principal, Party)>,
    admin: Principal,
    /// Requests answered so far (for retries with the same id).
    answered: Vec<Sent>,
    /// The command each committed request id committed.
    committed: BTreeMap<Uuid, Command>,
    restarts: u32,
    /// Answers by kind (accepted, replayed, each refusal's reason) and the cluster's events: what
    /// the seeds exercised.
    tally: BTreeMap<&'static str, u64>,
}

fn text<const MIN: usize, const MAX: usize>(s: &str) -> Text<MIN, MAX> {
    Text::parse(s).unwrap()
}

fn right_number(i: usize) -> RightNumber {
    RightNumber::parse(&format!("{}", 30_000_000 + i), RightKind::Trademark).unwrap()
}

fn principal(name: &str, role: Role) -> Principal {
    Principal { name: PrincipalName::parse(name).unwrap(), role, create_time: 0, revoke_time: None }
}

fn county(i: usize) -> CountyCode {
    CountyCode::parse(COUNTIES[i]).unwrap()
}

/// The simulated clock's start: a day from 2025 to 2027 drawn from the seed, between 02:00 and
/// 08:00 UTC (10:00-16:00 in China), so that a seed's minutes of steps never cross China's midnight
/// unnoticed: days change only by the simulation's whole-day jumps.
fn clock_start(rng: &mut Rng) -> i64 {
    let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Days::new(rng.below(3 * 365));
    let seconds = 2 * 3600 + rng.below(6 * 3600);
    day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros() + i64::try_from(seconds).unwrap() * 1_000_000
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let start = clock_start(&mut rng);
        let clock = Arc::new(AtomicI64::new(start));
        let per_mille = [0, 50, 100][rng.below(3) as usize];
        let store_per_mille = [0, 0, 30, 100][rng.below(4) as usize];
        let count = NODES[rng.below(NODES.len() as u64) as usize];
        let key = signing::Signer::ephemeral().unwrap();
        let journal = MemoryJournal::default();
        let nodes = (0..count as u64)
            .map(|i| {
                let mut handle = journal.node();
                let mut lease = None;
                if count > 1 {
                    handle = handle.sign_groups_with(Arc::new(key.clone()));
                    let inner = MemoryLease::connect(&handle, &format!("node-{i}:50051"), LEASE_TTL, handle.term());
                    lease = Some(Arc::new(SimLease { inner, paused: Mutex::new(false) }));
                }
                Node {
                    journal: Arc::new(FaultyJournal::new(handle, seed ^ 0x5eed ^ (i << 32), per_mille)),
                    store: Arc::new(FaultyStore {
                        inner: MemoryStore::default(),
                        rng: Mutex::new(Rng::new(seed ^ 0x5707e ^ (i << 32))),
                        per_mille: store_per_mille,
                        injected: AtomicU64::new(0),
                    }),
                    lease,
                    ledger: None,
                }
            })
            .collect();
        let banks = (0..BANKS)
            .map(|i| {
                let code = CreditCode::complete(&format!("9144030019220382{i}")).unwrap();
                let party = Party { name: text(&format!("Bank {i}")), credit_code: code.clone() };
                (principal(&format!("bank-{i}"), Role::Bank(code)), party)
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            journal,
            nodes,
            key,
            model: Model::default(),
            clock,
            clock_start: start,
            banks,
            admin: principal("admin", Role::Admin),
            answered: Vec::new(),
            committed: BTreeMap::new(),
            restarts: 0,
            tally: BTreeMap::new(),
        };
        for i in 0..sim.nodes.len() {
            sim.start(i);
        }
        sim
    }

    /// Creates the principals the workload writes as, as the server's bootstrap does (as
    /// `system`): a follower decides every entry again, as its principal at its time.
    async fn bootstrap(&mut self) {
        let system = principal("system", Role::Admin);
        let principals: Vec<Principal> =
            std::iter::once(self.admin.clone()).chain(self.banks.iter().map(|(p, _)| p.clone())).collect();
        for (n, p) in principals.into_iter().enumerate() {
            let command =
                Command::CreatePrincipal { name: p.name.clone(), role: p.role.clone(), token_hash: [n as u8; 32] };
            let sent = Sent { actor: system.clone(), command };
            for attempt in 0.. {
                if attempt == ATTEMPTS_MAX {
                    self.fail(format!("{sent:?}: not created in {ATTEMPTS_MAX} attempts"));
                }
                let answer = self.send(&sent).await;
                let writer = self.writer().await;
                if answer.is_ok() || self.nodes[writer].ledger().principals().by_name(&p.name).is_some() {
                    break;
                }
                self.restart_stopped();
            }
        }
    }

    /// China's date on the simulated clock: what the writer calls today.
    fn today(&self) -> NaiveDate {
        let micros = self.clock.load(Ordering::SeqCst);
        (chrono::DateTime::from_timestamp_micros(micros).unwrap() + chrono::Duration::hours(8)).date_naive()
    }

    /// Time passes between steps: seconds mostly, a whole day now and then (retries and changes
    /// then meet a new "today").
    fn tick(&mut self) {
        let seconds = if self.pick(100) < DAY_JUMP_PERCENT { 86_400 } else { 1 + self.rng.below(60) };
        self.clock.fetch_add(i64::try_from(seconds).unwrap() * 1_000_000, Ordering::SeqCst);
    }

    fn cluster(&self) -> bool {
        self.nodes.len() > 1
    }

    fn start(&mut self, i: usize) {
        // A small checkpoint size: checkpoints happen within a seed's few dozen writes.
        let clock = self.clock.clone();
        let options = Options {
            queue_max: 64,
            checkpoint_bytes: 4 << 10,
            wall_clock: Arc::new(move || clock.load(Ordering::SeqCst)),
        };
        let node = &self.nodes[i];
        let journal: Arc<dyn Journal> = node.journal.clone();
        let store: Arc<dyn Store> = node.store.clone();
        let lease = node.lease.clone().map(|l| l as Arc<dyn WriterLease>);
        // Alone, a node signs heads with a key of its own; a cluster's nodes share theirs.
        let key = if lease.is_some() { self.key.clone() } else { signing::Signer::ephemeral().unwrap() };
        // A start commits too (a layout mark, a rebuild's checkpoints): an injected fault there is
        // a failed start, tried again as a supervisor would.
        let mut last = None;
        for _ in 0..ATTEMPTS_MAX {
            match Ledger::start_node(journal.clone(), store.clone(), key.clone(), options.clone(), lease.clone()) {
                Ok(started) => {
                    self.nodes[i].ledger = Some(started);
                    return;
                }
                Err(e) => last = Some(e),
            }
        }
        self.fail(format!("node {i} does not start: {last:?}"));
    }

    /// Whether a node's writer stopped taking writes (after a failed checkpoint).
    fn stopped(&self) -> bool {
        self.nodes.iter().any(Node::stopped)
    }

    /// Stops node `i` (what it held in memory, uncheckpointed, is gone) and opens it again. A
    /// writer releases its lease as it stops: another node takes over.
    fn restart(&mut self, i: usize) {
        if let Some((ledger, guard)) = self.nodes[i].ledger.take() {
            drop(ledger);
            guard.join();
        }
        self.restarts += 1;
        self.start(i);
    }

    /// The node that writes: of the nodes that believe they write, the one under the greatest
    /// term (one whose lease was taken over believes it until it learns). Waits for one; `None`
    /// when every node stopped (after failed checkpoints: nobody writes until a restart).
    async fn writer_or_none(&self) -> Option<usize> {
        let started = Instant::now();
        loop {
            let writing = self.nodes.iter().enumerate().filter_map(|(i, n)| Some((n.writing()?, i))).max();
            if let Some((_, i)) = writing {
                return Some(i);
            }
            if self.nodes.iter().all(Node::stopped) {
                return None;
            }
            if started.elapsed() > SETTLE_MAX {
                self.fail(format!("no node writes after {SETTLE_MAX:?}: {}", self.cluster_state()));
            }
            tokio::time::sleep(LEASE_TTL / 8).await;
        }
    }

    /// `writer_or_none`, restarting the nodes that stopped first.
    async fn writer(&mut self) -> usize {
        loop {
            self.restart_stopped();
            if let Some(i) = self.writer_or_none().await {
                return i;
            }
        }
    }

    /// Each node's role, head and health, for a failure's message.
    fn cluster_state(&self) -> String {
        let nodes = self.nodes.iter().enumerate().map(|(i, n)| {
            let ledger = n.ledger();
            let role = ledger.role().borrow().clone();
            let (committed, stopped, behind) =
                (*ledger.committed().borrow(), *ledger.writes_stopped().borrow(), *ledger.behind().borrow());
            format!("node {i}: {role:?}, committed {committed}, stopped {stopped}, behind {behind}")
        });
        let head = self.journal.head().map(|h| h.sequence);
        format!("journal head {head:?}; {}", nodes.collect::<Vec<_>>().join("; "))
    }

    /// The greatest term a node writes under now (0: none, or the node alone).
    fn term(&self) -> i64 {
        self.nodes.iter().filter_map(Node::writing).max().unwrap_or(0)
    }

    /// Waits until a node writes under a term greater than `term`: a takeover. A node that
    /// stopped meanwhile (a failed checkpoint) is restarted, as a supervisor would: it may be the
    /// only one left to take over.
    async fn taken_over(&mut self, term: i64) -> usize {
        let started = Instant::now();
        while self.term() <= term {
            if started.elapsed() > SETTLE_MAX {
                self.fail(format!("no takeover of term {term} after {SETTLE_MAX:?}: {}", self.cluster_state()));
            }
            self.restart_stopped();
            tokio::time::sleep(LEASE_TTL / 8).await;
        }
        self.writer().await
    }

    fn fail(&self, what: String) -> ! {
        panic!("seed {} (IPLEDGER_SIM_SEED={} reruns it): {what}\nmodel: {:#?}", self.seed, self.seed, self.model)
    }

    fn pick(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    fn money(fen: i128) -> Money {
        Money::from_fen(fen).unwrap()
    }

    fn registration(&mut self) -> Sent {
        let bank = self.pick(BANKS);
        let county_i = self.pick(COUNTIES.len());
        let mut rights = vec![self.pick(RIGHTS)];
        if self.pick(3) == 0 {
            let other = self.pick(RIGHTS);
            if !rights.contains(&other) {
                rights.push(other);
            }
        }
        let amount_fen = i128::from(1 + self.rng.below(50)) * 1_000_000;
        let region = county(county_i).region();
        let lines: Vec<Uuid> = self
            .model
            .lines
            .iter()
            .filter(|(_, l)| l.bank == bank && l.region.contains(region))
            .map(|(id, _)| *id)
            .collect();
        let line = if !lines.is_empty() && self.pick(2) == 0 { Some(lines[self.pick(lines.len())]) } else { None };
        let registered_on = self.today() - Days::new(self.rng.below(20));
        let pledgor = Party {
            name: text("Widget Co"),
            credit_code: CreditCode::complete(&format!("9133010071610585{}", self.pick(3))).unwrap(),
        };
        let pledge = NewPledge::new(PledgeDraft {
            registration_number: None,
            pledgor,
            co_pledgors: Vec::new(),
            invalidation_pending_accepted: false,
            pledgee: self.banks[bank].1.clone(),
            county: county(county_i),
            secured_amount: Self::money(amount_fen),
            debt_term_start: registered_on,
            debt_term_end: registered_on + Days::new(365),
            registered_on,
            rights: rights.iter().map(|r| Right::new(right_number(*r), text("Mark"), None)).collect(),
            credit_line_id: line,
        })
        .unwrap();
        Sent {
            actor: self.banks[bank].0.clone(),
            command: Command::RegisterPledge { request_id: Uuid::new_v4(), pledge, channel: Channel::Call },
        }
    }

    fn credit_line(&mut self) -> Sent {
        let bank = self.pick(BANKS);
        let region = county(self.pick(COUNTIES.len())).region().parent().unwrap_or(Region::COUNTRY);
        let region = region.parent().unwrap_or(region);
        let limit_fen = i128::from(10 + self.rng.below(100)) * 1_000_000;
        let line = NewCreditLine {
            bank: self.banks[bank].1.clone(),
            region,
            program: text("IP pledge programme"),
            limit: Self::money(limit_fen),
            valid_from: self.today() - Days::new(60),
            valid_to: self.today() + Days::new(365),
        };
        Sent { actor: self.admin.clone(), command: Command::CreateCreditLine { request_id: Uuid::new_v4(), line } }
    }

    /// A change or a release of a pledge the model knows, now and then by the bank that does not
    /// hold it.
    fn amendment(&mut self, release: bool) -> Option<Sent> {
        let ids: Vec<Uuid> = self.model.pledges.keys().copied().collect();
        if ids.is_empty() {
            return None;
        }
        let id = ids[self.pick(ids.len())];
        let owner = self.model.pledges[&id].bank;
        let bank = if self.pick(8) == 0 { (owner + 1) % BANKS } else { owner };
        let actor = self.banks[bank].0.clone();
        let request_id = Uuid::new_v4();
        let command = if release {
            let release = Release { released_on: self.today(), reason: ReleaseReason::Repaid, note: text("repaid") };
            Command::ReleasePledge { request_id, id, release }
        } else {
            let now = self.model.pledges[&id].amount_fen;
            let mut amount_fen = i128::from(1 + self.rng.below(60)) * 1_000_000;
            if amount_fen == now {
                amount_fen += 1_000_000;
            }
            let amendment = PledgeAmendment {
                secured_amount: Some(Self::money(amount_fen)),
                debt_term_end: None,
                reason: text("restructured"),
                effective_on: None,
            };
            Command::ChangePledge { request_id, id, amendment }
        };
        Some(Sent { actor, command })
    }

    /// The reasons the model allows a refusal for in `model` (empty: it must be accepted).
    fn refusals(model: &Model, sent: &Sent) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        match &sent.command {
            Command::RegisterPledge { pledge, .. } => {
                let rights: Vec<usize> = pledge.rights.iter().map(|r| right_index(&r.number)).collect();
                if rights.iter().any(|r| model.held.contains_key(r)) {
                    reasons.push("RIGHT_ALREADY_PLEDGED");
                }
                if let Some(line) = pledge.credit_line_id.map(|id| &model.lines[&id])
                    && line.drawn_fen + pledge.secured_amount.fen() > line.limit_fen
                {
                    reasons.push("CREDIT_LINE_EXHAUSTED");
                }
            }
            Command::ChangePledge { id, amendment, .. } => {
                let p = &model.pledges[id];
                if !matches!(&sent.actor.role, Role::Bank(_)) || sent.actor.name.as_str() != format!("bank-{}", p.bank)
                {
                    reasons.push("PERMISSION_DENIED");
                }
                if !p.active {
                    reasons.push("PLEDGE_ALREADY_RELEASED");
                }
                let to = amendment.secured_amount.unwrap().fen();
                if let Some(line) = p.line.map(|id| &model.lines[&id])
                    && line.drawn_fen - p.amount_fen + to > line.limit_fen
                {
                    reasons.push("CREDIT_LINE_EXHAUSTED");
                }
            }
            Command::ReleasePledge { id, .. } => {
                let p = &model.pledges[id];
                if sent.actor.name.as_str() != format!("bank-{}", p.bank) {
                    reasons.push("PERMISSION_DENIED");
                }
                if !p.active {
                    reasons.push("PLEDGE_ALREADY_RELEASED");
                }
            }
            Command::CreateCreditLine { .. } => {}
            other => unreachable!("the simulation sends no {other:?}"),
        }
        reasons
    }

    /// Applies an accepted write to `model`, checking the answer against it.
    fn accept(&self, model: &mut Model, sent: &Sent, outcome: &Outcome) -> Result<(), String> {
        match (&sent.command, outcome) {
            (Command::RegisterPledge { pledge, .. }, Outcome::Pledge(got, _)) => {
                if got.content != *pledge {
                    return Err(format!("registered {:?}, answered {:?}", pledge, got.content));
                }
                let rights: Vec<usize> = pledge.rights.iter().map(|r| right_index(&r.number)).collect();
                for r in &rights {
                    model.held.insert(*r, got.id);
                }
                if let Some(line) = pledge.credit_line_id {
                    model.lines.get_mut(&line).unwrap().drawn_fen += pledge.secured_amount.fen();
                }
                let bank = self.banks.iter().position(|(_, b)| b.credit_code == pledge.pledgee.credit_code).unwrap();
                let county = COUNTIES.iter().position(|c| *c == pledge.county.to_string()).unwrap();
                let amount_fen = pledge.secured_amount.fen();
                let line = pledge.credit_line_id;
                model.pledges.insert(got.id, ModelPledge { bank, county, amount_fen, rights, active: true, line });
            }
            (Command::ChangePledge { id, amendment, .. }, Outcome::Pledge(got, _)) => {
                let to = amendment.secured_amount.unwrap().fen();
                if got.id != *id || got.content.secured_amount.fen() != to {
                    return Err(format!("changed {id} to {to} fen, answered {got:?}"));
                }
                let p = model.pledges.get_mut(id).unwrap();
                if let Some(line) = p.line {
                    model.lines.get_mut(&line).unwrap().drawn_fen += to - p.amount_fen;
                }
                p.amount_fen = to;
            }
            (Command::ReleasePledge { id, .. }, Outcome::Pledge(got, _)) => {
                if got.id != *id || got.release.is_none() {
                    return Err(format!("released {id}, answered {got:?}"));
                }
                let p = model.pledges.get_mut(id).unwrap();
                p.active = false;
                for r in &p.rights {
                    model.held.remove(r);
                }
                if let Some(line) = p.line {
                    model.lines.get_mut(&line).unwrap().drawn_fen -= p.amount_fen;
                }
            }
            (Command::CreateCreditLine { line, .. }, Outcome::CreditLine(got)) => {
                if got.content != *line || got.drawn != Money::ZERO {
                    return Err(format!("created {line:?}, answered {got:?}"));
                }
                let bank = self.banks.iter().position(|(_, b)| b.credit_code == line.bank.credit_code).unwrap();
                let region = line.region;
                model.lines.insert(got.id, ModelLine { bank, region, limit_fen: line.limit.fen(), drawn_fen: 0 });
            }
            (command, outcome) => return Err(format!("{command:?} answered with {outcome:?}")),
        }
        Ok(())
    }

    /// Sends one write to the node that writes, retrying with the same request id while the
    /// journal's faults or a takeover leave its outcome open, as a bank's client does; returns the
    /// settled answer.
    async fn send(&self, sent: &Sent) -> Result<(Outcome, bool, u64), LedgerError> {
        // The last answer said nothing was written, and no earlier one left it open.
        let mut not_written = false;
        let mut maybe_written = false;
        let mut attempts = 0;
        let started = Instant::now();
        while attempts < ATTEMPTS_MAX && started.elapsed() < SETTLE_MAX {
            // Every node stopped: refused, nothing written, as a node alone that stopped refuses.
            let Some(node) = self.writer_or_none().await else {
                return Err(LedgerError::Unavailable("every node stopped writing".to_owned()));
            };
            match self.nodes[node].ledger().write(&sent.actor, sent.command.clone()).await {
                // A stopped writer refuses every write, writing nothing: settled until a restart.
                Err(e @ LedgerError::Unavailable(_)) if self.stopped() => return Err(e),
                // A follower, or a writer that just learnt it lost its lease (its append fenced):
                // nothing written. Not a fault: tried again once the cluster settles.
                Err(LedgerError::NotWriter { .. }) => {
                    not_written = true;
                    tokio::time::sleep(LEASE_TTL / 8).await;
                }
                Err(e @ (LedgerError::Unavailable(_) | LedgerError::OutcomeUnknown(_))) => {
                    // A refused append wrote nothing: a retry must not find it written.
                    not_written = matches!(e, LedgerError::Unavailable(_));
                    maybe_written |= !not_written;
                    attempts += 1;
                }
                Ok((_, true, _)) if not_written && !maybe_written => {
                    self.fail(format!("{sent:?}: answered that nothing was written, then its retry found it written"))
                }
                other => return other,
            }
        }
        self.fail(format!("{sent:?}: no settled answer in {attempts} attempts, {:?}", started.elapsed()))
    }

    /// One write, checked against the model.
    async fn write(&mut self, sent: Sent) {
        let predicted = Self::refusals(&self.model, &sent);
        match self.send(&sent).await {
            Ok((outcome, replayed, _)) => {
                if replayed {
                    self.fail(format!("{sent:?}: a first request answered as a replay"));
                }
                if !predicted.is_empty() {
                    self.fail(format!("{sent:?}: accepted, the model refuses it for {predicted:?}"));
                }
                let mut model = self.model.clone();
                if let Err(why) = self.accept(&mut model, &sent, &outcome) {
                    self.fail(why);
                }
                self.model = model;
                self.committed.insert(request_id(&sent.command), sent.command.clone());
                self.answered.push(sent);
                *self.tally.entry("ACCEPTED").or_default() += 1;
            }
            Err(e) if predicted.contains(&e.reason()) => {
                *self.tally.entry(e.reason()).or_default() += 1;
                self.answered.push(sent);
            }
            // Refused by a writer stopped after a failed checkpoint: nothing written (a retry after
            // the restart must find its id uncommitted: `retry` checks the journal).
            Err(LedgerError::Unavailable(_)) if self.stopped() => {
                *self.tally.entry("WRITER_STOPPED").or_default() += 1;
                self.answered.push(sent);
            }
            Err(e) => self.fail(format!("{sent:?}: refused {} ({e}); the model allows {predicted:?}", e.reason())),
        }
    }

    /// A retry of an answered request, now and then with other content under the same id: the
    /// content its id committed replays the answer, other content is refused, and an id that
    /// committed nothing (its request was refused) is decided afresh. The journal must agree
    /// with the auditor on which ids committed.
    async fn retry(&mut self) {
        if self.answered.is_empty() {
            return;
        }
        let i = self.pick(self.answered.len());
        let mut sent = self.answered[i].clone();
        if self.pick(3) == 0
            && let Command::RegisterPledge { pledge, .. } = &mut sent.command
        {
            pledge.secured_amount = Self::money(pledge.secured_amount.fen() + 100 * i128::from(1 + self.rng.below(99)));
        }
        let id = request_id(&sent.command);
        let committed = self.committed.get(&id).cloned();
        if self.journal_has_request(id).await != committed.is_some() {
            self.fail(format!("request {id}: the journal and the auditor disagree on whether it committed"));
        }
        let Some(committed) = committed else {
            self.write(sent).await;
            return;
        };
        let same = format!("{committed:?}") == format!("{:?}", sent.command);
        match self.send(&sent).await {
            Ok((_, true, _)) if same => *self.tally.entry("REPLAYED").or_default() += 1,
            Err(e) if !same && e.reason() == "REQUEST_ID_REUSED" => {
                *self.tally.entry("REQUEST_ID_REUSED").or_default() += 1
            }
            // A writer stopped after a failed checkpoint refuses the retry too; after the restart
            // the id is found committed, as the journal says.
            Err(LedgerError::Unavailable(_)) if self.stopped() => {}
            other => self.fail(format!("{sent:?}: retried (same content: {same}), answered {other:?}")),
        }
    }

    /// Whether the journal holds an entry for `request_id`.
    async fn journal_has_request(&self, request_id: Uuid) -> bool {
        self.journal_requests().await.contains(&request_id)
    }

    /// The request ids of every entry in the journal; every entry must be dated by the simulated
    /// clock (from its start to now, and the few µs a group's entries add to keep times increasing).
    async fn journal_requests(&self) -> BTreeSet<Uuid> {
        let journal = self.journal.node();
        let entries = tokio::task::spawn_blocking(move || {
            let head = journal.head().unwrap().sequence;
            query::journal_entries(&journal, 1, head, usize::MAX).unwrap()
        })
        .await
        .unwrap();
        let now = self.clock.load(Ordering::SeqCst);
        let bound = now + i64::try_from(entries.len()).unwrap();
        if let Some(e) = entries.iter().find(|e| e.at < self.clock_start || e.at > bound) {
            self.fail(format!(
                "entry {} dated {} outside the simulated clock's {}..={bound}",
                e.sequence, e.at, self.clock_start
            ));
        }
        entries.iter().filter_map(|e| e.request.as_ref().map(|r| r.id)).collect()
    }

    /// Registrations sent at once, racing for rights: checked against the journal's order.
    async fn burst(&mut self) {
        let n = 2 + self.pick(4);
        let sent: Vec<Sent> = (0..n).map(|_| self.registration()).collect();
        let answers = futures::future::join_all(sent.iter().map(|s| self.send(s))).await;
        let mut accepted: Vec<(u64, &Sent, Outcome)> = Vec::new();
        let mut refused = Vec::new();
        for (s, answer) in sent.iter().zip(answers) {
            match answer {
                Ok((outcome, false, sequence)) => accepted.push((sequence, s, outcome)),
                Ok(other) => self.fail(format!("{s:?}: a first request answered {other:?}")),
                Err(e) => refused.push((s, e)),
            }
        }
        accepted.sort_by_key(|(sequence, _, _)| *sequence);
        let before = self.model.clone();
        let mut model = self.model.clone();
        for (_, s, outcome) in &accepted {
            let predicted = Self::refusals(&model, s);
            if !predicted.is_empty() {
                self.fail(format!(
                    "{s:?}: accepted in a burst, the model in the journal's order refuses {predicted:?}"
                ));
            }
            if let Err(why) = self.accept(&mut model, s, outcome) {
                self.fail(why);
            }
            self.committed.insert(request_id(&s.command), s.command.clone());
        }
        // A refusal in a burst is justified by the state before it or by what the burst accepted,
        // or by a writer stopped after a failed checkpoint (nothing written).
        for (s, e) in refused {
            let stopped = matches!(e, LedgerError::Unavailable(_)) && self.stopped();
            let justified = stopped
                || Self::refusals(&before, s).contains(&e.reason())
                || Self::refusals(&model, s).contains(&e.reason());
            if !justified {
                self.fail(format!("{s:?}: refused {} in a burst, justified by no order ({e})", e.reason()));
            }
            *self.tally.entry(e.reason()).or_default() += 1;
        }
        self.model = model;
        self.answered.extend(sent);
    }

    /// Every read the model can check (pledges, rights, credit lines, exposure rows) on node `i`,
    /// once it caught up with the journal's head (a follower, or a writer that just took over). A
    /// node whose writer stopped (a failed checkpoint) follows no more: it is restarted first, as
    /// a supervisor would.
    async fn audit(&mut self, i: usize) {
        let head = self.journal.head().unwrap().sequence;
        let started = Instant::now();
        loop {
            if self.nodes[i].stopped() {
                self.restart(i);
            }
            match self.nodes[i].ledger().wait_for(head, LEASE_TTL).await {
                Ok(()) => break,
                Err(e) if started.elapsed() > SETTLE_MAX => self.fail(format!(
                    "node {i} did not catch up with the journal's head {head}: {e}; {}",
                    self.cluster_state()
                )),
                Err(_) => {}
            }
        }
        let ledger = self.nodes[i].ledger();
        let model = self.model.clone();
        let checked = ledger
            .read(move |store| Ok(audit_reads(store, &model)))
            .await
            .unwrap_or_else(|e| self.fail(format!("an audit read of node {i} failed: {e}")));
        if let Err(why) = checked {
            self.fail(format!("node {i}: {why}"));
        }
    }

    /// `verify` on node `i`: derived state equals a rebuild from the journal. A checkpoint that
    /// failed makes it unavailable (it compares at a checkpoint); then the node restarts and it
    /// runs again.
    async fn verify(&mut self, i: usize) {
        for _ in 0..ATTEMPTS_MAX {
            let node = &self.nodes[i];
            match node.ledger().verify(Arc::new(MemoryStore::default())).await {
                Ok(r) if r.divergence.is_none() => return,
                Err(LedgerError::Unavailable(_)) if node.store.injected.load(Ordering::Relaxed) > 0 => self.restart(i),
                other => self.fail(format!("verify of node {i}: {other:?}")),
            }
        }
        self.fail(format!("verify of node {i}: unavailable {ATTEMPTS_MAX} times"))
    }

    /// The writer's lease expires (its holder paused, or was cut off from the lease, for longer
    /// than the lease): a node takes over under a new term, the old writer among the candidates,
    /// after catching up with the journal. Every acknowledged write must still be read there.
    async fn lease_expires(&mut self) {
        let term = self.term();
        self.journal.advance_clock(LEASE_TTL + Duration::from_millis(1));
        let writer = self.taken_over(term).await;
        *self.tally.entry("LEASE_EXPIRED").or_default() += 1;
        self.audit(writer).await;
    }

    /// The writer's lease thread pauses (the node's writer thread goes on) past the lease: another
    /// node takes over; the paused writer still believes it writes under its old term, and a write
    /// sent to it must not be written, whatever it answers (the journal fences its append). Then it
    /// resumes, learns it lost the lease, and follows.
    async fn stale_writer(&mut self) {
        let sent = self.registration();
        let victim = self.writer().await;
        let Some(old) = self.nodes[victim].writing() else { unreachable!("the writer writes") };
        let lease = self.nodes[victim].lease.clone().expect("a cluster's node has a lease");
        lease.pause(true);
        self.journal.advance_clock(LEASE_TTL + Duration::from_millis(1));
        let writer = self.taken_over(old).await;
        assert_ne!(writer, victim, "seed {}: the paused node took over", self.seed);
        let answer = self.nodes[victim].ledger().write(&sent.actor, sent.command.clone()).await;
        let id = request_id(&sent.command);
        match &answer {
            Err(LedgerError::NotWriter { .. } | LedgerError::Unavailable(_) | LedgerError::OutcomeUnknown(_)) => {}
            // Refused by the rules before any append (the model refuses it too): nothing written.
            Err(e) if Self::refusals(&self.model, &sent).contains(&e.reason()) => {}
            other => self.fail(format!(
                "{sent:?}: sent to node {victim}, whose term {old} was taken over by node {writer}, answered {other:?}"
            )),
        }
        // Whatever the answer (an unknown outcome too), the journal does not have it.
        if self.journal_has_request(id).await {
            self.fail(format!("{sent:?}: written by node {victim} under term {old}, which was taken over"))
        }
        lease.pause(false);
        *self.tally.entry("STALE_WRITER_REFUSED").or_default() += 1;
        self.answered.push(sent);
        let started = Instant::now();
        while self.nodes[victim].writing() == Some(old) {
            if started.elapsed() > SETTLE_MAX {
                self.fail(format!("node {victim} never learnt that its term {old} was taken over"));
            }
            tokio::time::sleep(LEASE_TTL / 8).await;
        }
    }

    /// A follower is cut off from the journal while the writer writes: it stays where it was;
    /// once reconnected it catches up, and its reads equal the model.
    async fn follower_cut_off(&mut self) {
        let i = self.pick(self.nodes.len());
        let sent = self.registration();
        // Settled first: a node that is about to take the lease is no follower.
        if self.writer().await == i {
            return;
        }
        // Caught up first: no read it made before the cut has anything left to apply.
        self.audit(i).await;
        let journal = self.nodes[i].journal.clone();
        journal.cut.store(true, Ordering::SeqCst);
        let at = *self.nodes[i].ledger().committed().borrow();
        self.write(sent).await;
        // A follower that reads nothing applies nothing (it may have been behind already). Unless
        // it took the lease meanwhile (its writer stopped after a failed checkpoint): it appended.
        let still = *self.nodes[i].ledger().committed().borrow();
        let wrote = self.nodes[i].writing().is_some();
        journal.cut.store(false, Ordering::SeqCst);
        if still != at && !wrote {
            self.fail(format!("node {i} applied entries {at}..{still} while cut off from the journal"));
        }
        *self.tally.entry("FOLLOWER_CUT_OFF").or_default() += 1;
        self.audit(i).await;
    }

    /// A step of a cluster's own: the lease lost, a stale writer fenced, a follower cut off, a node
    /// restarted.
    async fn cluster_event(&mut self) {
        match self.pick(4) {
            0 => self.lease_expires().await,
            1 => self.stale_writer().await,
            2 => self.follower_cut_off().await,
            _ => {
                let i = self.pick(self.nodes.len());
                self.restart(i);
                *self.tally.entry("NODE_RESTARTED").or_default() += 1;
            }
        }
    }

    /// Restarts the nodes whose writer stopped (after a failed checkpoint), as a supervisor would.
    fn restart_stopped(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].stopped() {
                self.restart(i);
            }
        }
    }

    /// After a step: the writer's reads, and now and then (as the seed says: an audit is most of
    /// a step's time) those of a follower, caught up first.
    async fn audit_step(&mut self) {
        let writer = self.writer().await;
        self.audit(writer).await;
        if self.cluster() {
            let i = self.pick(self.nodes.len() * FOLLOWER_AUDIT_EVERY);
            if i < self.nodes.len() && i != writer {
                self.audit(i).await;
            }
        }
    }

    /// The journal holds exactly the requests the auditor saw committed: none acknowledged was
    /// lost (through takeovers, restarts, faults), and none it was told went unwritten is there.
    async fn check_journal(&self) {
        let written = self.journal_requests().await;
        let committed: BTreeSet<Uuid> = self.committed.keys().copied().collect();
        if written != committed {
            let lost: Vec<_> = committed.difference(&written).collect();
            let extra: Vec<_> = written.difference(&committed).collect();
            self.fail(format!("the journal lacks committed requests {lost:?} and holds uncommitted ones {extra:?}"));
        }
    }

    // Longer than ~70 lines: the step table and the end of a seed; one loop.
    async fn run(mut self) -> (u64, u32, BTreeMap<&'static str, u64>) {
        self.bootstrap().await;
        let steps = if self.cluster() { STEPS_CLUSTER } else { STEPS };
        for _ in 0..steps {
            self.tick();
            if self.cluster() && self.pick(100) < CLUSTER_EVENTS_PERCENT {
                self.cluster_event().await;
            } else {
                match self.pick(100) {
                    0..=39 => {
                        let sent = self.registration();
                        self.write(sent).await;
                    }
                    40..=51 => {
                        if let Some(sent) = self.amendment(false) {
                            self.write(sent).await;
                        }
                    }
                    52..=61 => {
                        if let Some(sent) = self.amendment(true) {
                            self.write(sent).await;
                        }
                    }
                    62..=69 => {
                        let sent = self.credit_line();
                        self.write(sent).await;
                    }
                    70..=81 => self.retry().await,
                    82..=91 => self.burst().await,
                    92..=96 => {
                        let i = self.pick(self.nodes.len());
                        self.restart(i);
                    }
                    _ => {
                        let i = self.pick(self.nodes.len());
                        self.verify(i).await;
                    }
                }
            }
            self.restart_stopped();
            self.audit_step().await;
        }
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        for i in 0..self.nodes.len() {
            self.audit(i).await;
            self.verify(i).await;
        }
        self.check_journal().await;
        let injected = self
            .nodes
            .iter()
            .map(|n| n.journal.injected.load(Ordering::Relaxed) + n.store.injected.load(Ordering::Relaxed))
            .sum();
        let fenced = self.nodes.iter().map(|n| n.journal.fenced.load(Ordering::Relaxed)).sum::<u64>();
        if fenced > 0 {
            *self.tally.entry("APPEND_FENCED").or_default() += fenced;
        }
        *self.tally.entry(["ALONE", "CLUSTER_OF_2", "CLUSTER_OF_3"][self.nodes.len() - 1]).or_default() += 1;
        for node in &mut self.nodes {
            if let Some((ledger, guard)) = node.ledger.take() {
                drop(ledger);
                guard.join();
            }
        }
        (injected, self.restarts, self.tally)
    }
}

fn request_id(command: &Command) -> Uuid {
    match command {
        Command::RegisterPledge { request_id, .. }
        | Command::ChangePledge { request_id, .. }
        | Command::ReleasePledge { request_id, .. }
        | Command::CreateCreditLine { request_id, .. } => *request_id,
        other => unreachable!("the simulation sends no {other:?}"),
    }
}

fn right_index(number: &RightNumber) -> usize {
    number.as_str().parse::<usize>().unwrap() - 30_000_000
}

fn audit_reads(store: &dyn Store, model: &Model) -> Result<(), String> {
    for (id, p) in &model.pledges {
        let got = query::pledge(store, *id).map_err(|e| format!("pledge {id}: {e}"))?;
        if got.release.is_none() != p.active || got.content.secured_amount.fen() != p.amount_fen {
            return Err(format!("pledge {id}: read {got:?}, the model holds {p:?}"));
        }
    }
    for r in 0..RIGHTS {
        let got = query::active_pledge_of(store, &right_number(r)).map_err(|e| e.to_string())?.map(|p| p.id);
        if got != model.held.get(&r).copied() {
            return Err(format!("right {r}: active pledge {got:?}, the model says {:?}", model.held.get(&r)));
        }
    }
    for (id, l) in &model.lines {
        let got = query::credit_line(store, *id).map_err(|e| e.to_string())?;
        if got.drawn.fen() != l.drawn_fen {
            return Err(format!("credit line {id}: drawn {}, the model says {} fen", got.drawn, l.drawn_fen));
        }
    }
    let row = |region: Region| {
        query::exposure_row(store, &Bucket { region, dimension: Dimension::Total }).map_err(|e| e.to_string())
    };
    let active = |p: &&ModelPledge| p.active;
    let country = row(Region::COUNTRY)?;
    let secured: i128 = model.pledges.values().filter(active).map(|p| p.amount_fen).sum();
    let count = model.pledges.values().filter(active).count() as u64;
    let limit: i128 = model.lines.values().map(|l| l.limit_fen).sum();
    let drawn: i128 = model.lines.values().map(|l| l.drawn_fen).sum();
    let expected = (secured, count, limit, drawn);
    let got =
        (country.secured_amount.fen(), country.pledge_count, country.credit_limit.fen(), country.credit_drawn.fen());
    if got != expected {
        return Err(format!(
            "the country's row (secured, pledges, limit, drawn): {got:?}, the model says {expected:?}"
        ));
    }
    for (i, code) in COUNTIES.iter().enumerate() {
        let r = row(county(i).region())?;
        let mine = || model.pledges.values().filter(active).filter(|p| p.county == i);
        let expected = (mine().map(|p| p.amount_fen).sum::<i128>(), mine().count() as u64);
        if (r.secured_amount.fen(), r.pledge_count) != expected {
            return Err(format!(
                "county {code}: ({}, {}), the model says {expected:?}",
                r.secured_amount, r.pledge_count
            ));
        }
    }
    Ok(())
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("IPLEDGER_SIM_SEED") {
        return vec![seed.parse().expect("IPLEDGER_SIM_SEED: a number")];
    }
    let n =
        std::env::var("IPLEDGER_SIM_SEEDS").map_or(SEEDS_DEFAULT, |n| n.parse().expect("IPLEDGER_SIM_SEEDS: a number"));
    // Seeds from a base that changes every run unless given, printed so that any one is replayable.
    let base = std::env::var("IPLEDGER_SIM_BASE").map_or_else(
        |_| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        |b| b.parse().expect("IPLEDGER_SIM_BASE: a number"),
    );
    (0..n).map(|i| base.wrapping_mul(1_000_003).wrapping_add(i)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_agrees_with_the_auditor_over_seeded_workloads_with_storage_faults_restarts_and_takeovers() {
    let seeds = seeds();
    let started = std::time::Instant::now();
    let (mut faults, mut restarts) = (0, 0);
    let mut tally: BTreeMap<&'static str, u64> = BTreeMap::new();
    for seed in &seeds {
        let (injected, restarted, answers) = Sim::new(*seed).run().await;
        faults += injected;
        restarts += u64::from(restarted);
        for (kind, n) in answers {
            *tally.entry(kind).or_default() += n;
        }
    }
    println!(
        "simulated {} seeds ({}..) in {:.1?}: {faults} faults injected (journal appends, derived-state commits), {restarts} restarts; answers {tally:?}",
        seeds.len(),
        seeds[0],
        started.elapsed()
    );
    // Enough seeds exercise every answer the auditor knows: a workload that drifted away from
    // one (a rule it no longer reaches) fails here, not silently.
    if seeds.len() >= 100 {
        assert!(faults > 0, "the faults were never injected");
        let known = [
            "ACCEPTED",
            "REPLAYED",
            "REQUEST_ID_REUSED",
            "RIGHT_ALREADY_PLEDGED",
            "CREDIT_LINE_EXHAUSTED",
            "PERMISSION_DENIED",
            "PLEDGE_ALREADY_RELEASED",
            // The cluster's events, and the fence refusing a stale writer's append.
            "ALONE",
            "CLUSTER_OF_2",
            "CLUSTER_OF_3",
            "LEASE_EXPIRED",
            "STALE_WRITER_REFUSED",
            "APPEND_FENCED",
            "FOLLOWER_CUT_OFF",
            "NODE_RESTARTED",
        ];
        for kind in known {
            assert!(tally.get(kind).is_some_and(|n| *n > 0), "no {kind} in {} seeds: {tally:?}", seeds.len());
        }
    }
}
