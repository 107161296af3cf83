//! The registry anyone can check (RFC 9162 over the journal): pledge certificates a bank verifies
//! offline with `ipledger certificate verify`, inclusion and consistency proofs that stay true
//! across a restart and a restore, and a witness that keeps heads, cosigns them and catches a
//! history that was edited and re-chained under the ledger's own key. On the embedded journal, and
//! on PostgreSQL when the suite runs there (`tests/with-postgres.sh`).

use crate::helpers::*;
use ipledger::ledger::journal::{self, merkle};
use ipledger::ledger::signing::{self, Signer};
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::*;
use std::path::Path;
use std::process::{Command, Output};
use tonic::Code;

async fn journal_as(server: &TestServer, token: &str) -> JournalServiceClient<Authed> {
    JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(token))
}

fn hash(text: &str) -> merkle::Hash {
    signing::from_hex(text).unwrap().try_into().unwrap()
}

fn ipledger(args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipledger"));
    command.args(args).env_remove("IPLEDGER_TOKEN");
    if let Some(token) = token {
        command.env("IPLEDGER_TOKEN", token);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `args`, with the PostgreSQL journal when the suite runs on one.
fn with_journal<'a>(args: &[&'a str], journal: Option<&'a str>) -> Vec<&'a str> {
    let mut args = args.to_vec();
    if let Some(journal) = journal {
        args.extend(["--journal", journal]);
    }
    args
}

fn key_of(dir: &Path) -> String {
    dir.join(signing::PUBLIC_KEY_FILE).to_str().unwrap().to_owned()
}

/// Registers `n` pledges as the admin; their ids.
async fn registrations(server: &TestServer, n: usize) -> Vec<String> {
    let mut client = server.pledges().await;
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(client.register_pledge(register(recent(pledge("330106", "100.00")))).await.unwrap().into_inner().id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_verifies_its_pledge_s_certificate_offline_and_learns_nothing_of_another_bank_s() {
    let server = TestServer::start().await;
    let bank_a = server.token("cert-bank-a", TokenRole::Bank, BANK_A, "").await;
    let bank_b = server.token("cert-bank-b", TokenRole::Bank, BANK_B, "").await;
    let mut pledges = server.pledges_as(Bearer::new(&bank_a)).await;
    let registered = pledges.register_pledge(register(recent(pledge("330106", "1000.00")))).await.unwrap();
    let sequence = registered.metadata().get(ipledger::grpc::SEQUENCE_HEADER).unwrap().to_str().unwrap().to_owned();
    let id = registered.into_inner().id;
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: id.clone(),
        secured_amount: "800.00".into(),
        reason: "partly repaid".into(),
        ..Default::default()
    };
    pledges.change_pledge(change).await.unwrap();
    pledges.release_pledge(release(id.clone(), &china_day(0))).await.unwrap();
    // Other writes around it, by the admin: the proofs pass over them.
    registrations(&server, 20).await;

    let certificate = pledges
        .get_pledge_certificate(GetPledgeCertificateRequest { id: id.clone(), tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    let events: Vec<&str> = certificate.entries.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(events, ["PLEDGE_REGISTERED", "PLEDGE_CHANGED", "PLEDGE_RELEASED"]);
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("certificate.json");
    std::fs::write(&file, ipledger::protojson::to_json("PledgeCertificate", &certificate)).unwrap();
    let key = key_of(&server.dir);
    let out = ipledger(&["certificate", "verify", file.to_str().unwrap(), "--key", &key], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("certificate verified: 3 entries"), "{}", text(&out));
    assert!(text(&out).contains(&certificate.registration_number));

    // One byte of the registration changed, another key, another pledge's id: each refused.
    let mut forged = certificate.clone();
    let middle = forged.entries[0].entry.len() / 2;
    forged.entries[0].entry[middle] ^= 1;
    std::fs::write(&file, ipledger::protojson::to_json("PledgeCertificate", &forged)).unwrap();
    let out = ipledger(&["certificate", "verify", file.to_str().unwrap(), "--key", &key], None);
    assert!(!out.status.success() && text(&out).contains("inclusion proof"), "{}", text(&out));
    let stranger = journal::hex(&Signer::ephemeral().unwrap().public_key());
    std::fs::write(&file, ipledger::protojson::to_json("PledgeCertificate", &certificate)).unwrap();
    let out = ipledger(&["certificate", "verify", file.to_str().unwrap(), "--key", &stranger], None);
    assert!(!out.status.success() && text(&out).contains("not a trusted key"), "{}", text(&out));
    let other = PledgeCertificate { pledge_id: uuid::Uuid::new_v4().to_string(), ..certificate.clone() };
    std::fs::write(&file, ipledger::protojson::to_json("PledgeCertificate", &other)).unwrap();
    let out = ipledger(&["certificate", "verify", file.to_str().unwrap(), "--key", &key], None);
    assert!(!out.status.success() && text(&out).contains("is not a PLEDGE_REGISTERED of pledge"), "{}", text(&out));

    // Bank B: neither the certificate nor an inclusion proof of bank A's entry.
    let mut as_b = server.pledges_as(Bearer::new(&bank_b)).await;
    let refused = as_b.get_pledge_certificate(GetPledgeCertificateRequest { id, tree_size: 0 }).await.unwrap_err();
    assert!(matches!(refused.code(), Code::NotFound | Code::PermissionDenied), "{refused:?}");
    let sequence: u64 = sequence.parse().unwrap();
    let request = GetInclusionProofRequest { sequence, tree_size: 0 };
    let refused = journal_as(&server, &bank_b).await.get_inclusion_proof(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    // Bank A: the proof of its own entry, whoever wrote the entries around it.
    let proof = journal_as(&server, &bank_a).await.get_inclusion_proof(request).await.unwrap().into_inner();
    let head = proof.tree_head.unwrap();
    let hashes: Vec<_> = proof.hashes.iter().map(|h| hash(h)).collect();
    let leaf = merkle::leaf_hash(&certificate.entries[0].entry);
    assert_eq!(hash(&proof.leaf_hash), leaf);
    assert!(merkle::verify_inclusion(sequence - 1, head.tree_size, &leaf, &hashes, &hash(&head.root_hash)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_signed_before_a_restart_and_a_restore_stay_consistent_with_the_tree_after() {
    let server = TestServer::start().await;
    let dir = server.dir.clone();
    registrations(&server, 130).await;
    let mut client = journal_as(&server, &server.admin_token).await;
    let early = client.get_signed_tree_head(GetSignedTreeHeadRequest { tree_size: 0 }).await.unwrap().into_inner();
    // Past a full tile (256 leaves): proofs read stored subtrees, full tiles' entries and the tail.
    registrations(&server, 300).await;
    let temp = tempfile::tempdir().unwrap();
    let dump = temp.path().join("journal.jsonl");
    let out = export_cli(&server, &dump);
    assert!(out.status.success(), "{}", text(&out));
    let later = client.get_signed_tree_head(GetSignedTreeHeadRequest { tree_size: 0 }).await.unwrap().into_inner();
    assert!(later.tree_size > 256 + early.tree_size);
    let server_temp = server.stop().await;

    let restarted = TestServer::start_in(&dir).await;
    let restored_dir = temp.path().join("restored");
    let key = key_of(&dir);
    let journal = journal_for(&restored_dir);
    let (ok, out) = restore_cli(&dump, &restored_dir, &with_journal(&["--trusted-key", &key], journal.as_deref()));
    assert!(ok, "{out}");
    let restored = TestServer::start_in(&restored_dir).await;
    for server in [&restarted, &restored] {
        let mut client = journal_as(server, &restarted.admin_token).await;
        let request = GetConsistencyProofRequest { from_size: early.tree_size, to_size: later.tree_size };
        let proof = client.get_consistency_proof(request).await.unwrap().into_inner();
        let hashes: Vec<_> = proof.hashes.iter().map(|h| hash(h)).collect();
        let head = proof.tree_head.unwrap();
        assert_eq!(head.root_hash, later.root_hash, "the tree of {} entries is the one signed before", later.tree_size);
        assert_eq!(proof.from_root_hash, early.root_hash);
        let (from, to) = (early.tree_size, later.tree_size);
        assert!(merkle::verify_consistency(from, to, &hashes, &hash(&early.root_hash), &hash(&later.root_hash)));
        let request = GetSignedTreeHeadRequest { tree_size: from };
        let again = client.get_signed_tree_head(request).await.unwrap().into_inner();
        assert_eq!(again.root_hash, early.root_hash);
    }
    // Asking beyond the tree: refused with the tree's size.
    let request = GetSignedTreeHeadRequest { tree_size: later.tree_size + 1000 };
    let refused = journal_as(&restored, &restarted.admin_token).await.get_signed_tree_head(request).await.unwrap_err();
    assert_eq!(failure(refused).1, "TREE_SIZE_NOT_REACHED");
    restored.stop().await;
    restarted.stop().await;
    // The offline check compares the tree too (its keys are derived state).
    let out =
        ipledger(&with_journal(&["verify", "--data-dir", restored_dir.to_str().unwrap()], journal.as_deref()), None);
    assert!(out.status.success(), "{}", text(&out));
    drop(server_temp);
}

/// A server on `dir` that accepts cosignatures of `witness`, signing with `key` when given.
async fn start_with_witness(dir: &Path, witness: &Signer, key: Option<&Path>) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let witnesses = vec![ipledger::ledger::transparency::Witness {
        name: ipledger::domain::principal::PrincipalName::parse("city-office").unwrap(),
        key: witness.public_key(),
    }];
    let config = ipledger::server::Config {
        journal: journal_for(dir),
        signing_key: key.map(Path::to_path_buf),
        witnesses,
        ..ipledger::server::Config::new(dir.to_path_buf())
    };
    TestServer::start_with(listener, config, tx, rx).await
}

fn witness_run(server: &TestServer, state: &Path, key: &str, cosign: Option<&Path>) -> Output {
    let address = format!("http://{}", server.addr);
    let mut args = vec!["witness", "--server", &address, "--state", state.to_str().unwrap(), "--key", key];
    if let Some(cosign) = cosign {
        args.extend(["--cosign-key", cosign.to_str().unwrap()]);
    }
    ipledger(&args, Some(&server.admin_token))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_witness_cosigns_what_extends_its_kept_head_and_exits_3_on_an_edited_rechained_history() {
    let temp = tempfile::tempdir().unwrap();
    let witness_key = temp.path().join("witness.p8");
    let out = ipledger(&["keygen", witness_key.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out));
    let witness = Signer::load(&witness_key).unwrap();
    let dir = temp.path().join("ledger");
    let server = start_with_witness(&dir, &witness, None).await;
    registrations(&server, 5).await;
    let (state, key) = (temp.path().join("witness.json"), key_of(&dir));
    let out = witness_run(&server, &state, &key, Some(&witness_key));
    assert!(out.status.success() && text(&out).contains("first run"), "{}", text(&out));
    let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let kept_size = kept["treeHead"]["treeSize"].as_u64().unwrap();
    let mut client = journal_as(&server, &server.admin_token).await;
    let request = GetSignedTreeHeadRequest { tree_size: kept_size };
    let cosigned = client.get_signed_tree_head(request).await.unwrap().into_inner();
    assert_eq!(cosigned.cosignatures.len(), 1, "served with the head it cosigned");
    assert_eq!(cosigned.cosignatures[0].witness, "city-office");

    // Refused: a key the server does not know, and a root that is not the server's.
    let stranger = Signer::ephemeral().unwrap();
    let root = hash(&cosigned.root_hash);
    let offer = |signer: &Signer, root: merkle::Hash| AddTreeHeadCosignatureRequest {
        tree_size: kept_size,
        root_hash: journal::hex(&root),
        public_key: journal::hex(&signer.public_key()),
        signature: journal::hex(&signer.cosign(kept_size, &root)),
    };
    let refused = client.add_tree_head_cosignature(offer(&stranger, root)).await.unwrap_err();
    assert_eq!(failure(refused).1, "WITNESS_UNKNOWN");
    let refused = client.add_tree_head_cosignature(offer(&witness, [9; 32])).await.unwrap_err();
    assert_eq!(failure(refused).1, "COSIGNATURE_INVALID");

    registrations(&server, 3).await;
    let out = witness_run(&server, &state, &key, Some(&witness_key));
    assert!(out.status.success() && text(&out).contains("consistent"), "{}", text(&out));

    // The operator edits an entry of the dump, re-chains every entry after it and restores it
    // under the ledger's own key: each entry verifies, the heads are signed by the trusted key,
    // and yet the witness's kept head is not in the new tree.
    let dump = temp.path().join("journal.jsonl");
    let out = export_cli(&server, &dump);
    assert!(out.status.success(), "{}", text(&out));
    let admin = server.admin_token.clone();
    server.stop().await;
    let edited = temp.path().join("edited.jsonl");
    std::fs::write(&edited, rechained(&dump, 3)).unwrap();
    let rewritten_dir = temp.path().join("rewritten");
    let journal = journal_for(&rewritten_dir);
    let (ok, out) = restore_cli(&edited, &rewritten_dir, &with_journal(&["--allow-unsigned"], journal.as_deref()));
    assert!(ok, "{out}");
    let mut rewritten = start_with_witness(&rewritten_dir, &witness, Some(&dir.join(signing::KEY_FILE))).await;
    // The restored principals: the admin's token stays the one of the ledger dumped.
    rewritten.admin_token = admin;
    registrations(&rewritten, 2).await;
    let out = witness_run(&rewritten, &state, &key, Some(&witness_key));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let evidence: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["kept"]["treeSize"].as_u64(), Some(kept_size + 4), "{evidence}");
    assert!(evidence["served"]["treeSize"].as_u64().unwrap() > kept_size);
    assert!(evidence["reason"].as_str().unwrap().contains("rewritten"));
    let after: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(after["treeHead"], evidence["kept"], "the kept head stays what it was");
    rewritten.stop().await;
}

/// The dump at `path` with entry `edited`'s registration moved to another amount and every entry
/// re-sealed after it (new hashes, each naming the one before), without its signed head.
fn rechained(path: &Path, edited: u64) -> String {
    use ipledger::ledger::export::{self, Line};
    use ipledger::ledger::journal::{Event, Head, format};
    let mut lines = Vec::new();
    let mut previous = Head::default();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let Ok(Line::Entry(stored)) = export::parse(line) else { continue };
        let mut entry = stored.decode().unwrap();
        if entry.sequence == edited {
            let Event::PledgeRegistered { pledge } = &mut entry.event else { panic!("entry {edited} registers") };
            pledge.content.secured_amount = ipledger::domain::money::Money::parse_positive("99.00").unwrap();
        }
        let (_, sealed) =
            format::seal(entry.sequence, previous.hash, entry.at, &entry.principal, entry.request, entry.event);
        previous = sealed.head();
        lines.push(export::line(&sealed));
    }
    lines.join("\n") + "\n"
}
