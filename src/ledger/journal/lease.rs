//! The writer's lease in PostgreSQL, for high availability: one row naming the node that may
//! append, with a term that grows at every takeover and an expiry the holder renews. A plain row,
//! not a session advisory lock, so that it works through PgBouncer's transaction pooling and on the
//! PostgreSQL-compatible distributed engines. The journal's primary key fences a stale writer's
//! append in any case; the lease decides who should be writing at all.

use super::JournalError;
use postgres::{Client, NoTls};
use std::sync::Mutex;
use std::time::Duration;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ipledger_lease (
    id int PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    term bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
INSERT INTO ipledger_lease VALUES (1, '', 0, 'epoch') ON CONFLICT DO NOTHING";

/// A held lease: the term this node writes under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term(pub i64);

pub struct Lease {
    client: Mutex<Client>,
    node: String,
    ttl: Duration,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("node", &self.node).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

fn unavailable(e: postgres::Error) -> JournalError {
    JournalError::Unavailable(e.to_string())
}

impl Lease {
    /// Connects as `node` (a name unique among the nodes: its address), creating the row when missing.
    pub fn connect(url: &str, node: &str, ttl: Duration) -> Result<Lease, JournalError> {
        let mut client = Client::connect(url, NoTls).map_err(unavailable)?;
        client.batch_execute(SCHEMA).map_err(unavailable)?;
        Ok(Lease { client: Mutex::new(client), node: node.to_owned(), ttl })
    }

    fn ttl_ms(&self) -> f64 {
        self.ttl.as_secs_f64() * 1000.0
    }

    /// Takes the lease when nobody holds it or its holder let it expire: a new term. `None` while
    /// another node holds it.
    pub fn acquire(&self) -> Result<Option<Term>, JournalError> {
        let mut client = self.client.lock().map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?;
        let row = client
            .query_opt(
                "UPDATE ipledger_lease SET holder = $1, term = term + 1,
                        expires_at = now() + $2 * interval '1 millisecond'
                 WHERE id = 1 AND (expires_at < now() OR holder = '')
                 RETURNING term",
                &[&self.node, &self.ttl_ms()],
            )
            .map_err(unavailable)?;
        Ok(row.map(|r| Term(r.get(0))))
    }

    /// Extends the lease of `term`; `false` when it is no longer this node's (another took over).
    pub fn renew(&self, term: Term) -> Result<bool, JournalError> {
        let mut client = self.client.lock().map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?;
        let renewed = client
            .execute(
                "UPDATE ipledger_lease SET expires_at = now() + $3 * interval '1 millisecond'
                 WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at >= now()",
                &[&self.node, &term.0, &self.ttl_ms()],
            )
            .map_err(unavailable)?;
        Ok(renewed == 1)
    }

    /// Who holds the lease, and under which term (`None`: nobody, or it expired).
    pub fn holder(&self) -> Result<Option<(String, Term)>, JournalError> {
        let mut client = self.client.lock().map_err(|_| JournalError::Unavailable("poisoned".to_owned()))?;
        let row = client
            .query_opt(
                "SELECT holder, term FROM ipledger_lease WHERE id = 1 AND expires_at >= now() AND holder <> ''",
                &[],
            )
            .map_err(unavailable)?;
        Ok(row.map(|r| (r.get(0), Term(r.get(1)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_holds_the_lease_until_it_expires_and_a_takeover_has_a_new_term() {
        let cluster = super::super::postgres::cluster::Cluster::start();
        let ttl = Duration::from_millis(400);
        let a = Lease::connect(&cluster.url, "node-a:50051", ttl).unwrap();
        let b = Lease::connect(&cluster.url, "node-b:50051", ttl).unwrap();
        let term = a.acquire().unwrap().expect("free");
        assert_eq!(term, Term(1));
        assert_eq!(b.acquire().unwrap(), None, "held by a");
        assert!(a.renew(term).unwrap());
        assert_eq!(b.holder().unwrap(), Some(("node-a:50051".to_owned(), Term(1))));
        std::thread::sleep(ttl + Duration::from_millis(200));
        assert_eq!(b.holder().unwrap(), None, "expired");
        let taken = b.acquire().unwrap().expect("expired: b takes over");
        assert_eq!(taken, Term(2));
        assert!(!a.renew(term).unwrap(), "a learns it lost the lease");
        assert_eq!(a.acquire().unwrap(), None);
    }
}
