//! Data written by earlier versions opens in this one: the data directory and the export of the
//! release before the journal format (tests/fixtures/release-84ac8ba), the golden journal of
//! format version 1 (tests/fixtures/journal-v1), and the data directory and export of main at
//! 0943898, the last derived layout before the risk side's storage changed, risk side included
//! (tests/fixtures/main-0943898). Each must answer exactly what the version that wrote it answered
//! (`expected.json`, recorded from that version's running server).

use crate::fuzz::{bearer, http_post};
use crate::helpers::*;
use ipledger::proto::admin_service_client::AdminServiceClient;
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use ipledger::proto::{ListPledgesRequest, ListTokensRequest, TokenRole, VerifyJournalRequest};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// One JSON API call as `token`; the answer.
async fn call(server: &TestServer, token: &str, method: &str, body: &Value) -> Value {
    let headers = [("content-type", b"application/json".to_vec()), ("authorization", bearer(token))];
    let path = format!("/api/ipledger.v1.{method}");
    let (status, answer) = http_post(server.addr, &path, &headers, body.to_string().as_bytes()).await.unwrap();
    assert_eq!(status, 200, "{method}: {answer}");
    answer
}

/// Every item of a list method, page by page.
async fn list_all(server: &TestServer, token: &str, method: &str, field: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = call(server, token, method, &json!({"pageSize": 1000, "pageToken": page_token})).await;
        items.extend(page[field].as_array().cloned().unwrap_or_default());
        match page["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => page_token = next.to_owned(),
            _ => return items,
        }
    }
}

/// `answer` holds every field `recorded` holds, with the same value (lists: the same length, item
/// by item). Fields a later version added to the API's output are additive, so they may be there
/// too; a field missing or changed is not.
fn answers_all_recorded(answer: &Value, recorded: &Value, context: &str) {
    match (answer, recorded) {
        (Value::Object(got), Value::Object(want)) => {
            for (key, value) in want {
                let path = format!("{context}.{key}");
                answers_all_recorded(got.get(key).unwrap_or(&Value::Null), value, &path);
            }
        }
        (Value::Array(got), Value::Array(want)) => {
            assert_eq!(got.len(), want.len(), "{context}: length");
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                answers_all_recorded(g, w, &format!("{context}[{i}]"));
            }
        }
        (got, want) => assert_eq!(got, want, "{context}"),
    }
}

/// The server answers what `expected` recorded: journal head, pledges, credit lines, principals
/// and every exposure query.
async fn answers_as_recorded(server: &TestServer, token: &str, expected: &Value) {
    let channel = server.channel().await;
    let mut journal = JournalServiceClient::with_interceptor(channel.clone(), Bearer::new(token));
    let verified = journal.verify_journal(VerifyJournalRequest {}).await.unwrap().into_inner();
    assert!(verified.ok, "{verified:?}");
    assert_eq!(json!(verified.head_hash), expected["journalHead"]["hash"], "the chain continues unchanged");
    assert_eq!(json!(verified.entries.to_string()), expected["journalHead"]["verifyJournalResponse"]["entries"]);
    let pledges = list_all(server, token, "PledgeService/ListPledges", "pledges").await;
    answers_all_recorded(&Value::Array(pledges), &expected["listPledgesResponse"], "pledges");
    let lines = list_all(server, token, "CreditLineService/ListCreditLines", "creditLines").await;
    answers_all_recorded(&Value::Array(lines), &expected["listCreditLinesResponse"], "credit lines");
    let mut admin = AdminServiceClient::with_interceptor(channel, Bearer::new(token));
    let request = ListTokensRequest { page_size: 1000, ..Default::default() };
    let tokens = admin.list_tokens(request).await.unwrap().into_inner().tokens;
    let principals: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let role = TokenRole::try_from(t.role).unwrap().as_str_name().trim_start_matches("TOKEN_ROLE_").to_owned();
            json!({"name": t.name, "role": role, "creditCode": t.credit_code, "regionCode": t.region_code, "revoked": t.revoke_time.is_some()})
        })
        .collect();
    assert_eq!(Value::Array(principals), expected["principals"], "principals");
    for (name, case) in expected["exposure"].as_object().unwrap() {
        let answer = call(server, token, "ExposureService/GetExposure", &case["request"]).await;
        answers_all_recorded(&answer, &case["response"], &format!("exposure {name}"));
    }
}

