//! Which node writes. With the embedded journal this node always does. With the journal in
//! PostgreSQL (or the memory journal a simulated cluster shares), one node at a time holds the
//! writer's lease (`journal::lease::WriterLease`): a thread here renews it while this node writes
//! and, while another node writes, watches for the lease to expire and takes it over. The writer
//! thread follows the role: it appends under the held term, or applies the journal's new entries
//! as a follower.
//!
//! The lease decides who should write; it is not what keeps two writers apart. Every append checks
//! the term inside its own transaction (`PostgresJournal::append`; `MemoryJournal::append` under
//! the lock the lease takes too), so a writer that lost the lease without noticing (a pause, a
//! partition) has its next append refused, whatever the clocks say.

use super::journal::JournalError;
use super::journal::lease::{Term, WriterLease};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;
use tokio::sync::watch;

/// What this node does: write, or follow another node (not a principal's `Role`, which says
/// what a caller may do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRole {
    /// This node appends, under this lease term (0: the embedded journal, no lease).
    Writer { term: i64 },
    /// Another node appends (named by its advertised address when known); this one applies the
    /// journal's entries into its derived state and serves reads.
    Follower { writer: Option<String> },
}

impl NodeRole {
    pub fn is_writer(&self) -> bool {
        matches!(self, NodeRole::Writer { .. })
    }
}

/// What the writer thread asks of the lease thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Give the term up: an append was fenced, or its outcome could not be learnt. Another node
    /// (or this one, later, under a new term) takes over after catching up from the journal.
    StepDown,
    /// The writer stopped (shutdown, or a failure that stops writes): release the lease and end.
    Stop,
}

