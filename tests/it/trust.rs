//! Restores and followers verify before they trust: a restore into PostgreSQL writes nothing of a
//! dump until its signed head and every entry are checked, so that a refused restore leaves the
//! shared journal as it was (nodes would serve whatever it left, and a second restore would find
//! the journal not empty).

use crate::helpers::*;
use crate::pg::Pg;
use ipledger::domain::principal::{Principal, PrincipalName, Role};
use ipledger::ledger::export::{self, Line};
use ipledger::ledger::journal::{Event, format};
use ipledger::ledger::principals::PrincipalRecord;
use ipledger::ledger::signing::{self, Signer};
use ipledger::proto::TokenRole;
use std::path::Path;
use std::process::{Command, Stdio};

/// More entries than a restore reads and appends per chunk (2048): a dump refused after its first
/// chunk shows whether the chunks before were written.
const PLEDGES: u64 = 2100;

/// Writes `server`'s journal as a dump into `path` with `ipledger export`.
fn export_cli(server: &TestServer, path: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["export", "--server", &format!("http://{}", server.addr), "--token-file"])
        .arg(server.dir.join(ipledger::server::ADMIN_TOKEN_FILE))
        .stdout(std::fs::File::create(path).unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `dump` with one more entry, chained and signed by `signer` as the server itself would (a
/// stolen key): `bank` creates an admin, which the rules refuse to a bank. Returns its sequence.
fn with_a_bank_minting_an_admin(dump: &Path, bank: &str, signer: &Signer, crafted: &Path) -> u64 {
    let text = std::fs::read_to_string(dump).unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut last = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Line::Entry(stored) = export::parse(line).unwrap() {
            lines.push(line.to_owned());
            last = Some(stored);
        }
    }
    let last = last.expect("the dump has entries");
    let at = last.decode().unwrap().at + 1;
    let evil = PrincipalName::parse("evil").unwrap();
    let principal = Principal { name: evil, role: Role::Admin, create_time: at, revoke_time: None };
    let event = Event::PrincipalCreated { record: PrincipalRecord { principal, token_hash: [7; 32] } };
    let by = PrincipalName::parse(bank).unwrap();
    let (_, stored) = format::seal(last.sequence + 1, last.hash, at, &by, None, event);
    lines.push(export::line(&stored));
    lines.push(export::head_line(&signer.sign(stored.head()), None));
    std::fs::write(crafted, lines.join("\n")).unwrap();
    stored.sequence
}

/// A server on the embedded journal whatever `IPLEDGER_TEST_JOURNAL` says: the dump's source is not
/// what these tests are about (and its temporary directory, kept while the server runs).
async fn embedded_server() -> (TestServer, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let limits = ipledger::server::Limits { cache_bytes: 16 << 20, ..Default::default() };
    let config = ipledger::server::Config { limits, ..ipledger::server::Config::new(temp.path().join("data")) };
    (TestServer::start_with(listener, config, tx, rx).await, temp)
}

// The CLI is a blocking child process talking to the in-process server: two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_postgres_writes_nothing_until_the_whole_dump_is_checked() {
    let (server, _source) = embedded_server().await;
    server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let records: Vec<_> = (0..PLEDGES).map(|_| register(pledge("330106", "100.00"))).collect();
    let summary = server.pledges().await.import_pledges(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(summary.registered, PLEDGES);
    let temp = tempfile::tempdir().unwrap();
    let dump = temp.path().join("journal.jsonl");
    export_cli(&server, &dump);
    let key_file = server.dir.join(signing::PUBLIC_KEY_FILE);
    let key = key_file.to_str().unwrap().to_owned();
    let signer = Signer::load_or_create(&server.dir).unwrap();
    let entries = PLEDGES as i64 + 2; // the bootstrap admin and bank-a
    let crafted = temp.path().join("crafted.jsonl");
    let minted = with_a_bank_minting_an_admin(&dump, "bank-a", &signer, &crafted);
    server.stop().await;

    let pg = Pg::start();
    let into = |name: &str| temp.path().join(name);
    // Signed by another key than the one named: refused, and nothing of it in the journal.
    let stranger = ipledger::ledger::journal::hex(&Signer::ephemeral().unwrap().public_key());
    let (ok, text) = restore_cli(&dump, &into("a"), &["--journal", &pg.url, "--trusted-key", &stranger]);
    assert!(!ok && text.contains("not a trusted key"), "{text}");
    assert_eq!(pg.journal_rows(), 0, "a restore under a wrong key wrote into the journal: {text}");
    // Signed by the trusted key, chained, but its last entry breaks the rules: nothing either.
    let (ok, text) = restore_cli(&crafted, &into("b"), &["--journal", &pg.url, "--trusted-key", &key]);
    assert!(!ok && text.contains(&format!("entry {minted}")), "{text}");
    assert_eq!(pg.journal_rows(), 0, "a dump refused at entry {minted} wrote into the journal: {text}");
    // The journal is as it was: the dump restores under the right key.
    let (ok, text) = restore_cli(&dump, &into("c"), &["--journal", &pg.url, "--trusted-key", &key]);
    assert!(ok, "{text}");
    assert_eq!(pg.journal_rows(), entries);
    // And once restored, the journal is not restored over.
    let (ok, text) = restore_cli(&dump, &into("d"), &["--journal", &pg.url, "--trusted-key", &key]);
    assert!(!ok && text.contains("needs an empty journal"), "{text}");
    assert_eq!(pg.journal_rows(), entries);
}
