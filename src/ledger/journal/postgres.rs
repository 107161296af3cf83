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
//!
//! Each group's last entry is signed with the cluster's key in the group's own transaction
//! (`ipledger_group_signature`, when the journal has a `GroupSigner`): the rows of a group are
//! never visible without their signature, so a follower can refuse any row nobody with the key
//! vouched for (an INSERT by a database credential, or by anyone between a node and the server).
//!
//! Test hook, in debug builds only (a release build ignores it): with the environment variable
//! `IPLEDGER_TEST_PAUSE_IN_APPEND` naming a file, every append waits after it locked the lease row
//! and before it inserts, for as long as that file exists. The HA test uses it to stop a writer
//! inside an append, the window in which it holds the lease row.

use super::{GroupSignature, GroupSigner, Hash, Head, Journal, JournalError, Stored, check_append};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The tables and their constraints; created when missing. The lease row lives beside the journal
/// because every append checks it (`lease.rs`).
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
);
CREATE TABLE IF NOT EXISTS ipledger_group_signature (
    sequence bigint PRIMARY KEY REFERENCES ipledger_journal (sequence),
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    signature bytea NOT NULL CHECK (length(signature) = 64)
);
CREATE TABLE IF NOT EXISTS ipledger_lease (
    id int PRIMARY KEY CHECK (id = 1),
    holder text NOT NULL,
    term bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
INSERT INTO ipledger_lease VALUES (1, '', 0, 'epoch') ON CONFLICT DO NOTHING";

/// The channel an append notifies (with its last sequence) when it commits.
pub const CHANNEL: &str = "ipledger_journal";

/// How long a connection attempt may take: a node whose primary is gone learns it within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The test hook's variable (module documentation): honoured in debug builds only.
pub const PAUSE_IN_APPEND_ENV: &str = "IPLEDGER_TEST_PAUSE_IN_APPEND";

/// The file the test hook waits on, when armed: in a debug build with `PAUSE_IN_APPEND_ENV` set.
fn pause_in_append_hook() -> Option<PathBuf> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let path = PathBuf::from(std::env::var_os(PAUSE_IN_APPEND_ENV)?);
    tracing::error!(path = %path.display(), "test hook armed: every append waits while this file exists");
    Some(path)
}

/// Where the journal lives: a libpq connection string (`postgres://user@host:port/db` or
/// `key=value` pairs) and, for TLS, the certificate authority PostgreSQL's certificate must chain
/// to (rustls with ring, as the gRPC side; the host name in the string is verified).
#[derive(Clone)]
pub struct Target {
    url: String,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The string may carry a password.
        f.debug_struct("Target").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl Target {
    /// Plaintext: loopback or a private network only.
    pub fn plain(url: &str) -> Target {
        Target { url: url.to_owned(), tls: None }
    }

    /// TLS required, PostgreSQL's certificate verified against the CA certificates in `ca_pem`.
    pub fn with_ca(url: &str, ca_pem: &[u8]) -> Result<Target, JournalError> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let bad = |e: String| JournalError::Unavailable(format!("the journal's CA certificates: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no certificate in the file".to_owned()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Target { url: url.to_owned(), tls: Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)) })
    }
}

impl From<&str> for Target {
    fn from(url: &str) -> Target {
        Target::plain(url)
    }
}

impl From<&String> for Target {
    fn from(url: &String) -> Target {
        Target::plain(url)
    }
}

/// How long the server lets a session sit idle inside a transaction before it ends the session,
/// rolling the transaction back and releasing its locks. A writer frozen inside an append (a
/// SIGSTOP, a frozen VM: its kernel still answers keepalives) holds the lease row `FOR SHARE`, and
/// a takeover waits for that lock: this frees it. Well under the lease (`Lease::connect` warns
/// otherwise), so that the lock is gone before the frozen writer's lease can expire and a takeover
/// is as quick as after a crash; and far above the milliseconds between an append's statements.
/// Only idleness counts: a COMMIT waiting for the synchronous standby is a statement under way,
/// never cut by this.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long a statement waits for a lock before it fails: no lease statement (a takeover, a
/// renewal, a release) and no append waits on another session for ever, whatever holds the lock.
/// A lease statement that fails so is tried again a quarter of the lease later. It bounds lock
/// waits only: a COMMIT waiting for the synchronous standby is not a lock wait, and is never
/// cancelled (PostgreSQL would then show a commit the standby may not have).
pub const LOCK_TIMEOUT: Duration = Duration::from_millis(1000);