/// The risk side as `expected` recorded it (fixtures made after the risk side): every right's
/// record with its history, the programmes, the claims (all, each, and bank-hz's own) and the
/// statistics; the revoked principal stays refused. The answers' fields that depend on the day
/// they are asked (this year's budget figures) were left out when they were recorded.
async fn risk_side_answers_as_recorded(server: &TestServer, token: &str, tokens: &Value, expected: &Value) {
    for (name, case) in expected["rights"].as_object().unwrap() {
        let answer = call(server, token, "RiskService/GetRight", &case["request"]).await;
        answers_all_recorded(&answer, &case["response"], &format!("right {name}"));
    }
    let recorded = &expected["programmes"];
    let programmes = list_all(server, token, "RiskService/ListProgrammes", "programmes").await;
    answers_all_recorded(&Value::Array(programmes), &recorded["listProgrammesResponse"], "programmes");
    for (name, case) in recorded["getProgramme"].as_object().unwrap() {
        let answer = call(server, token, "RiskService/GetProgramme", &case["request"]).await;
        answers_all_recorded(&answer, &case["response"], &format!("programme {name}"));
    }
    let recorded = &expected["claims"];
    let claims = list_all(server, token, "RiskService/ListClaims", "claims").await;
    answers_all_recorded(&Value::Array(claims), &recorded["listClaimsResponse"], "claims");
    for (name, case) in recorded["getClaim"].as_object().unwrap() {
        let answer = call(server, token, "RiskService/GetClaim", &case["request"]).await;
        answers_all_recorded(&answer, &case["response"], &format!("claim {name}"));
    }
    let bank = tokens["bank-hz"].as_str().unwrap();
    let own = list_all(server, bank, "RiskService/ListClaims", "claims").await;
    answers_all_recorded(&Value::Array(own), &recorded["bankHzListClaimsResponse"], "bank-hz's claims");
    for (name, case) in expected["statistics"].as_object().unwrap() {
        let answer = call(server, token, "ExposureService/GetStatistics", &case["request"]).await;
        answers_all_recorded(&answer, &case["response"], &format!("statistics {name}"));
    }
    let revoked = tokens["bank-sz"].as_str().unwrap();
    let mut as_revoked = PledgeServiceClient::with_interceptor(server.channel().await, Bearer::new(revoked));
    let refused = as_revoked.list_pledges(ListPledgesRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "a principal revoked stays revoked");
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap()).unwrap()
}

fn token_of(name: &str) -> String {
    std::fs::read_to_string(fixture(name).join("admin.token")).unwrap().trim().to_owned()
}

fn principal_tokens(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("principal-tokens.json")).unwrap()).unwrap()
}

/// Everything `expected.json` of main-0943898 recorded, pledges to claims.
async fn main_0943898_answers_as_recorded(server: &TestServer) {
    let (token, expected) = (token_of("main-0943898"), expected("main-0943898"));
    answers_as_recorded(server, &token, &expected).await;
    risk_side_answers_as_recorded(server, &token, &principal_tokens("main-0943898"), &expected).await;
}

// The CLI is a blocking child process talking to the in-process server: two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_release_before_the_journal_format_is_upgraded_in_place() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    copy_dir(&fixture("release-84ac8ba").join("data"), &dir);
    let token = token_of("release-84ac8ba");
    let expected = expected("release-84ac8ba");
    let server = TestServer::start_in(&dir).await;
    answers_as_recorded(&server, &token, &expected).await;
    for file in ["conf", "db"] {
        assert!(!dir.join(file).exists(), "the release's {file} is removed once the upgrade succeeded");
    }
    // A retry, after the upgrade, of every request the release had acknowledged is recognised
    // as the same request (form-0 fingerprints), not refused as a reused id.
    let import = fixture("release-84ac8ba").join("recipe/admin-import.jsonl");
    let token_file = temp.path().join("admin.token");
    std::fs::write(&token_file, &token).unwrap();
    let out = tokio::task::spawn_blocking({
        let addr = server.addr;
        move || {
            Command::new(env!("CARGO_BIN_EXE_ipledger"))
                .args(["import", "--server", &format!("http://{addr}"), "--token-file"])
                .arg(&token_file)
                .arg(&import)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("0 registered, 7 duplicates, 0 rejected"), "{stdout}");
    server.stop().await;
    // And again from its own checkpoint, after a restart.
    let server = TestServer::start_in(&dir).await;
    answers_as_recorded(&server, &token, &expected).await;
    server.stop().await;
}

fn restore(dump: &Path, into: &Path, extra: &[&str]) {
    let (ok, text) = restore_cli(dump, into, extra);
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_the_release_before_signed_heads_restores_with_an_explicit_flag() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    restore(&fixture("release-84ac8ba").join("export.jsonl"), &dir, &["--allow-unsigned"]);
    let server = TestServer::start_in(&dir).await;
    answers_as_recorded(&server, &token_of("release-84ac8ba"), &expected("release-84ac8ba")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_golden_journal_of_format_1_decodes_verifies_and_rebuilds_to_the_same_exposure() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let golden = fixture("journal-v1");
    let key = golden.join("signing-key.pub");
    restore(&golden.join("export.jsonl"), &dir, &["--trusted-key", key.to_str().unwrap()]);
    let server = TestServer::start_in(&dir).await;
    answers_as_recorded(&server, &token_of("journal-v1"), &expected("journal-v1")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_main_at_0943898_with_the_risk_side_opens_in_place_and_answers_as_recorded() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    // As git checks it out: sled's empty directories are not there.
    copy_dir(&fixture("main-0943898").join("data"), &dir);
    let server = TestServer::start_in(&dir).await;
    main_0943898_answers_as_recorded(&server).await;
    server.stop().await;
    // And again after a restart, from whatever the first start left.
    let server = TestServer::start_in(&dir).await;
    main_0943898_answers_as_recorded(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_of_main_at_0943898_restores_under_its_key_and_answers_as_recorded() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let recorded = fixture("main-0943898");
    let key = recorded.join("signing-key.pub");
    restore(&recorded.join("export.jsonl"), &dir, &["--trusted-key", key.to_str().unwrap()]);
    let server = TestServer::start_in(&dir).await;
    main_0943898_answers_as_recorded(&server).await;
    server.stop().await;
}
