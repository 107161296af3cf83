//! The journal in PostgreSQL, for high availability: one table, one row per entry (sequence as
//! primary key, previous hash and hash, principal, request id unique per principal, time, the
//! entry's bytes, and the event as `jsonb` so that DBAs and BI tools read the history with SQL).
//!
//! The writer assigns sequences itself (PostgreSQL sequences commit out of order); a group is one
//! transaction of one multi-row insert. The primary key fences a stale writer: its first entry's
//! sequence is taken, so its append fails and it stops writing. A connection lost during the
//! commit leaves the outcome unknown: the writer then reads the head to learn what is there.
//!
//! The client is the `postgres` crate, the blocking face of tokio-postgres: the writer is a
//! thread of its own and the `Journal` trait is synchronous.

use super::{Hash, Head, Journal, JournalError, Stored, check_append};
use postgres::{Client, NoTls};
use std::sync::Mutex;

/// The table and its constraints; created when missing.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ipledger_journal (
    sequence bigint PRIMARY KEY CHECK (sequence > 0),
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    principal text NOT NULL,
    request_id uuid,
    at timestamptz NOT NULL,
    entry bytea NOT NULL,
    event jsonb NOT NULL,
    UNIQUE (principal, request_id)
)";

pub struct PostgresJournal {
    /// The writer's connection (appends) and the readers' (reads, head).
    writer: Mutex<Client>,
    reader: Mutex<Client>,
}

impl std::fmt::Debug for PostgresJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresJournal").finish_non_exhaustive()
    }
}

fn unavailable(e: postgres::Error) -> JournalError {
    JournalError::Unavailable(e.to_string())
}

fn poisoned<T>(_: T) -> JournalError {
    JournalError::Unavailable("journal connection lock poisoned".to_owned())
}

fn head_of(row: Option<postgres::Row>) -> Result<Head, JournalError> {
    let Some(row) = row else { return Ok(Head::default()) };
    let sequence: i64 = row.get(0);
    let hash: Vec<u8> = row.get(1);
    let hash: Hash = hash.try_into().map_err(|_| JournalError::Corrupt("a hash of another length".to_owned()))?;
    Ok(Head { sequence: sequence as u64, hash })
}

const HEAD: &str = "SELECT sequence, hash FROM ipledger_journal ORDER BY sequence DESC LIMIT 1";

impl PostgresJournal {
    /// Connects to `url` (`postgres://user@host:port/db` or key=value form), creating the table
    /// when missing.
    pub fn connect(url: &str) -> Result<PostgresJournal, JournalError> {
        let mut writer = Client::connect(url, NoTls).map_err(unavailable)?;
        writer.batch_execute(SCHEMA).map_err(unavailable)?;
        let reader = Client::connect(url, NoTls).map_err(unavailable)?;
        Ok(PostgresJournal { writer: Mutex::new(writer), reader: Mutex::new(reader) })
    }
}