/// TCP keepalives, set on both ends of every connection: idle this long before the first probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Then a probe this often, and the peer declared dead after `KEEPALIVE_RETRIES` unanswered.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;

/// A half-open connection (the peer's host gone, a partition) is closed after this, by keepalives
/// when idle and by `tcp_user_timeout` when data sent stays unacknowledged. A live server waiting
/// on the standby acknowledges the COMMIT it received, so neither cuts that wait.
fn dead_peer_after() -> Duration {
    KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_RETRIES
}

/// The server side of every session: the timeouts above, and keepalives so that the server, too,
/// notices a client gone half-open (its locks and its connection slot are freed). Never a
/// statement timeout: it would cut statements that wait on the standby.
fn session_options() -> String {
    format!(
        "-c statement_timeout=0 -c idle_in_transaction_session_timeout={} -c lock_timeout={} \
         -c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} -c tcp_user_timeout={}",
        IDLE_IN_TRANSACTION_TIMEOUT.as_millis(),
        LOCK_TIMEOUT.as_millis(),
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES,
        dead_peer_after().as_millis(),
    )
}

/// Opens a connection to `target` with the session settings above: no statement, lock wait or
/// dead peer holds a node for ever, and a commit waiting for the synchronous standby is never
/// cancelled.
pub(crate) fn connect(target: &Target) -> Result<Client, JournalError> {
    let mut config: postgres::Config = target.url.parse().map_err(unavailable)?;
    config
        .application_name("ipledger")
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(dead_peer_after())
        .options(&session_options());
    match &target.tls {
        None => config.connect(NoTls),
        Some(tls) => config.ssl_mode(postgres::config::SslMode::Require).connect(tls.clone()),
    }
    .map_err(unavailable)
}

/// A connection opened on first use and again after it broke.
pub(crate) struct Connection {
    target: Target,
    client: Mutex<Option<Client>>,
    /// Statements run on every new connection (`LISTEN`).
    setup: &'static str,
}

impl Connection {
    pub(crate) fn new(target: &Target, setup: &'static str) -> Connection {
        Connection { target: target.clone(), client: Mutex::new(None), setup }
    }

    /// Runs `f` on the connection, reconnecting first when it is closed, and drops it when `f`
    /// left it closed (the next call reconnects).
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, JournalError>) -> Result<T, JournalError> {
        let mut slot: MutexGuard<'_, Option<Client>> = self.client.lock().map_err(poisoned)?;
        if slot.as_ref().is_none_or(Client::is_closed) {
            let mut client = connect(&self.target)?;
            if !self.setup.is_empty() {
                client.batch_execute(self.setup).map_err(unavailable)?;
            }
            *slot = Some(client);
        }
        let client = slot.as_mut().expect("connected above");
        let result = f(client);
        if client.is_closed() {
            *slot = None;
        }
        result
    }

    /// Runs an idempotent read `f`, once more on a new connection when the first attempt found
    /// the connection broken (the server restarted, a switchover, HAProxy moved the primary): a
    /// connection idle since before the fault fails on its first use however healthy the cluster
    /// is now, and a read may safely be repeated. Writes use `with`, whose outcome a retry could
    /// blur.
    pub(crate) fn read<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T, JournalError>) -> Result<T, JournalError> {
        let connected = self.client.lock().map_err(poisoned)?.as_ref().is_some_and(|c| !c.is_closed());
        match self.with(&mut f) {
            Err(JournalError::Unavailable(_)) if connected && self.client.lock().map_err(poisoned)?.is_none() => {
                self.with(f)
            }
            result => result,
        }
    }
}

