//! A running server for one test, its clients, and builders of valid requests.

use ipledger::domain::ident::{CreditCode, PatentNumber};
use ipledger::proto::admin_service_client::AdminServiceClient;
use ipledger::proto::credit_line_service_client::CreditLineServiceClient;
use ipledger::proto::exposure_service_client::ExposureServiceClient;
use ipledger::proto::pledge_service_client::PledgeServiceClient;
use ipledger::proto::risk_service_client::RiskServiceClient;
use ipledger::proto::*;
use ipledger::server::{self, Config, Limits};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// Adds `authorization: Bearer <token>` to every call (or nothing, to test refusals).
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> Bearer {
        Bearer(Some(format!("Bearer {token}").parse().unwrap()))
    }

    pub fn none() -> Bearer {
        Bearer(None)
    }

    pub fn raw(header: &str) -> Bearer {
        Bearer(Some(header.parse().unwrap()))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

/// The first admin token the server wrote into its data directory.
pub async fn admin_token(dir: &Path) -> String {
    let path = dir.join(server::ADMIN_TOKEN_FILE);
    for _ in 0..3000 {
        if let Ok(text) = std::fs::read_to_string(&path)
            && !text.trim().is_empty()
        {
            return text.trim().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no admin token at {}", path.display());
}

/// The journal the tests of `dir` run on: embedded in the data directory, or, when
/// `IPLEDGER_TEST_JOURNAL` holds a libpq base (`host=… port=… user=…`, set by
/// `tests/with-postgres.sh`), a PostgreSQL database of its own for each data directory (the same
/// one again when a test restarts on it).
pub fn journal_for(dir: &Path) -> Option<String> {
    let base = std::env::var("IPLEDGER_TEST_JOURNAL").ok()?;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
    let name: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("t_{name}");
    // The blocking client may not run on the test's runtime.
    let admin = format!("{base} dbname=postgres");
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("the test PostgreSQL");
        if let Err(e) = client.batch_execute(&create) {
            assert_eq!(e.code(), Some(&postgres::error::SqlState::DUPLICATE_DATABASE), "{e}");
        }
    })
    .join()
    .unwrap();
    Some(format!("{base} dbname={name}"))
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub admin_token: String,
    _temp: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        let mut server = TestServer::start_in(&dir).await;
        server._temp = Some(temp);
        server
    }

    /// Starts on an existing data directory (the caller keeps it alive).
    pub async fn start_in(dir: &Path) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let data_dir = dir.to_path_buf();
        let limits = Limits { cache_bytes: 16 * 1024 * 1024, ..Limits::default() };
        let journal = journal_for(&data_dir);
        let config = Config { limits, journal, ..Config::new(data_dir) };
        TestServer::start_with(listener, config, tx, rx).await
    }

    pub async fn start_with(
        listener: tokio::net::TcpListener,
        config: Config,
        tx: oneshot::Sender<()>,
        rx: oneshot::Receiver<()>,
    ) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let dir = config.data_dir.clone();
        let handle = tokio::spawn(async move {
            server::serve(listener, config, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        // Serving means bootstrapped: the admin token file exists unless principals did before.
        let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = || tonic_health::pb::HealthCheckRequest { service: String::new() };
        // (A TLS server answers no plaintext health check; its token file tells instead.)
        let token_file = dir.join(server::ADMIN_TOKEN_FILE);
        for _ in 0..3000 {
            let written = std::fs::read_to_string(&token_file).is_ok_and(|t| t.ends_with('\n'));
            if written || health.check(request()).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let admin_token = std::fs::read_to_string(dir.join(server::ADMIN_TOKEN_FILE))
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        TestServer { addr, dir, admin_token, _temp: None, shutdown: Some(tx), handle: Some(handle) }
    }

    /// Graceful shutdown; returns the temporary directory so a restart can reuse it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
        self._temp.take()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    pub async fn pledges(&self) -> PledgeServiceClient<Authed> {
        self.pledges_as(Bearer::new(&self.admin_token)).await
    }

    pub async fn credit_lines(&self) -> CreditLineServiceClient<Authed> {
        self.credit_lines_as(Bearer::new(&self.admin_token)).await
    }

    pub async fn exposure(&self) -> ExposureServiceClient<Authed> {
        self.exposure_as(Bearer::new(&self.admin_token)).await
    }

    pub async fn admin(&self) -> AdminServiceClient<Authed> {
        self.admin_as(Bearer::new(&self.admin_token)).await
    }

    pub async fn pledges_as(&self, bearer: Bearer) -> PledgeServiceClient<Authed> {
        PledgeServiceClient::with_interceptor(self.channel().await, bearer)
    }

    pub async fn credit_lines_as(&self, bearer: Bearer) -> CreditLineServiceClient<Authed> {
        CreditLineServiceClient::with_interceptor(self.channel().await, bearer)
    }

    pub async fn exposure_as(&self, bearer: Bearer) -> ExposureServiceClient<Authed> {
        ExposureServiceClient::with_interceptor(self.channel().await, bearer)
    }

    pub async fn admin_as(&self, bearer: Bearer) -> AdminServiceClient<Authed> {
        AdminServiceClient::with_interceptor(self.channel().await, bearer)
    }

    /// Creates a principal through the admin RPC and returns its token.
    pub async fn token(&self, name: &str, role: TokenRole, credit_code: &str, region_code: &str) -> String {
        let request = CreateTokenRequest {
            name: name.into(),
            role: role as i32,
            credit_code: credit_code.into(),
            region_code: region_code.into(),
        };
        self.admin().await.create_token(request).await.unwrap().into_inner().token
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// A number unique within the test process, for distinct patents and enterprises.
pub fn unique() -> u64 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A valid credit code: the given region digits, a serial, and the computed check character.
pub fn credit_code(serial: u64) -> String {
    CreditCode::complete(&format!("91330100{serial:09}")).unwrap().as_str().to_owned()
}

/// A valid invention patent number filed in 2019.
pub fn invention_patent(serial: u64) -> String {
    PatentNumber::complete(&format!("20191{serial:07}")).unwrap()
}

pub const BANK_A: &str = "91330100716105852F";
pub const BANK_B: &str = "914403001922038216";

pub fn party(name: &str, code: &str) -> Party {
    Party { name: name.to_owned(), credit_code: code.to_owned() }
}

pub fn patent_right(number: &str) -> Right {
    Right {
        kind: RightKind::InventionPatent as i32,
        number: number.to_owned(),
        title: "A method".to_owned(),
        expires_on: "2039-05-31".to_owned(),
        ..Default::default()
    }
}

/// A valid pledge in `county` for `amount`, pledged by a fresh enterprise to bank A.
pub fn pledge(county: &str, amount: &str) -> Pledge {
    let n = unique();
    Pledge {
        pledgor: Some(party(&format!("Enterprise {n}"), &credit_code(n))),
        pledgee: Some(party("Bank A", BANK_A)),
        county_code: county.to_owned(),
        secured_amount: amount.to_owned(),
        debt_term_start: "2019-06-01".to_owned(),
        debt_term_end: "2022-05-31".to_owned(),
        registered_on: "2019-06-05".to_owned(),
        rights: vec![patent_right(&invention_patent(n))],
        ..Default::default()
    }
}

/// Today in China (UTC+8), where registrations are dated, moved by `days`.
pub fn china_day(days: i64) -> String {
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    (today + chrono::Duration::days(days)).to_string()
}

/// `p` dated as a bank registers it: yesterday (China time; a bank's registrations are dated
/// within 30 days before today), its debt term from then for about two years.
pub fn recent(mut p: Pledge) -> Pledge {
    p.debt_term_start = china_day(-1);
    p.registered_on = china_day(-1);
    p.debt_term_end = china_day(700);
    p
}

pub fn register(p: Pledge) -> RegisterPledgeRequest {
    RegisterPledgeRequest { request_id: request_id(), pledge: Some(p) }
}

/// The code, ErrorInfo reason and BadRequest fields of a failed call.
pub fn failure(status: tonic::Status) -> (Code, String, Vec<String>) {
    let details = status.get_error_details();
    let reason = details.error_info().map(|i| i.reason.clone()).unwrap_or_default();
    let fields =
        details.bad_request().map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect()).unwrap_or_default();
    (status.code(), reason, fields)
}

pub fn metadata(status: &tonic::Status, key: &str) -> Option<String> {
    status.get_error_details().error_info().and_then(|i| i.metadata.get(key).cloned())
}

/// A release of pledge `id` on `on` as repaid, under a fresh request id.
pub fn release(id: impl Into<String>, on: &str) -> ReleasePledgeRequest {
    ReleasePledgeRequest {
        request_id: request_id(),
        id: id.into(),
        released_on: on.into(),
        reason: ReleaseReason::Repaid as i32,
        note: String::new(),
    }
}

/// Runs `ipledger restore` of `dump` into `into` with these extra arguments: whether it succeeded,
/// and what it printed.
pub fn restore_cli(dump: &Path, into: &Path, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["restore", "--input"])
        .arg(dump)
        .arg("--data-dir")
        .arg(into)
        .args(extra)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Runs `ipledger export` against `server` with its admin's token file, the dump into `dump`.
pub fn export_cli(server: &TestServer, dump: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["export", "--server", &format!("http://{}", server.addr), "--token-file"])
        .arg(server.dir.join(server::ADMIN_TOKEN_FILE))
        .stdout(std::fs::File::create(dump).unwrap())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

/// A risk-side client with `token`.
pub async fn risk_as(server: &TestServer, token: &str) -> RiskServiceClient<Authed> {
    RiskServiceClient::with_interceptor(server.channel().await, Bearer::new(token))
}