/// Runs the lease for this node until the writer thread says `Stop` (or is gone). `role` is what
/// the writer thread and the health service follow; `wake` reaches the writer thread when it
/// waits for a write, so that it notices a lost lease at once (the writer passes a closure over a
/// weak sender of its queue: it must not keep the queue open at shutdown, and this module need not
/// know the writer's types).
// Longer than ~70 lines: the lease thread's loop: renew while writing, compete while following,
// step down on request; one state machine.
pub(crate) fn run_lease(
    lease: Arc<dyn WriterLease>,
    role: watch::Sender<NodeRole>,
    requests: Receiver<Request>,
    wake: impl Fn(),
) {
    let ttl = lease.ttl();
    // Renew well inside the expiry: three renewals may fail before the lease lapses.
    let period = ttl / 4;
    let mut renewed_at = Instant::now();
    let mut compete_after = Instant::now();
    let mut last_error: Option<String> = None;
    let set = |next: NodeRole| {
        let changed = role.send_if_modified(|current| {
            let changed = *current != next;
            *current = next.clone();
            changed
        });
        if changed {
            tracing::warn!(role = ?next, node = lease.node(), "role changed");
            wake();
        }
    };
    // Compete at once: a node alone (or the first) writes without waiting a period.
    loop {
        let current = role.borrow().clone();
        let result = match current {
            NodeRole::Writer { term } => renew(lease.as_ref(), term, &mut renewed_at).map(|lost| {
                if lost {
                    set(NodeRole::Follower { writer: None });
                }
            }),
            NodeRole::Follower { .. } if Instant::now() < compete_after => Ok(()),
            NodeRole::Follower { .. } => compete(lease.as_ref()).map(|(next, acquired)| {
                if acquired {
                    renewed_at = Instant::now();
                }
                set(next);
            }),
        };
        match result {
            Ok(()) => last_error = None,
            Err(e) => {
                let message = e.to_string();
                // One line per distinct failure, not one per period.
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::warn!(error = %message, "the writer's lease is unreachable");
                    last_error = Some(message);
                }
                // A writer that cannot renew for a whole lease must assume another took over.
                if role.borrow().is_writer() && renewed_at.elapsed() >= ttl * 3 / 4 {
                    set(NodeRole::Follower { writer: None });
                }
            }
        }
        match requests.recv_timeout(period) {
            Ok(Request::StepDown) => {
                // Follow first: the writer stops at once, however long the release below takes
                // (it waits on the database, bounded by the session's lock timeout and keepalives).
                let stepped_down = role.borrow().clone();
                set(NodeRole::Follower { writer: None });
                if let NodeRole::Writer { term } = stepped_down {
                    let _ = lease.release(Term(term));
                }
                // Leave the lease to the others for one lease before competing again.
                compete_after = Instant::now() + ttl;
            }
            Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => {
                if let NodeRole::Writer { term } = *role.borrow()
                    && let Err(e) = lease.release(Term(term))
                {
                    tracing::warn!(error = %e, "could not release the writer's lease: it expires on its own");
                }
                set(NodeRole::Follower { writer: None });
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Renews `term`; `Ok(true)` when the lease turned out to be lost.
fn renew(lease: &dyn WriterLease, term: i64, renewed_at: &mut Instant) -> Result<bool, JournalError> {
    if lease.renew(Term(term))? {
        *renewed_at = Instant::now();
        return Ok(false);
    }
    tracing::warn!(term, "the writer's lease was taken over: this node follows the journal");
    Ok(true)
}

/// A follower's turn: learn who writes, or take the lease when nobody holds it. Returns the role
/// and whether it was just acquired.
fn compete(lease: &dyn WriterLease) -> Result<(NodeRole, bool), JournalError> {
    if let Some((holder, _)) = lease.holder()? {
        return Ok((NodeRole::Follower { writer: Some(holder) }, false));
    }
    Ok(match lease.acquire()? {
        Some(Term(term)) => {
            tracing::warn!(term, node = lease.node(), "took the writer's lease: catching up, then writing");
            (NodeRole::Writer { term }, true)
        }
        None => (NodeRole::Follower { writer: None }, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::{Principal, PrincipalName, Role as Access};
    use crate::ledger::journal::lease::Lease;
    use crate::ledger::journal::{Access as Io, Guarded, Journal, PostgresJournal};
    use crate::ledger::{Command, Ledger, Options, signing::Signer};
    use crate::store::MemoryStore;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn node(url: &str, name: &str) -> (Ledger, crate::ledger::WriterGuard) {
        tokio::task::block_in_place(|| node_blocking(url, name))
    }

    fn node_blocking(url: &str, name: &str) -> (Ledger, crate::ledger::WriterGuard) {
        node_cut(url, name, Arc::default())
    }

    /// A node whose reads of the journal fail while `cut` is set (its lease is untouched): a
    /// follower cut off from the journal, as by a broken route to PostgreSQL's reader.
    fn node_cut(url: &str, name: &str, cut: Arc<AtomicBool>) -> (Ledger, crate::ledger::WriterGuard) {
        let journal = PostgresJournal::connect(url).unwrap().sign_groups_with(Arc::new(cluster_key()));
        let lease = Lease::connect(url, name, Duration::from_millis(1000), journal.term()).unwrap();
        let lease: Arc<dyn WriterLease> = Arc::new(lease);
        let store = Arc::new(MemoryStore::default());
        let guard = move |access: Io| match access {
            Io::Read | Io::Head if cut.load(Ordering::SeqCst) => {
                Err(JournalError::Unavailable("cut off from the journal".to_owned()))
            }
            _ => Ok(()),
        };
        Ledger::start_node(
            Arc::new(Guarded::new(Arc::new(journal), guard)),
            store,
            cluster_key(),
            Options::small(),
            Some(lease),
        )
        .unwrap()
    }

    /// The key every node of the tests' clusters shares, as `--signing-key` gives it.
    fn cluster_key() -> Signer {
        static KEY: std::sync::OnceLock<Signer> = std::sync::OnceLock::new();
        KEY.get_or_init(|| Signer::ephemeral().unwrap()).clone()
    }

    /// The name the server bootstraps the first admin under: followers decide every entry again,
    /// so the tests write as a principal the journal knows.
    fn admin() -> Principal {
        Principal {
            name: PrincipalName::parse("system").unwrap(),
            role: Access::Admin,
            create_time: 0,
            revoke_time: None,
        }
    }

    fn create(n: u8) -> Command {
        let name = PrincipalName::parse(&format!("bank-{n}")).unwrap();
        Command::CreatePrincipal { name, role: Access::Admin, token_hash: [n; 32] }
    }

    async fn until(ledger: &Ledger, check: impl Fn(&NodeRole) -> bool) {
        let mut role = ledger.role();
        tokio::time::timeout(Duration::from_secs(10), role.wait_for(check)).await.expect("role in time").unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_node_writes_others_follow_a_stale_writer_is_fenced_and_a_stopped_writer_hands_over_at_once() {
        let cluster = crate::ledger::journal::postgres::cluster::Cluster::start();
        let (a, a_writer) = node(&cluster.url, "a:1");
        until(&a, NodeRole::is_writer).await;
        let (b, b_writer) = node(&cluster.url, "b:1");
        until(&b, |r| *r == NodeRole::Follower { writer: Some("a:1".to_owned()) }).await;

        // Writes go to the writer; a follower names it, and applies what it wrote.
        let (_, _, sequence) = a.write(&admin(), create(1)).await.unwrap();
        let refused = b.write(&admin(), create(2)).await.unwrap_err();
        assert_eq!(refused, crate::domain::LedgerError::NotWriter { writer: Some("a:1".to_owned()) });
        b.wait_for(sequence, Duration::from_secs(5)).await.unwrap();
        let bank = PrincipalName::parse("bank-1").unwrap();
        assert!(b.principals().by_name(&bank).is_some(), "the follower authenticates principals it followed");

        // The lease is taken from a behind its back (as after a pause longer than the lease): b
        // takes over, and a's next append is refused by the term, whatever a believes.
        let sql = |statement: &'static str| {
            tokio::task::block_in_place(|| {
                let mut client = postgres::Client::connect(&cluster.url, postgres::NoTls).unwrap();
                client.query(statement, &[]).unwrap()
            })
        };
        sql("UPDATE ipledger_lease SET expires_at = 'epoch' RETURNING term");
        until(&b, NodeRole::is_writer).await;
        let stale = a.write(&admin(), create(3)).await.unwrap_err();
        assert!(matches!(stale, crate::domain::LedgerError::NotWriter { .. }), "{stale:?}");
        let (_, _, sequence) = b.write(&admin(), create(4)).await.unwrap();
        until(&a, |r| *r == NodeRole::Follower { writer: Some("b:1".to_owned()) }).await;
        a.wait_for(sequence, Duration::from_secs(5)).await.unwrap();
        let rows: i64 = sql("SELECT count(*) FROM ipledger_journal")[0].get(0);
        assert_eq!(rows as u64, sequence, "the fenced write is not in the journal");

        // A writer that stops releases the lease: the other node writes without waiting for it
        // to expire.
        drop(b);
        tokio::task::spawn_blocking(move || b_writer.join()).await.unwrap();
        let stopped = std::time::Instant::now();
        until(&a, NodeRole::is_writer).await;
        assert!(stopped.elapsed() < Duration::from_millis(1000), "{:?}", stopped.elapsed());
        let (_, _, after) = a.write(&admin(), create(5)).await.unwrap();
        assert_eq!(after, sequence + 1);
        drop(a);
        tokio::task::spawn_blocking(move || a_writer.join()).await.unwrap();
    }

    /// A row that links to the head, inserted by whoever holds a database credential: `by`
    /// creates an admin named `evil`, its group signed by `signer` (none: unsigned). Returns its
    /// sequence.
    fn insert_forged_admin(url: &str, by: &str, signer: Option<Signer>) -> u64 {
        use crate::ledger::journal::{Event, format, read_one};
        use crate::ledger::principals::PrincipalRecord;
        tokio::task::block_in_place(|| {
            let mut journal = PostgresJournal::connect(url).unwrap();
            if let Some(signer) = signer {
                journal = journal.sign_groups_with(Arc::new(signer));
            }
            let head = journal.head().unwrap();
            let at = read_one(&journal, head.sequence).unwrap().unwrap().decode().unwrap().at + 1;
            let evil = Principal {
                name: PrincipalName::parse("evil").unwrap(),
                role: Access::Admin,
                create_time: at,
                revoke_time: None,
            };
            let event = Event::PrincipalCreated { record: PrincipalRecord { principal: evil, token_hash: [6; 32] } };
            let (_, stored) =
                format::seal(head.sequence + 1, head.hash, at, &PrincipalName::parse(by).unwrap(), None, event);
            journal.append(head, std::slice::from_ref(&stored)).unwrap();
            stored.sequence
        })
    }

    async fn until_stopped(ledger: &Ledger) {
        let mut stopped = ledger.writes_stopped();
        tokio::time::timeout(Duration::from_secs(10), stopped.wait_for(|s| *s))
            .await
            .expect("health says NOT_SERVING in time")
            .unwrap();
    }

    /// A row inserted with SQL as `by`, its group signed by `signer`: no node applies it, the
    /// follower and the writer stop, and a node that starts on the journal refuses to start,
    /// with `reason`.
    async fn a_forged_row_is_applied_by_no_node(by: &str, signer: Option<Signer>, reason: &str) {
        let cluster = crate::ledger::journal::postgres::cluster::Cluster::start();
        let (a, a_writer) = node(&cluster.url, "a:1");
        until(&a, NodeRole::is_writer).await;
        let (b, b_writer) = node(&cluster.url, "b:1");
        until(&b, |r| *r == NodeRole::Follower { writer: Some("a:1".to_owned()) }).await;
        let code = crate::domain::ident::CreditCode::parse("91330100716105852F").unwrap();
        let bank = Command::CreatePrincipal {
            name: PrincipalName::parse("bank-x").unwrap(),
            role: Access::Bank(code),
            token_hash: [9; 32],
        };
        let (_, _, sequence) = a.write(&admin(), bank).await.unwrap();
        b.wait_for(sequence, Duration::from_secs(5)).await.unwrap();

        let forged = insert_forged_admin(&cluster.url, by, signer);
        // The follower refuses it: nothing of it applied, no admin minted, health NOT_SERVING.
        until_stopped(&b).await;
        let evil = PrincipalName::parse("evil").unwrap();
        assert!(b.principals().by_name(&evil).is_none(), "the follower minted the forged admin");
        assert_eq!(*b.committed().borrow(), sequence, "the follower applied nothing of entry {forged}");
        // The writer finds the head moved, catches up, refuses it too and stops writing.
        let refused = a.write(&admin(), create(1)).await;
        assert!(refused.is_err(), "{refused:?}");
        until_stopped(&a).await;
        assert!(a.principals().by_name(&evil).is_none(), "the writer minted the forged admin");
        assert!(a.write(&admin(), create(2)).await.is_err(), "writes stay stopped");
        // A node that starts on the journal refuses to start rather than serve it.
        let started = tokio::task::block_in_place(|| {
            let journal = PostgresJournal::connect(cluster.url.as_str()).unwrap();
            let lease =
                Lease::connect(cluster.url.as_str(), "c:1", Duration::from_millis(1000), journal.term()).unwrap();
            let lease: Arc<dyn WriterLease> = Arc::new(lease);
            let store = Arc::new(MemoryStore::default());
            Ledger::start_node(Arc::new(journal), store, cluster_key(), Options::small(), Some(lease))
        });
        let Err(refused) = started else { panic!("a node started on a journal with a forged entry") };
        assert_eq!(refused.reason(), reason, "{refused:?}");
        drop((a, b));
        tokio::task::spawn_blocking(move || (a_writer.join(), b_writer.join())).await.unwrap();
    }

    /// Whoever holds a database credential (or sits between a node and PostgreSQL) writes rows
    /// without the cluster's key: refused for want of its signature, whatever the rows say.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_inserted_with_sql_without_the_cluster_s_signature_is_applied_by_no_node() {
        a_forged_row_is_applied_by_no_node("system", None, "GROUP_UNSIGNED").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_signed_with_another_key_is_applied_by_no_node() {
        a_forged_row_is_applied_by_no_node("system", Some(Signer::ephemeral().unwrap()), "GROUP_SIGNATURE_INVALID")
            .await;
    }

    /// Even a row signed with the cluster's key is decided again: a bank cannot mint an admin.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_signed_with_the_cluster_s_key_that_the_rules_refuse_is_applied_by_no_node() {
        a_forged_row_is_applied_by_no_node("bank-x", Some(cluster_key()), "ENTRY_REFUSED").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_cut_off_from_the_journal_says_not_serving_after_three_leases_and_serving_once_caught_up() {
        let cluster = crate::ledger::journal::postgres::cluster::Cluster::start();
        let (a, a_writer) = node(&cluster.url, "a:1");
        until(&a, NodeRole::is_writer).await;
        let cut = Arc::new(AtomicBool::new(false));
        let (b, b_writer) = tokio::task::block_in_place(|| node_cut(&cluster.url, "b:1", cut.clone()));
        until(&b, |r| *r == NodeRole::Follower { writer: Some("a:1".to_owned()) }).await;
        let (_, _, first) = a.write(&admin(), create(1)).await.unwrap();
        b.wait_for(first, Duration::from_secs(5)).await.unwrap();
        assert!(!*b.behind().borrow());

        cut.store(true, Ordering::SeqCst);
        let cut_at = std::time::Instant::now();
        let (_, _, second) = a.write(&admin(), create(2)).await.unwrap();
        let mut behind = b.behind();
        tokio::time::timeout(Duration::from_secs(10), behind.wait_for(|b| *b)).await.unwrap().unwrap();
        assert!(!*b.writes_stopped().borrow(), "behind is not stopped: it serves again once caught up");
        // Not before the bound (less the poll it may have last caught up in), and reads were
        // stale all along.
        let after = cut_at.elapsed();
        assert!(after >= Duration::from_millis(3000 - 600), "NOT_SERVING after {after:?}, before the bound");
        assert!(*b.committed().borrow() < second);
        assert!(!*a.behind().borrow() && !*a.writes_stopped().borrow(), "the writer is unaffected");

        cut.store(false, Ordering::SeqCst);
        b.wait_for(second, Duration::from_secs(5)).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), behind.wait_for(|b| !*b)).await.unwrap().unwrap();
        drop((a, b));
        tokio::task::spawn_blocking(move || (a_writer.join(), b_writer.join())).await.unwrap();
    }
}
