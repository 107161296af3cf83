//! The writer's lease, for high availability: one record naming the node that may append, with a
//! term that grows at every takeover and an expiry the holder renews. The lease thread (`role`)
//! and the writer see it only through `WriterLease`, so that an engine other than PostgreSQL's can
//! hold it: the memory journal's (`MemoryLease`, for tests and the simulation).
//!
//! In PostgreSQL (`Lease`) the record is a plain row, not a session advisory lock, so that it works
//! through PgBouncer's transaction pooling and on the PostgreSQL-compatible distributed engines.
//! The journal's primary key fences a stale writer's append in any case; the lease decides who
//! should be writing at all.

use super::JournalError;
use super::postgres::Connection;
/// The session timeouts the lease's timing depends on, and the test hook that holds an append with
/// the lease row locked: public here for the HA test (the `postgres` module is the crate's own).
pub use super::postgres::{IDLE_IN_TRANSACTION_TIMEOUT, LOCK_TIMEOUT, PAUSE_IN_APPEND_ENV};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A held lease: the term this node writes under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term(pub i64);

/// The writer's lease as the lease thread (`role::run_lease`) and the writer use it. Whatever
/// holds it, the contract is the PostgreSQL row's: a takeover is a new, greater term; the journal
/// the lease was made for appends under the term this node last acquired, and refuses an append
/// under a term that was taken over (`JournalError::Fenced`), writing nothing.
pub trait WriterLease: Send + Sync + std::fmt::Debug {
    /// This node's name in the lease.
    fn node(&self) -> &str;

    /// How long a lease lasts without renewal.
    fn ttl(&self) -> Duration;

    /// Takes the lease when nobody holds it or its holder let it expire: a new term, which this
    /// node's appends carry from now on. `None` while another node holds it.
    fn acquire(&self) -> Result<Option<Term>, JournalError>;

    /// Extends the lease of `term`; `false` when it is no longer this node's (another took over,
    /// or it expired).
    fn renew(&self, term: Term) -> Result<bool, JournalError>;

    /// Gives the lease of `term` up at once (a planned stop), so that another node need not wait
    /// for it to expire.
    fn release(&self, term: Term) -> Result<(), JournalError>;

    /// Who holds the lease, and under which term (`None`: nobody, or it expired).
    fn holder(&self) -> Result<Option<(String, Term)>, JournalError>;
}

/// The lease in PostgreSQL: the row `ipledger_lease`, beside the journal every append of which
/// checks it.
pub struct Lease {
    connection: Connection,
    node: String,
    ttl: Duration,
    /// The journal's term (`PostgresJournal::term`): set on acquiring, so that every append of
    /// this node checks it.
    fence: Arc<AtomicI64>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("node", &self.node).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

fn unavailable(e: postgres::Error) -> JournalError {
    JournalError::Unavailable(super::postgres::describe(&e))
}

/// A writer renews every quarter of the lease, so a writer that froze has its lease expire between
/// three quarters of it and all of it later. Its append's lock on the lease row lasts until the
/// server ends its session, `IDLE_IN_TRANSACTION_TIMEOUT` after it froze: a lease whose three
/// quarters are shorter leaves the takeover waiting for that instead of the lease.
fn warn_if_shorter_than_a_frozen_append(ttl: Duration) {
    let frozen_lock = IDLE_IN_TRANSACTION_TIMEOUT;
    if ttl * 3 / 4 <= frozen_lock {
        tracing::warn!(
            lease_ms = ttl.as_millis() as u64,
            idle_in_transaction_timeout_ms = frozen_lock.as_millis() as u64,
            "the writer's lease is short: a writer frozen inside an append is replaced only after the server ends its transaction"
        );
    }
}

impl Lease {
    /// Connects as `node` (a name unique among the nodes: its address), creating the tables when
    /// missing; `fence` is the journal's term, set whenever this node acquires the lease.
    pub fn connect(
        target: impl Into<super::postgres::Target>,
        node: &str,
        ttl: Duration,
        fence: Arc<AtomicI64>,
    ) -> Result<Lease, JournalError> {
        let connection = Connection::new(&target.into(), "");
        connection.with(super::postgres::create_schema)?;
        warn_if_shorter_than_a_frozen_append(ttl);
        Ok(Lease { connection, node: node.to_owned(), ttl, fence })
    }