pub struct PostgresJournal {
    /// The writer's connection (appends), the readers' (reads, head), and the follower's wake-ups.
    writer: Connection,
    reader: Connection,
    listener: Connection,
    /// The lease term this node appends under (0: no lease, one node alone). Every append checks
    /// it against the lease row in its own transaction, so an append of a writer whose lease was
    /// taken over fails however late it arrives.
    term: Arc<AtomicI64>,
    /// The test hook's file (module documentation); `None` unless armed.
    pause_in_append: Option<PathBuf>,
    /// Signs each appended group (module documentation); `None`: groups go unsigned (tests that
    /// write rows as an intruder would).
    signer: Option<Arc<dyn GroupSigner>>,
}

impl std::fmt::Debug for PostgresJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresJournal").field("term", &self.term).finish_non_exhaustive()
    }
}

fn unavailable(e: postgres::Error) -> JournalError {
    JournalError::Unavailable(describe(&e))
}

/// A PostgreSQL error with the server's own message (the client's says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}: {})", e, db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Creates the tables when missing. Nodes starting together race to create them (PostgreSQL
/// then refuses all but one with a unique violation on its catalogue): try again while it does.
pub(crate) fn create_schema(client: &mut Client) -> Result<(), JournalError> {
    let mut attempts = 0;
    loop {
        match client.batch_execute(SCHEMA) {
            Ok(()) => return Ok(()),
            Err(e) if attempts < 10 && e.as_db_error().is_some() => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100 * attempts));
            }
            Err(e) => return Err(JournalError::Unavailable(describe(&e))),
        }
    }
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

/// One multi-row insert of a group's rows, column by column (`Columns`).
const INSERT: &str = "INSERT INTO ipledger_journal (sequence, prev_hash, hash, principal, request_id, at, entry, event)
     SELECT s, p, h, pr, NULLIF(r, '')::uuid, timestamptz 'epoch' + a * interval '1 microsecond', e, ev::jsonb
     FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::bigint[], $7::bytea[], $8::text[])
          AS t(s, p, h, pr, r, a, e, ev)";

/// Rows a copy (`append_from`) inserts per statement.
const COPY_CHUNK: usize = 2048;
const _: () = assert!(COPY_CHUNK <= super::SIGNED_RUN_MAX, "a copied chunk is one signed run");

/// The rows of `entries`, column by column, for one multi-row insert.
struct Columns {
    sequences: Vec<i64>,
    prevs: Vec<Vec<u8>>,
    hashes: Vec<Vec<u8>>,
    principals: Vec<String>,
    requests: Vec<String>,
    ats: Vec<i64>,
    bytes: Vec<Vec<u8>>,
    events: Vec<String>,
}

impl Columns {
    fn of(entries: &[Stored]) -> Result<Columns, JournalError> {
        let mut c = Columns {
            sequences: vec![],
            prevs: vec![],
            hashes: vec![],
            principals: vec![],
            requests: vec![],
            ats: vec![],
            bytes: vec![],
            events: vec![],
        };
        for stored in entries {
            let entry = stored.decode()?;
            let event = crate::protojson::any_to_json("ipledger.journal.v1.Entry", &stored.bytes[1..])
                .unwrap_or(serde_json::Value::Null);
            c.sequences.push(stored.sequence as i64);
            c.prevs.push(entry.prev_hash.to_vec());
            c.hashes.push(stored.hash.to_vec());
            c.principals.push(entry.principal.to_string());
            c.requests.push(entry.request.map(|r| r.id.to_string()).unwrap_or_default());
            c.ats.push(entry.at);
            c.bytes.push(stored.bytes.clone());
            c.events.push(event.to_string());
        }
        Ok(c)
    }
}

impl PostgresJournal {
    /// Connects to `target`, creating the tables when missing.
    pub fn connect(target: impl Into<Target>) -> Result<PostgresJournal, JournalError> {
        let target = target.into();
        let writer = Connection::new(&target, "");
        writer.with(create_schema)?;
        Ok(PostgresJournal {
            writer,
            reader: Connection::new(&target, ""),
            listener: Connection::new(&target, "LISTEN ipledger_journal"),
            term: Arc::default(),
            pause_in_append: pause_in_append_hook(),
            signer: None,
        })
    }

