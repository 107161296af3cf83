//! The journal: a hash chain that verifies after thousands of mixed writes and restarts, reports a
//! flipped byte at its sequence, rebuilds to exactly the stored records, feeds watchers exactly once
//! across reconnects, and exports and restores to an identical ledger.

use crate::credit_lines::line;
use crate::helpers::*;
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::*;
use ipledger::store::{Batch, RunStore, SledStore, Store};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

async fn journal_client(server: &TestServer) -> JournalServiceClient<Authed> {
    JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token))
}

/// Mixed writes: imports, unary registrations, credit lines, changes, releases, tokens.
async fn mixed_writes(server: &TestServer, pledges_n: u64) -> u64 {
    let mut pledges = server.pledges().await;
    let line_id = server
        .credit_lines()
        .await
        .create_credit_line(line("330100", "100000000", BANK_A))
        .await
        .unwrap()
        .into_inner()
        .id;
    let records: Vec<_> = (0..pledges_n)
        .map(|i| {
            let mut p = pledge(
                ["330108", "330106", "320106", "441900"][(i % 4) as usize],
                &format!("{}.{:02}", 100 + i, i % 100),
            );
            if i % 4 < 2 && i % 3 == 0 {
                p.credit_line_id = line_id.clone();
            }
            register(p)
        })
        .collect();
    let summary = pledges.import_pledges(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(summary.registered, pledges_n);
    let mut ids = Vec::new();
    let mut request = ListPledgesRequest { page_size: 1000, status: PledgeStatus::Active as i32, ..Default::default() };
    loop {
        let page = pledges.list_pledges(request.clone()).await.unwrap().into_inner();
        ids.extend(page.pledges.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let mut writes = 1 + pledges_n;
    for (i, id) in ids.iter().enumerate() {
        if i % 5 == 0 {
            let change = ChangePledgeRequest {
                request_id: request_id(),
                id: id.clone(),
                secured_amount: format!("{}.50", unique()),
                reason: "x".into(),
                effective_on: "2020-06-01".into(),
                ..Default::default()
            };
            pledges.change_pledge(change).await.unwrap();
            writes += 1;
        }
        if i % 7 == 0 {
            pledges.release_pledge(release(id.clone(), "2021-01-01")).await.unwrap();
            writes += 1;
        }
    }
    server.token(&format!("bank-{}", unique()), TokenRole::Bank, BANK_A, "").await;
    writes + 1
}

#[tokio::test]
async fn the_chain_verifies_after_thousands_of_writes_and_restarts() {
    let server = TestServer::start().await;
    let dir = server.dir.clone();
    let mut expected = 1 + mixed_writes(&server, 1500).await; // + the bootstrap admin token
    let temp = server.stop().await;
    let server = TestServer::start_in(&dir).await;
    expected += mixed_writes(&server, 700).await;
    server.stop().await;
    let server = TestServer::start_in(&dir).await;
    expected += mixed_writes(&server, 300).await;
    let report = journal_client(&server).await.verify_journal(VerifyJournalRequest {}).await.unwrap().into_inner();
    assert!(report.ok, "{:?}", report.divergence);
    assert_eq!(report.entries, expected);
    assert!(report.keys_compared > 10_000);
    server.stop().await;
    // And offline, with the CLI.
    let out = Command::new(env!("CARGO_BIN_EXE_ipledger")).args(["verify", "--data-dir"]).arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with(&format!("ok: {expected} entries")), "{text}");
    drop(temp);
}

/// Changes the value at `key` of the store in `dir`.
fn tamper(store: &dyn Store, key: &[u8], f: impl FnOnce(&mut Vec<u8>)) {
    let mut value = store.get(key).unwrap().expect("the key exists");
    f(&mut value);
    store.commit(Batch { ops: vec![(key.to_vec(), ipledger::store::Op::Put(value))] }).unwrap();
}

/// The journal's sled database in `dir`.
fn journal_store(dir: &Path) -> SledStore {
    SledStore::open(dir, 16 << 20).unwrap()
}

/// Derived state's store of runs in `dir`.
fn derived_store(dir: &Path) -> RunStore {
    RunStore::open(dir, 16 << 20).unwrap()
}

/// Runs `ipledger verify`, waiting for sled's lock on the directory to be released by a handle
/// this process just dropped (its background threads hold it for a moment).
fn verify_cli(dir: &Path) -> (bool, String) {
    for _ in 0..100 {
        let out =
            Command::new(env!("CARGO_BIN_EXE_ipledger")).args(["verify", "--data-dir"]).arg(dir).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.contains("acquire lock") {
            return (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the data directory stayed locked");
}

#[tokio::test]
async fn a_flipped_byte_is_reported_at_its_sequence() {
    let server = TestServer::start().await;
    let dir = server.dir.clone();
    mixed_writes(&server, 50).await;
    let temp = server.stop().await;
    let (ok, text) = verify_cli(&dir);
    assert!(ok, "{text}");

    // One byte of entry 17 (inside its event): the chain breaks exactly there.
    let journal_dir = dir.join(ipledger::datadir::JOURNAL_DIR);
    let key = 17u64.to_be_bytes();
    let flip = |v: &mut Vec<u8>| {
        let at = 32 + (v.len() - 32) / 2;
        v[at] ^= 0x01;
    };
    tamper(&journal_store(&journal_dir), &key, flip);
    let (ok, text) = verify_cli(&dir);
    assert!(!ok && text.contains("DIVERGENCE at sequence 17"), "{text}");
    tamper(&journal_store(&journal_dir), &key, flip);
    let (ok, text) = verify_cli(&dir);
    assert!(ok, "restored byte verifies again: {text}");

    // One byte of a derived record (the national exposure row): named by key, with the entry that
    // last wrote it.
    let derived_dir = dir.join(ipledger::datadir::DERIVED_DIR);
    {
        let derived = derived_store(&derived_dir);
        let row_key = derived.scan(b"A0", None, 1).unwrap()[0].0.clone();
        tamper(&derived, &row_key, |v| v[0] ^= 0x01);
    }
    let (ok, text) = verify_cli(&dir);
    assert!(!ok && text.contains("DIVERGENCE at sequence") && text.contains("key:      A"), "{text}");
    assert!(!text.contains("DIVERGENCE at sequence 0"), "the entry that last wrote it is named: {text}");
    drop(temp);
}

#[tokio::test]
async fn pledge_history_has_every_version_with_who_and_when() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let mut as_bank = server.pledges_as(Bearer::new(&bank)).await;
    let p = as_bank.register_pledge(register(recent(pledge("330108", "100")))).await.unwrap().into_inner();
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: p.id.clone(),
        secured_amount: "120".into(),
        reason: "top-up".into(),
        effective_on: china_day(0),
        ..Default::default()
    };
    pledges.change_pledge(change).await.unwrap();
    as_bank.release_pledge(release(p.id.clone(), &china_day(0))).await.unwrap();
    let history = as_bank
        .get_pledge_history(GetPledgeHistoryRequest { id: p.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let summary: Vec<(&str, &str, &str, u32)> = history
        .versions
        .iter()
        .map(|v| {
            let p = v.pledge.as_ref().unwrap();
            (v.event.as_str(), v.principal.as_str(), p.secured_amount.as_str(), p.version)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("PLEDGE_REGISTERED", "bank-a", "100.00", 1),
            ("PLEDGE_CHANGED", "admin", "120.00", 2),
            ("PLEDGE_RELEASED", "bank-a", "120.00", 3)
        ]
    );
    assert!(
        history.versions.windows(2).all(|w| w[0].sequence < w[1].sequence && stamp(&w[0].time) < stamp(&w[1].time))
    );
    let other = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    let denied = server
        .pledges_as(Bearer::new(&other))
        .await
        .get_pledge_history(GetPledgeHistoryRequest { id: p.id, ..Default::default() })
        .await;
    assert_eq!(denied.unwrap_err().code(), tonic::Code::PermissionDenied);
    server.stop().await;
}

fn stamp(t: &Option<prost_types::Timestamp>) -> (i64, i32) {
    t.as_ref().map(|t| (t.seconds, t.nanos)).unwrap()
}

#[tokio::test]
async fn a_watcher_that_reconnects_sees_every_event_exactly_once() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    for _ in 0..30 {
        pledges.register_pledge(register(pledge("330108", "1"))).await.unwrap();
    }
    let mut seen = Vec::new();
    // First connection: read 20 events, then drop the stream mid-way.
    let mut feed =
        journal_client(&server).await.watch_events(WatchEventsRequest { from_sequence: 0 }).await.unwrap().into_inner();
    while seen.len() < 20 {
        seen.push(feed.message().await.unwrap().unwrap().sequence);
    }
    drop(feed);
    // Writes continue while nobody watches, and while the second watcher follows live.
    let writer = {
        let mut pledges = server.pledges().await;
        tokio::spawn(async move {
            for _ in 0..40 {
                pledges.register_pledge(register(pledge("320106", "2"))).await.unwrap();
            }
        })
    };
    let resume = seen.last().unwrap() + 1;
    let mut feed = journal_client(&server)
        .await
        .watch_events(WatchEventsRequest { from_sequence: resume })
        .await
        .unwrap()
        .into_inner();
    let total = 1 + 30 + 40; // the bootstrap token, then the pledges
    while seen.len() < total {
        let event =
            tokio::time::timeout(std::time::Duration::from_secs(10), feed.message()).await.unwrap().unwrap().unwrap();
        seen.push(event.sequence);
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=total as u64).collect::<Vec<_>>());
    // A bank's feed carries its own book only.
    let bank = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    let mut other = pledge("330108", "5");
    other.pledgee = Some(party("Bank B", BANK_B));
    let mine = pledges.register_pledge(register(other)).await.unwrap().into_inner();
    let mut feed = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&bank))
        .watch_events(WatchEventsRequest { from_sequence: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = feed.message().await.unwrap().unwrap();
    assert_eq!(first.pledge.unwrap().id, mine.id);
    // Shutting down ends open feeds instead of waiting for them forever.
    server.stop().await;
    assert!(feed.message().await.map_or(true, |m| m.is_none()));
}

/// Every record of a data directory's journal and derived state.
fn all_keys(dir: &Path) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let mut all = BTreeMap::new();
    for part in [ipledger::datadir::JOURNAL_DIR, ipledger::datadir::DERIVED_DIR] {
        let store: Box<dyn Store> = if part == ipledger::datadir::JOURNAL_DIR {
            Box::new(journal_store(&dir.join(part)))
        } else {
            Box::new(derived_store(&dir.join(part)))
        };
        for (k, v) in store.scan(b"", None, usize::MAX).unwrap() {
            all.insert((part.to_owned(), k), v);
        }
    }
    all
}

// The CLI is a blocking child process talking to the in-process server: two worker threads.
/// The dump and the signed head are served whichever journal holds the entries (the PostgreSQL
/// journal's client blocks: it is read on the blocking pool), and the dump's last line signs its
/// entries under the server's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_ends_with_the_signed_head_of_its_entries_on_either_journal() {
    use ipledger::ledger::{export, signing};
    let server = TestServer::start().await;
    mixed_writes(&server, 20).await;
    let mut journal = journal_client(&server).await;
    let signed = journal.get_signed_head(GetSignedHeadRequest {}).await.unwrap().into_inner();
    let mut stream = journal.export_journal(ExportJournalRequest {}).await.unwrap().into_inner();
    let mut lines = Vec::new();
    while let Some(line) = stream.message().await.unwrap() {
        lines.push(line.json);
    }
    let trusted = signing::parse_public_key(server.dir.join(signing::PUBLIC_KEY_FILE).to_str().unwrap()).unwrap();
    let Ok(export::Line::Head(head)) = export::parse(lines.last().unwrap()) else { panic!("no signed head last") };
    head.verify(&[trusted]).unwrap();
    assert_eq!(head.sequence, lines.len() as u64 - 1, "one line per entry, then the head");
    assert!(head.sequence >= signed.sequence, "the dump reaches the head signed before it");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_restore_gives_an_identical_ledger() {
    let server = TestServer::start().await;
    let dir = server.dir.clone();
    mixed_writes(&server, 300).await;
    let temp = tempfile::tempdir().unwrap();
    let dump = temp.path().join("journal.jsonl");
    let out = export_cli(&server, &dump);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server_temp = server.stop().await;
    let key = dir.join(ipledger::ledger::signing::PUBLIC_KEY_FILE);
    let key = key.to_str().unwrap();
    // Without a key to check the head against, nothing is restored.
    let restored = temp.path().join("restored");
    let (ok, text) = restore_cli(&dump, &restored, &[]);
    assert!(!ok && text.contains("--trusted-key"), "{text}");
    // Signed by another key than the one named: refused, and no directory is left behind.
    let stranger = ipledger::ledger::signing::Signer::ephemeral().unwrap();
    let stranger = ipledger::ledger::journal::hex(&stranger.public_key());
    let (ok, text) = restore_cli(&dump, &restored, &["--trusted-key", &stranger]);
    assert!(!ok && text.contains("not a trusted key"), "{text}");
    assert!(!restored.exists(), "a refused restore leaves nothing to serve");
    let (ok, text) = restore_cli(&dump, &restored, &["--trusted-key", key]);
    assert!(ok, "{text}");
    let original = all_keys(&dir);
    let copy = all_keys(&restored);
    assert_eq!(original.len(), copy.len());
    assert!(original == copy, "the restored ledger differs");
    // A dump with one byte of one entry changed does not restore.
    let text = std::fs::read_to_string(&dump).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut entry: serde_json::Value = serde_json::from_str(&lines[5]).unwrap();
    let mut bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, entry["entry"].as_str().unwrap()).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    entry["entry"] = serde_json::json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes));
    lines[5] = entry.to_string();
    std::fs::write(&dump, lines.join("\n")).unwrap();
    let (ok, text) = restore_cli(&dump, &temp.path().join("again"), &["--trusted-key", key]);
    assert!(!ok && text.contains("entry 6"), "{text}");
    drop(server_temp);
}