    fn ttl_ms(&self) -> f64 {
        self.ttl.as_secs_f64() * 1000.0
    }
}

impl WriterLease for Lease {
    fn node(&self) -> &str {
        &self.node
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }

    fn acquire(&self) -> Result<Option<Term>, JournalError> {
        let row = self.connection.with(|client| {
            client
                .query_opt(
                    "UPDATE ipledger_lease SET holder = $1, term = term + 1,
                            expires_at = now() + $2 * interval '1 millisecond'
                     WHERE id = 1 AND (expires_at < now() OR holder = '')
                     RETURNING term",
                    &[&self.node, &self.ttl_ms()],
                )
                .map_err(unavailable)
        })?;
        let term = row.map(|r| Term(r.get(0)));
        if let Some(Term(term)) = term {
            self.fence.store(term, Ordering::SeqCst);
        }
        Ok(term)
    }

    fn renew(&self, term: Term) -> Result<bool, JournalError> {
        let renewed = self.connection.with(|client| {
            client
                .execute(
                    "UPDATE ipledger_lease SET expires_at = now() + $3 * interval '1 millisecond'
                     WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at >= now()",
                    &[&self.node, &term.0, &self.ttl_ms()],
                )
                .map_err(unavailable)
        })?;
        Ok(renewed == 1)
    }

    fn release(&self, term: Term) -> Result<(), JournalError> {
        self.connection.with(|client| {
            client
                .execute(
                    "UPDATE ipledger_lease SET expires_at = 'epoch' WHERE id = 1 AND holder = $1 AND term = $2",
                    &[&self.node, &term.0],
                )
                .map_err(unavailable)
        })?;
        Ok(())
    }