    /// Signs every group appended from now on with `signer` (the cluster's key).
    pub fn sign_groups_with(mut self, signer: Arc<dyn GroupSigner>) -> PostgresJournal {
        self.signer = Some(signer);
        self
    }

    /// Inserts the signature of the group ending at `last` into the append's transaction.
    fn insert_signature(&self, tx: &mut postgres::Transaction<'_>, last: Head) -> Result<(), JournalError> {
        let Some(signer) = &self.signer else { return Ok(()) };
        let signed = signer.sign_group(last);
        debug_assert_eq!(signed.sequence, last.sequence, "a group's signature names its last entry");
        tx.execute(
            "INSERT INTO ipledger_group_signature (sequence, public_key, signature) VALUES ($1, $2, $3)",
            &[&(signed.sequence as i64), &signed.public_key.as_slice(), &signed.signature.as_slice()],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    /// The test hook: waits while its file exists (a poll: the hook is for tests only).
    fn hold_if_paused(&self) {
        if let Some(path) = &self.pause_in_append {
            while path.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The term this journal appends under, shared with the lease that sets it.
    pub fn term(&self) -> Arc<AtomicI64> {
        self.term.clone()
    }
}

impl Journal for PostgresJournal {
    fn append(&self, expected: Head, entries: &[Stored]) -> Result<Head, JournalError> {
        check_append(expected, entries)?;
        let Some(last) = entries.last() else { return Ok(expected) };
        let c = Columns::of(entries)?;
        let held = self.term.load(Ordering::SeqCst);
        self.writer.with(|client| {
            let mut tx = client.transaction().map_err(unavailable)?;
            if held > 0 {
                // Shared lock: a takeover (an update of the row) waits until this append is
                // committed or rolled back, and the new writer reads the journal only after it.
                let found: i64 = tx
                    .query_one("SELECT term FROM ipledger_lease WHERE id = 1 FOR SHARE", &[])
                    .map_err(unavailable)?
                    .get(0);
                if found != held {
                    return Err(JournalError::Fenced { held, found });
                }
            }
            self.hold_if_paused();
            let head = head_of(tx.query_opt(HEAD, &[]).map_err(unavailable)?)?;
            if head != expected {
                return Err(JournalError::HeadMoved { expected: expected.sequence, found: head.sequence });
            }
            let inserted = tx.execute(
                INSERT,
                &[&c.sequences, &c.prevs, &c.hashes, &c.principals, &c.requests, &c.ats, &c.bytes, &c.events],
            );
            if let Err(e) = inserted {
                // Another writer took the sequence first: this one is stale.
                if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) {
                    return Err(JournalError::HeadMoved { expected: expected.sequence, found: expected.sequence + 1 });
                }
                return Err(unavailable(e));
            }
            self.insert_signature(&mut tx, last.head())?;
            // Followers wake on the commit (a notification is delivered only if it commits).
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &last.sequence.to_string()]).map_err(unavailable)?;
            // A failure of the commit itself leaves the outcome unknown: the head tells.
            tx.commit().map_err(|e| JournalError::OutcomeUnknown(e.to_string()))?;
            Ok(last.head())
        })
    }

    /// One transaction for the whole copy, inserted a chunk at a time: a restore's dump is
    /// visible to the nodes all at once, after it was checked, or not at all.
    fn append_from(&self, expected: Head, source: &dyn Journal, through: Head) -> Result<Head, JournalError> {
        self.writer.with(|client| {
            let mut tx = client.transaction().map_err(unavailable)?;
            let head = head_of(tx.query_opt(HEAD, &[]).map_err(unavailable)?)?;
            if head != expected {
                return Err(JournalError::HeadMoved { expected: expected.sequence, found: head.sequence });
            }
            let mut copied = expected;
            while copied.sequence < through.sequence {
                let limit = COPY_CHUNK.min((through.sequence - copied.sequence) as usize);
                let chunk = source.read(copied.sequence + 1, limit)?;
                let Some(last) = chunk.last() else { break };
                let end = last.head();
                super::check_copy(copied, &chunk, end)?;
                let c = Columns::of(&chunk)?;
                let params: [&(dyn postgres::types::ToSql + Sync); 8] =
                    [&c.sequences, &c.prevs, &c.hashes, &c.principals, &c.requests, &c.ats, &c.bytes, &c.events];
                tx.execute(INSERT, &params).map_err(unavailable)?;
                // Each chunk is signed: a follower reads at most `SIGNED_RUN_MAX` entries ahead.
                self.insert_signature(&mut tx, end)?;
                copied = end;
            }
            if copied != through {
                return Err(JournalError::Corrupt(format!(
                    "the copy ends at {}, not at {}",
                    copied.sequence, through.sequence
                )));
            }
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &through.sequence.to_string()]).map_err(unavailable)?;
            tx.commit().map_err(|e| JournalError::OutcomeUnknown(e.to_string()))?;
            Ok(through)
        })
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Stored>, JournalError> {
        let rows = self.reader.read(|client| {
            client
                .query(
                    "SELECT sequence, hash, entry FROM ipledger_journal WHERE sequence >= $1 ORDER BY sequence LIMIT $2",
                    &[&(from as i64), &(limit.min(i64::MAX as usize) as i64)],
                )
                .map_err(unavailable)
        })?;
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
        self.reader.read(|client| head_of(client.query_opt(HEAD, &[]).map_err(unavailable)?))
    }