impl Journal for PostgresJournal {
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        check_append(expected, entries)?;
        let Some(last) = entries.last() else { return Ok(expected) };
        let (mut sequences, mut prevs, mut hashes, mut principals, mut requests, mut ats, mut bytes, mut events) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for stored in entries {
            let entry = stored.decode()?;
            let event = crate::protojson::any_to_json("ipledger.journal.v1.Entry", &stored.bytes[1..])
                .unwrap_or(serde_json::Value::Null);
            sequences.push(stored.sequence as i64);
            prevs.push(entry.prev_hash.to_vec());
            hashes.push(stored.hash.to_vec());
            principals.push(entry.principal.to_string());
            requests.push(entry.request.map(|r| r.id.to_string()).unwrap_or_default());
            ats.push(entry.at);
            bytes.push(stored.bytes.clone());
            events.push(event.to_string());
        }
        let mut client = self.writer.lock().map_err(poisoned)?;
        let mut tx = client.transaction().map_err(unavailable)?;
        let head = head_of(tx.query_opt(HEAD, &[]).map_err(unavailable)?)?;
        if head != expected {
            return Err(JournalError::HeadMoved { expected: expected.sequence, found: head.sequence });
        }
        let inserted = tx.execute(
            "INSERT INTO ipledger_journal (sequence, prev_hash, hash, principal, request_id, at, entry, event)
             SELECT s, p, h, pr, NULLIF(r, '')::uuid, timestamptz 'epoch' + a * interval '1 microsecond', e, ev::jsonb
             FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::bigint[], $7::bytea[], $8::text[])
                  AS t(s, p, h, pr, r, a, e, ev)",
            &[&sequences, &prevs, &hashes, &principals, &requests, &ats, &bytes, &events],
        );
        if let Err(e) = inserted {
            // Another writer took the sequence first: this one is stale.
            if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
                return Err(JournalError::HeadMoved { expected: expected.sequence, found: expected.sequence + 1 });
            }
            return Err(unavailable(e));
        }
        // A failure of the commit itself leaves the outcome unknown: the head tells.
        tx.commit().map_err(|e| JournalError::OutcomeUnknown(e.to_string()))?;
        Ok(last.head())
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
        let mut client = self.reader.lock().map_err(poisoned)?;
        let rows = client
            .query(
                "SELECT sequence, hash, entry FROM ipledger_journal WHERE sequence >= $1 ORDER BY sequence LIMIT $2",
                &[&(from as i64), &(limit.min(i64::MAX as usize) as i64)],
            )
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let sequence: i64 = row.get(0);
                let hash: Vec<u8> = row.get(1);
                let hash: Hash =
                    hash.try_into().map_err(|_| JournalError::Corrupt("a hash of another length".to_owned()))?;
                Ok(Stored { sequence: sequence as u64, hash, bytes: row.get(2) })
            })
            .collect()
    }

    fn head(&self) -> Result<Head, JournalError> {
        let mut client = self.reader.lock().map_err(poisoned)?;
        head_of(client.query_opt(HEAD, &[]).map_err(unavailable)?)
    }

    fn size_on_disk(&self) -> Result<u64, JournalError> {
        let mut client = self.reader.lock().map_err(poisoned)?;
        let row = client.query_one("SELECT pg_total_relation_size('ipledger_journal')", &[]).map_err(unavailable)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

#[cfg(test)]
pub(crate) mod cluster {
    //! A throwaway PostgreSQL 15 cluster on loopback for tests: initdb and the server run as the
    //! `postgres` user when the tests run as root (both refuse root).
    use std::path::PathBuf;
    use std::process::Command;

    const BIN: &str = "/usr/lib/postgresql/15/bin";

    pub struct Cluster {
        dir: PathBuf,
        pub url: String,
    }

    fn as_postgres(program: &str) -> Command {
        let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
            c
        } else {
            Command::new(format!("{BIN}/{program}"))
        }
    }

    impl Cluster {
        pub fn start() -> Cluster {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let dir = std::env::temp_dir().join(format!("ipledger-pg-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let _ = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status();
            let data = dir.join("data");
            let ok = as_postgres("initdb")
                .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
                .output()
                .unwrap();
            assert!(ok.status.success(), "initdb: {}", String::from_utf8_lossy(&ok.stderr));
            let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", dir.display());
            let ok = as_postgres("pg_ctl")
                .args([
                    "-D",
                    data.to_str().unwrap(),
                    "-o",
                    &options,
                    "-l",
                    dir.join("log").to_str().unwrap(),
                    "-w",
                    "start",
                ])
                .output()
                .unwrap();
            assert!(ok.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&ok.stderr));
            Cluster { dir, url: format!("host=127.0.0.1 port={port} user=postgres dbname=postgres") }
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            let data = self.dir.join("data");
            let _ = as_postgres("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_postgres_journal_passes_the_backend_suite_and_stores_events_readable_with_sql() {
        let cluster = super::cluster::Cluster::start();
        let journal = super::PostgresJournal::connect(&cluster.url).unwrap();
        super::super::suite::run(&journal);
        let mut sql = postgres::Client::connect(&cluster.url, postgres::NoTls).unwrap();
        let row = sql
            .query_one("SELECT count(*), min(event->'principalRevoked'->>'name') FROM ipledger_journal", &[])
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 5003);
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("bank-a"));
    }
}