    fn holder(&self) -> Result<Option<(String, Term)>, JournalError> {
        let row = self.connection.with(|client| {
            client
                .query_opt(
                    "SELECT holder, term FROM ipledger_lease WHERE id = 1 AND expires_at >= now() AND holder <> ''",
                    &[],
                )
                .map_err(unavailable)
        })?;
        Ok(row.map(|r| (r.get(0), Term(r.get(1)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::journal::PostgresJournal;
    use std::time::Instant;

    #[test]
    fn one_node_holds_the_lease_until_it_expires_and_a_takeover_has_a_new_term() {
        let cluster = super::super::postgres::cluster::Cluster::start();
        let ttl = Duration::from_millis(400);
        let a = Lease::connect(&cluster.url, "node-a:50051", ttl, Arc::default()).unwrap();
        let b = Lease::connect(&cluster.url, "node-b:50051", ttl, Arc::default()).unwrap();
        suite::one_node_holds_the_lease_until_it_expires(&a, &b, &|| {
            std::thread::sleep(ttl + Duration::from_millis(200))
        });
    }

    /// Runs `f` in a thread of its own and waits for it up to `bound`: `None` if it still waits.
    fn within<T: Send + 'static>(bound: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(f());
        });
        receiver.recv_timeout(bound).ok()
    }

    #[test]
    fn no_lease_statement_waits_for_a_lock_longer_than_the_lock_timeout() {
        let cluster = super::super::postgres::cluster::Cluster::start();
        // Long enough not to expire during the test.
        let ttl = Duration::from_secs(30);
        let a = Arc::new(Lease::connect(&cluster.url, "a:1", ttl, Arc::default()).unwrap());
        let term = a.acquire().unwrap().expect("free");
        // A session that keeps the lease row locked while busy (not idle, so no idle timeout ends
        // it): as an append whose commit waits for a synchronous standby that does not answer.
        let url = cluster.url.clone();
        std::thread::spawn(move || {
            let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let _ =
                sql.batch_execute("BEGIN; SELECT term FROM ipledger_lease WHERE id = 1 FOR SHARE; SELECT pg_sleep(60)");
        });
        let mut sql = postgres::Client::connect(&cluster.url, postgres::NoTls).unwrap();
        let started = Instant::now();
        while sql.query("SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'", &[]).unwrap().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "the locking session never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The renewal and the release of a writer stepping down each give up after the lock
        // timeout instead of waiting for the lock.
        let bound = LOCK_TIMEOUT + Duration::from_secs(1);
        let renewing = a.clone();
        let renewed = within(bound, move || renewing.renew(term)).expect("the renewal returns within the bound");
        assert!(matches!(&renewed, Err(JournalError::Unavailable(e)) if e.contains("lock timeout")), "{renewed:?}");
        let releasing = a.clone();
        let released = within(bound, move || releasing.release(term)).expect("the release returns within the bound");
        assert!(matches!(&released, Err(JournalError::Unavailable(e)) if e.contains("lock timeout")), "{released:?}");
        assert_eq!(a.holder().unwrap(), Some(("a:1".to_owned(), term)), "reading who holds it takes no lock");
    }

    #[test]
    fn an_append_under_a_term_that_was_taken_over_is_refused_and_writes_nothing() {
        let cluster = super::super::postgres::cluster::Cluster::start();
        let ttl = Duration::from_millis(300);
        let (a, b) = (PostgresJournal::connect(&cluster.url).unwrap(), PostgresJournal::connect(&cluster.url).unwrap());
        let a_lease = Lease::connect(&cluster.url, "a:1", ttl, a.term()).unwrap();
        let b_lease = Lease::connect(&cluster.url, "b:1", ttl, b.term()).unwrap();
        suite::an_append_under_a_term_that_was_taken_over_is_refused((&a, &a_lease), (&b, &b_lease), &|| {
            std::thread::sleep(ttl + Duration::from_millis(100))
        });
    }
}

/// The checks every lease passes with the journal it fences, whatever holds them (PostgreSQL's
/// `Lease`, the memory journal's `MemoryLease`). `expire` lets more than a lease pass: a sleep,
/// or a step of the memory lease's clock.
#[cfg(test)]
pub(crate) mod suite {
    use super::*;
    use crate::ledger::journal::{Head, Journal, suite::chain};

    /// `a` and `b`: two nodes' leases on one fresh lease record, the term of neither set yet.
    pub(crate) fn one_node_holds_the_lease_until_it_expires(
        a: &dyn WriterLease,
        b: &dyn WriterLease,
        expire: &dyn Fn(),
    ) {
        let term = a.acquire().unwrap().expect("free");
        assert_eq!(term, Term(1));
        assert_eq!(b.acquire().unwrap(), None, "held by a");
        assert!(a.renew(term).unwrap());
        assert_eq!(b.holder().unwrap(), Some((a.node().to_owned(), Term(1))));
        expire();
        assert_eq!(b.holder().unwrap(), None, "expired");
        assert!(!a.renew(term).unwrap(), "an expired lease is not renewed");
        let taken = b.acquire().unwrap().expect("expired: b takes over");
        assert_eq!(taken, Term(2));
        assert!(!a.renew(term).unwrap(), "a learns it lost the lease");
        assert_eq!(a.acquire().unwrap(), None);
        // A release of a term taken over leaves the holder be; the holder's own frees it at once.
        a.release(term).unwrap();
        assert_eq!(a.holder().unwrap(), Some((b.node().to_owned(), Term(2))));
        b.release(taken).unwrap();
        assert_eq!(a.holder().unwrap(), None, "released");
        assert_eq!(a.acquire().unwrap(), Some(Term(3)), "a released lease is taken without waiting");
    }

    /// Two nodes, each a journal of one shared journal and the lease fencing it.
    pub(crate) fn an_append_under_a_term_that_was_taken_over_is_refused(
        (a, a_lease): (&dyn Journal, &dyn WriterLease),
        (b, b_lease): (&dyn Journal, &dyn WriterLease),
        expire: &dyn Fn(),
    ) {
        assert_eq!(a_lease.acquire().unwrap(), Some(Term(1)));
        let first = chain(Head::default(), 2);
        let head = a.append(Head::default(), &first[..1]).unwrap();
        // a pauses past its lease; b takes over and has not written yet.
        expire();
        assert_eq!(b_lease.acquire().unwrap(), Some(Term(2)));
        assert_eq!(a.append(head, &first[1..]), Err(JournalError::Fenced { held: 1, found: 2 }));
        assert_eq!(b.head().unwrap(), head, "nothing of the fenced append is there");
        assert_eq!(b.append(head, &first[1..]).unwrap(), first[1].head());
    }
}
