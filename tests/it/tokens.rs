//! Tokens: the first start writes an owner-only admin token; `ipledger token` manages principals
//! offline on the data directory, and refuses while a server holds it.

use crate::helpers::*;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use ipledger::proto::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn cli(args: &[&str], dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .envs(crate::helpers::journal_for(dir).map(|url| ("IPLEDGER_JOURNAL", url)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test]
async fn the_first_admin_token_is_owner_only() {
    let server = TestServer::start().await;
    let path = server.dir.join(ipledger::server::ADMIN_TOKEN_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(server.admin_token.starts_with("ipl_") && server.admin_token.len() == 47);
    // The store keeps only the hash: the token's text is nowhere in the data directory's files
    // but the owner-only token file.
    let dir = server.dir.clone();
    let token = server.admin_token.clone();
    let temp = server.stop().await;
    for entry in walk(&dir) {
        if entry != path {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "token text in {}", entry.display());
        }
    }
    drop(temp);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[tokio::test]
async fn tokens_are_managed_offline() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let (ok, bank_token, err) =
        cli(&["token", "create", "--name", "bank-a", "--role", "bank", "--credit-code", BANK_A], &dir);
    assert!(ok, "{err}");
    let bank_token = bank_token.trim().to_owned();
    assert!(bank_token.starts_with("ipl_"));
    let (ok, _, err) =
        cli(&["token", "create", "--name", "office-zj", "--role", "office", "--region-code", "330000"], &dir);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["token", "create", "--name", "bad", "--role", "bank", "--credit-code", "123"], &dir);
    assert!(!ok && err.contains("--credit-code"), "{err}");
    let (ok, listed, _) = cli(&["token", "list"], &dir);
    assert!(ok);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [format!("bank-a\tbank {BANK_A}\tlive"), "office-zj\toffice 330000\tlive".to_owned()]
    );

    // The server starts on it, and the offline token works.
    let server = TestServer::start_in(&dir).await;
    let mut bank = PledgeServiceClient::with_interceptor(server.channel().await, Bearer::new(&bank_token));
    bank.list_pledges(ListPledgesRequest::default()).await.unwrap();
    // While the server runs, the data directory is its alone.
    let (ok, _, err) = cli(&["token", "list"], &dir);
    assert!(!ok && err.contains("another ipledger"), "{err}");
    server.stop().await;

    let (ok, _, err) = cli(&["token", "revoke", "--name", "bank-a"], &dir);
    assert!(ok, "{err}");
    let server = TestServer::start_in(&dir).await;
    let mut bank = PledgeServiceClient::with_interceptor(server.channel().await, Bearer::new(&bank_token));
    assert_eq!(
        bank.list_pledges(ListPledgesRequest::default()).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_each_rpc_and_its_principal_and_never_a_token() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let log = temp.path().join("server.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["--log-format", "json", "serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&dir)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let token = admin_token(&dir).await;
    let channel = loop {
        if let Ok(c) =
            tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await
        {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut exposure =
        ipledger::proto::exposure_service_client::ExposureServiceClient::with_interceptor(channel, Bearer::new(&token));
    let bad = GetExposureRequest { region_code: "999999".into(), ..Default::default() };
    assert!(exposure.get_exposure(bad).await.is_err());
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let rpc = lines.iter().find(|l| l["span"]["name"] == "rpc").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(rpc["span"]["method"], "GetExposure");
    assert_eq!(rpc["span"]["principal"], "admin");
    assert_eq!(rpc["fields"]["status"], "INVALID_FIELDS");
    assert!(!text.contains(&token), "a token in the log");
}

#[tokio::test]
async fn the_first_admin_token_can_come_from_a_secret_file() {
    let temp = tempfile::tempdir().unwrap();
    let secret = temp.path().join("admin-token");
    let token = ipledger::domain::principal::new_token().unwrap();
    std::fs::write(&secret, format!("{token}\n")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ipledger::server::Config {
        admin_token_file: Some(secret),
        ..ipledger::server::Config::new(temp.path().join("data"))
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = TestServer::start_with(listener, config, tx, rx).await;
    assert!(!server.dir.join(ipledger::server::ADMIN_TOKEN_FILE).exists(), "no generated token file");
    let mut admin = server.admin_as(Bearer::new(&token)).await;
    let listed = admin.list_tokens(ListTokensRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.tokens.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["admin"]);
    server.stop().await;
}

#[tokio::test]
async fn a_store_whose_principals_are_all_revoked_still_starts() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.revoke_token(RevokeTokenRequest { name: "admin".into() }).await.unwrap();
    let dir = server.dir.clone();
    let revoked = server.admin_token.clone();
    let temp = server.stop().await;
    std::fs::remove_file(dir.join(ipledger::server::ADMIN_TOKEN_FILE)).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = ipledger::server::Config {
        journal: crate::helpers::journal_for(&dir),
        ..ipledger::server::Config::new(dir.clone())
    };
    let serving = tokio::spawn(ipledger::server::serve(listener, config, async {
        let _ = rx.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut served = false;
    for _ in 0..1000 {
        if serving.is_finished() {
            break;
        }
        let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
        if health.check(request).await.is_ok_and(|r| r.into_inner().status == 1) {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // No admin was made up, and the revoked one stays revoked: nobody authenticates until an
    // operator creates a principal offline.
    let mut pledges = PledgeServiceClient::with_interceptor(channel, Bearer::new(&revoked));
    let refused = pledges.list_pledges(ListPledgesRequest::default()).await;
    assert_eq!(refused.map(|_| ()).map_err(|s| s.code()), Err(tonic::Code::Unauthenticated));
    let _ = tx.send(());
    let result = serving.await.unwrap();
    assert!(served && result.is_ok(), "{result:?}");
    assert!(!dir.join(ipledger::server::ADMIN_TOKEN_FILE).exists(), "no new admin token");
    let (ok, out, err) = cli(&["token", "list"], &dir);
    assert!(ok, "{err}");
    assert_eq!(out.lines().map(|l| l.ends_with("revoked")).collect::<Vec<_>>(), [true], "{out}");
    drop(temp);
}