    fn group_signatures(&self, from: u64, limit: usize) -> Result<Vec<GroupSignature>, JournalError> {
        let rows = self.reader.read(|client| {
            client
                .query(
                    "SELECT sequence, public_key, signature FROM ipledger_group_signature
                     WHERE sequence >= $1 ORDER BY sequence LIMIT $2",
                    &[&(from as i64), &(limit.min(i64::MAX as usize) as i64)],
                )
                .map_err(unavailable)
        })?;
        let length = |what: &str| JournalError::Corrupt(format!("a group signature's {what} of another length"));
        rows.into_iter()
            .map(|row| {
                let sequence: i64 = row.get(0);
                let public_key: Vec<u8> = row.get(1);
                let signature: Vec<u8> = row.get(2);
                Ok(GroupSignature {
                    sequence: sequence as u64,
                    public_key: public_key.try_into().map_err(|_| length("key"))?,
                    signature: signature.try_into().map_err(|_| length("signature"))?,
                })
            })
            .collect()
    }

    /// Commits a write of its own first: it is acknowledged only once the synchronous standby has
    /// it, and so everything before it in the primary's log (write-ahead logs are sequential).
    /// Without it, an append whose commit lost its connection while waiting for the standby
    /// would be visible here, and answered as committed, before any standby had it.
    fn durable_head(&self) -> Result<Head, JournalError> {
        self.writer.with(|client| {
            client.execute("UPDATE ipledger_lease SET term = term WHERE id = 1", &[]).map_err(unavailable)?;
            head_of(client.query_opt(HEAD, &[]).map_err(unavailable)?)
        })
    }

    fn wait_for_append(&self, after: u64, timeout: Duration) {
        let started = std::time::Instant::now();
        let waited = self.listener.with(|client| {
            let mut notifications = client.notifications();
            loop {
                let remaining = timeout.saturating_sub(started.elapsed());
                if remaining.is_zero() {
                    return Ok(());
                }
                match notifications.timeout_iter(remaining).next().map_err(unavailable)? {
                    Some(n) if n.payload().parse::<u64>().is_ok_and(|sequence| sequence > after) => return Ok(()),
                    Some(_) => {}
                    None => return Ok(()),
                }
            }
        });
        // Without a listening connection, wait as long as asked: the caller polls.
        if waited.is_err() {
            std::thread::sleep(timeout.saturating_sub(started.elapsed()));
        }
    }