fn sequence_of<T>(response: &tonic::Response<T>) -> u64 {
    response.metadata().get(ipledger::grpc::SEQUENCE_HEADER).unwrap().to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_bank_reads_its_write_and_proves_it_is_in_the_signed_history() {
    use ipledger::ledger::{export, signing};
    let server = TestServer::start().await;
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let mut pledges = server.pledges_as(Bearer::new(&bank)).await;
    let response = pledges.register_pledge(register(recent(pledge("330108", "12.00")))).await.unwrap();
    let sequence = sequence_of(&response);
    let mine = response.into_inner();
    // Read your writes: a read that asks for the write's sequence sees it.
    let mut read = tonic::Request::new(GetPledgeRequest { id: mine.id.clone() });
    read.metadata_mut().insert(ipledger::grpc::MIN_SEQUENCE_HEADER, sequence.into());
    assert_eq!(pledges.get_pledge(read).await.unwrap().into_inner(), mine);
    // A sequence not reached answers so, after a bounded wait.
    let mut ahead = tonic::Request::new(GetPledgeRequest { id: mine.id.clone() });
    ahead.metadata_mut().insert(ipledger::grpc::MIN_SEQUENCE_HEADER, (sequence + 1000).into());
    let status = pledges.get_pledge(ahead).await.unwrap_err();
    assert_eq!(failure(status).1, "SEQUENCE_NOT_REACHED");

    // The proof of the bank's own write, while it is the head, checks against the server's key.
    let trusted = signing::parse_public_key(server.dir.join(signing::PUBLIC_KEY_FILE).to_str().unwrap()).unwrap();
    let mut journal = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&bank));
    let proof = journal.get_journal_proof(GetJournalProofRequest { sequence }).await.unwrap().into_inner();
    let head = ipledger::grpc::convert::signed_head_from_pb(proof.signed_head.as_ref().unwrap()).unwrap();
    let entry = export::verify_proof(&proof.entries, &head, &[trusted]).unwrap();
    assert_eq!(entry.event.pledge_id().unwrap().to_string(), mine.id);
    let signed = journal.get_signed_head(GetSignedHeadRequest {}).await.unwrap().into_inner();
    assert_eq!(signed, *proof.signed_head.as_ref().unwrap());
    // A changed byte, or another key, and the proof fails.
    let mut forged = proof.entries.clone();
    let at = forged[0].len() - 3;
    forged[0][at] ^= 0x01;
    assert!(export::verify_proof(&forged, &head, &[trusted]).is_err());
    let stranger = signing::Signer::ephemeral().unwrap().public_key();
    assert!(export::verify_proof(&proof.entries, &head, &[stranger]).is_err());

    // Once another bank wrote after it, the proof would show that bank's entry: the bank is
    // refused, an admin gets it.
    let mut other = pledge("440305", "5.00");
    other.pledgee = Some(party("Bank B", BANK_B));
    server.pledges().await.register_pledge(register(other)).await.unwrap();
    let refused = journal.get_journal_proof(GetJournalProofRequest { sequence }).await.unwrap_err();
    assert_eq!(failure(refused).1, "PROOF_NOT_READABLE");
    let proof = journal_client(&server).await.get_journal_proof(GetJournalProofRequest { sequence }).await.unwrap();
    let proof = proof.into_inner();
    let head = ipledger::grpc::convert::signed_head_from_pb(proof.signed_head.as_ref().unwrap()).unwrap();
    assert_eq!(proof.entries.len(), 2);
    assert_eq!(export::verify_proof(&proof.entries, &head, &[trusted]).unwrap().sequence, sequence);
    server.stop().await;
}