    fn size_on_disk(&self) -> Result<u64, JournalError> {
        self.reader.read(|client| {
            let row =
                client.query_one("SELECT pg_total_relation_size('ipledger_journal')", &[]).map_err(unavailable)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }
}

#[cfg(test)]
#[path = "../../../tests/support/tools.rs"]
mod test_tools;

#[cfg(test)]
pub(crate) mod cluster {
    //! A throwaway PostgreSQL cluster on loopback for tests: initdb and the server run as the
    //! `postgres` user when the tests run as root (both refuse root). The programs are found as
    //! `tests/support/tools.rs` says; a missing one fails the test with the command to install it.
    use super::test_tools as tools;
    use std::path::PathBuf;
    use std::process::Command;

    pub struct Cluster {
        dir: PathBuf,
        pub url: String,
    }

    fn as_postgres(program: &str) -> Command {
        let program = tools::pg_bin().join(program);
        let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        if root {
            let mut c = Command::new(tools::require("runuser", "util-linux"));
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    impl Cluster {
        pub fn start() -> Cluster {
            Cluster::start_with(None)
        }

        /// A cluster that also accepts TLS, with this certificate and key (PEM).
        pub fn start_tls(cert_pem: &str, key_pem: &str) -> Cluster {
            Cluster::start_with(Some((cert_pem, key_pem)))
        }

        fn start_with(tls: Option<(&str, &str)>) -> Cluster {
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
            let mut options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", dir.display());
            if let Some((cert, key)) = tls {
                use std::os::unix::fs::PermissionsExt;
                let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
                std::fs::write(&cert_file, cert).unwrap();
                std::fs::write(&key_file, key).unwrap();
                // PostgreSQL refuses a key others may read.
                std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
                let _ = Command::new("chown").args(["postgres:postgres"]).arg(&cert_file).arg(&key_file).status();
                options.push_str(&format!(
                    " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                    cert_file.display(),
                    key_file.display()
                ));
            }
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
    /// A CA and a server certificate for 127.0.0.1 it signed (PEM): (CA, certificate, key).
    fn pki() -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "journal test ca");
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        (ca_pem, server.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn with_a_ca_the_journal_speaks_tls_to_a_verified_server_only() {
        let (ca, cert, key) = pki();
        let cluster = super::cluster::Cluster::start_tls(&cert, &key);
        let target = super::Target::with_ca(&cluster.url, ca.as_bytes()).unwrap();
        let journal = super::PostgresJournal::connect(target.clone()).unwrap();
        assert_eq!(super::Journal::head(&journal).unwrap(), super::Head::default());
        let mut client = super::connect(&target).unwrap();
        let ssl: bool =
            client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap().get(0);
        assert!(ssl, "the connection is encrypted");
        // A server whose certificate another CA signed is refused.
        let (other_ca, _, _) = pki();
        let refused = super::connect(&super::Target::with_ca(&cluster.url, other_ca.as_bytes()).unwrap());
        assert!(refused.is_err());
        assert!(super::Target::with_ca(&cluster.url, b"not a certificate").is_err());
    }

    #[test]
    fn a_read_on_a_connection_the_server_closed_is_answered_on_a_new_one() {
        let cluster = super::cluster::Cluster::start();
        let journal = super::PostgresJournal::connect(&cluster.url).unwrap();
        let journal: &dyn super::Journal = &journal;
        assert_eq!(journal.head().unwrap(), super::Head::default());
        // What a switchover or a restart does to every open connection.
        let mut sql = postgres::Client::connect(&cluster.url, postgres::NoTls).unwrap();
        let closed: i64 = sql
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = 'ipledger') AS t",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(closed >= 1, "the reader's connection was open");
        assert_eq!(journal.head().unwrap(), super::Head::default());
        assert!(journal.read(1, 10).unwrap().is_empty());
    }

    /// Whether a session of the journal sits inside an append, idle in its transaction after
    /// locking the lease row (what the test hook holds it at).
    fn held_in_append(url: &str) -> bool {
        let mut sql = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let held: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ipledger'
                 AND state = 'idle in transaction' AND query LIKE '%FOR SHARE%'",
                &[],
            )
            .unwrap()
            .get(0);
        held > 0
    }

    /// Tries to take the lease every quarter of it, as a follower's lease thread does, in a thread
    /// of its own: the term it took arrives on the channel (never, while the takeover hangs).
    fn compete(lease: super::super::lease::Lease) -> std::sync::mpsc::Receiver<super::super::lease::Term> {
        use super::super::lease::WriterLease;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            loop {
                if let Ok(Some(term)) = lease.acquire() {
                    let _ = sender.send(term);
                    return;
                }
                std::thread::sleep(lease.ttl() / 4);
            }
        });
        receiver
    }

    #[test]
    fn a_writer_held_inside_an_append_keeps_no_other_node_from_taking_over_and_writes_nothing() {
        use super::super::lease::{Lease, Term, WriterLease};
        use super::super::suite::chain;
        use super::{Head, Journal, JournalError, PostgresJournal};
        use std::time::{Duration, Instant};
        let cluster = super::cluster::Cluster::start();
        let ttl = Duration::from_millis(2000);
        let pause = std::env::temp_dir().join(format!("ipledger-pause-{}-{}", std::process::id(), line!()));
        let mut a = PostgresJournal::connect(&cluster.url).unwrap();
        a.pause_in_append = Some(pause.clone());
        let b = PostgresJournal::connect(&cluster.url).unwrap();
        let a_lease = Lease::connect(&cluster.url, "a:1", ttl, a.term()).unwrap();
        let b_lease = Lease::connect(&cluster.url, "b:1", ttl, b.term()).unwrap();
        assert_eq!(a_lease.acquire().unwrap(), Some(Term(1)));
        let entries = chain(Head::default(), 2);
        let head = a.append(Head::default(), &entries[..1]).unwrap();

        // a enters its next append and stops there, the lease row locked: from now on it is frozen
        // (a SIGSTOP, a frozen VM), its lease no longer renewed.
        std::fs::write(&pause, b"").unwrap();
        let a = std::sync::Arc::new(a);
        let held = {
            let (a, second) = (a.clone(), entries[1..].to_vec());
            std::thread::spawn(move || a.append(head, &second))
        };
        let started = Instant::now();
        while !held_in_append(&cluster.url) {
            assert!(started.elapsed() < Duration::from_secs(10), "the append never reached the hook");
            std::thread::sleep(Duration::from_millis(20));
        }
        let frozen = Instant::now();
        let taken = compete(b_lease);
        // The lease expires within `ttl` (the held lock is gone before), a follower tries every
        // quarter of it; a second for the machine's load.
        let bound = ttl + ttl / 4 + Duration::from_secs(1);
        let term = taken.recv_timeout(bound).unwrap_or_else(|_| {
            panic!("no other node took the lease within {bound:?} of the writer freezing inside an append")
        });
        println!("b took the lease {:?} after a froze inside an append", frozen.elapsed());
        assert_eq!(term, Term(2));

        // a wakes: the append it was inside commits nothing, and its next one is fenced.
        std::fs::remove_file(&pause).unwrap();
        let woke = held.join().unwrap();
        assert!(matches!(woke, Err(JournalError::Unavailable(_))), "{woke:?}");
        assert_eq!(b.head().unwrap(), head, "nothing of the held append is there");
        assert_eq!(a.append(head, &entries[1..]), Err(JournalError::Fenced { held: 1, found: 2 }));
        assert_eq!(b.append(head, &entries[1..]).unwrap(), entries[1].head());
    }

    #[test]
    fn the_postgres_journal_passes_the_backend_suite_and_stores_events_readable_with_sql() {
        let cluster = super::cluster::Cluster::start();
        let journal = super::PostgresJournal::connect(&cluster.url).unwrap();
        super::super::suite::run(&journal);
        let mut sql = postgres::Client::connect(&cluster.url, postgres::NoTls).unwrap();
        let row = sql
            .query_one("SELECT count(*), min(event->'principalRevoked'->>'name') FROM ipledger_journal", &[])
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), 8003, "the suite's appends, then its copy's");
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("bank-a"));
    }
}
