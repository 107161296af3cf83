//! Wiring: opens the store, starts the writer, bootstraps the first admin token, and serves the
//! ledger and admin services (authenticated) with health and reflection (v1 and v1alpha, both
//! without a token: they reveal only the published schema and whether the server serves) under
//! explicit limits, over TLS when configured. Shutdown is graceful: in-flight requests finish, the
//! writer commits everything it accepted, then the store is dropped.

use crate::domain::principal::{Principal, PrincipalName, Role};
use crate::grpc::Api;
use crate::grpc::auth::Authenticate;
use crate::ledger::Ledger;
use crate::ledger::WriterGuard;
use crate::proto as pb;
use crate::store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Limits of one server; every field has a production default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request message: an import record or a pledge with 500 rights fits many times over.
    pub request_bytes_max: usize,
    /// Largest response message: a full page of pledges with many rights.
    pub response_bytes_max: usize,
    /// Writes waiting for the writer at most; beyond it unary writes get RESOURCE_EXHAUSTED.
    pub write_queue_max: usize,
    /// Calls, streams, change feeds and queued write bytes at once, for the server and for each
    /// principal; beyond them calls get RESOURCE_EXHAUSTED.
    pub quotas: crate::grpc::limits::Quotas,
    /// Deadlines of calls and streams, and how long an import stream may idle.
    pub timeouts: crate::grpc::Timeouts,
    /// Concurrent HTTP/2 streams per connection.
    pub streams_per_connection_max: u32,
    /// sled's page cache.
    pub cache_bytes: u64,
    /// Derived state held in memory before a checkpoint writes it out: bounds memory and the
    /// replay at the next start; larger coalesces more of the hot aggregates.
    pub checkpoint_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_bytes_max: 4 * 1024 * 1024,
            response_bytes_max: 64 * 1024 * 1024,
            write_queue_max: 65_536,
            quotas: crate::grpc::limits::Quotas::default(),
            timeouts: crate::grpc::Timeouts::default(),
            streams_per_connection_max: 1024,
            cache_bytes: 512 * 1024 * 1024,
            checkpoint_bytes: crate::ledger::derived::CHECKPOINT_BYTES,
        }
    }
}

impl Limits {
    /// Why the server cannot run under these limits, if it cannot: a bound of 0 admits nothing and
    /// a timeout of 0 ends everything at once; a per-principal share may not exceed its bound.
    pub fn check(&self) -> Result<(), ServeError> {
        let invalid = |what: &str| Err(ServeError::Config(format!("{what} must be at least 1")));
        self.quotas.check().map_err(ServeError::Config)?;
        let sizes = [
            ("the request size bound", self.request_bytes_max),
            ("the response size bound", self.response_bytes_max),
            ("the write queue's bound", self.write_queue_max),
            ("the checkpoint size", self.checkpoint_bytes),
            ("HTTP/2 streams per connection", self.streams_per_connection_max as usize),
            ("the cache size", usize::try_from(self.cache_bytes).unwrap_or(usize::MAX)),
        ];
        if let Some((what, _)) = sizes.iter().find(|(_, n)| *n == 0) {
            return invalid(what);
        }
        let timeouts = [
            ("the call timeout", self.timeouts.call),
            ("the import timeout", self.timeouts.import),
            ("the stream idle timeout", self.timeouts.stream_idle),
        ];
        if let Some((what, _)) = timeouts.iter().find(|(_, t)| t.is_zero()) {
            return invalid(what);
        }
        Ok(())
    }
}

/// PEM files for TLS; with `client_ca`, client certificates signed by it are verified, and one
/// that an admin bound to a live principal (subject or subject alternative name) authenticates as
/// that principal.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// How this node takes part in the writer's lease when the journal is in PostgreSQL.
#[derive(Debug, Clone)]
pub struct Node {
    /// This node's name in the lease: the address clients and other nodes reach it at, which a
    /// follower names in NOT_WRITER answers.
    pub name: String,
    /// How long the lease lasts without renewal: a dead writer is replaced after about this long.
    pub lease: Duration,
}

/// The writer's lease lasts this long by default: a dead writer is replaced within about 1.5×.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(5);

impl Node {
    /// A command-line tool's part: it writes only when no server holds the lease.
    pub fn offline() -> Node {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        Node { name: format!("offline:{}@{}", std::process::id(), host.trim()), lease: LEASE_DEFAULT }
    }
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// A PostgreSQL URL for the journal; `None`: the journal embedded in `data_dir`.
    pub journal: Option<String>,
    /// PEM CA certificates PostgreSQL's certificate must chain to: the journal's connections then
    /// use TLS. `None`: plaintext (loopback or a private network).
    pub journal_ca: Option<PathBuf>,
    /// The signing key's file (the cluster's, the same on every node); `None`: the data
    /// directory's own, made at the first start.
    pub signing_key: Option<PathBuf>,
    /// The address this node is reached at (its name in the writer's lease); `None`: the listen
    /// address.
    pub advertise: Option<String>,
    /// How long the writer's lease lasts without renewal.
    pub lease: Duration,
    pub limits: Limits,
    pub tls: Option<Tls>,
    /// Serve without TLS on a non-loopback address (refused otherwise).
    pub allow_plaintext: bool,
    /// On first start, the admin's token is read from this file (a mounted secret) instead of
    /// being generated and written into the data directory.
    pub admin_token_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None`: not served. Over TLS with the
    /// gRPC port's certificate when `tls` is set; plaintext only on loopback or with
    /// `allow_plaintext`, like the gRPC port.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// A file holding the bearer token every scrape must send (`authorization: Bearer`); required
    /// when `metrics_listen` is not a loopback address.
    pub metrics_token_file: Option<PathBuf>,
    /// Witnesses whose cosignatures of tree heads are accepted (`AddTreeHeadCosignature`).
    pub witnesses: Vec<crate::ledger::transparency::Witness>,
    /// For embedding and tests: serve on these engines instead of opening `data_dir` (which then
    /// only receives the first admin's token file).
    pub engines: Option<Engines>,
}

/// A journal and a derived-state store to serve on, instead of the data directory's.
#[derive(Clone)]
#[allow(missing_debug_implementations, reason = "trait objects of engines")]
pub struct Engines {
    pub journal: Arc<dyn crate::ledger::journal::Journal>,
    pub derived: Arc<dyn Store>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("limits", &self.limits)
            .field("tls", &self.tls)
            .field("allow_plaintext", &self.allow_plaintext)
            .field("admin_token_file", &self.admin_token_file)
            .field("metrics_listen", &self.metrics_listen)
            .field("metrics_token_file", &self.metrics_token_file)
            .field("engines", &self.engines.as_ref().map(|_| "given"))
            .finish()
    }
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Config {
        Config {
            data_dir,
            journal: None,
            journal_ca: None,
            signing_key: None,
            advertise: None,
            lease: LEASE_DEFAULT,
            limits: Limits::default(),
            tls: None,
            allow_plaintext: false,
            admin_token_file: None,
            metrics_listen: None,
            metrics_token_file: None,
            witnesses: Vec::new(),
            engines: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Open(#[from] crate::datadir::OpenError),
    #[error(transparent)]
    Ledger(#[from] crate::domain::LedgerError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "refusing to serve plaintext on non-loopback address {0}: give --tls-cert and --tls-key, or --allow-plaintext"
    )]
    PlaintextRefused(std::net::SocketAddr),
    #[error("cannot read {path}: {source}")]
    Pem { path: PathBuf, source: std::io::Error },
    #[error("the admin token file: {0}")]
    AdminToken(String),
    #[error("refusing to serve metrics on non-loopback address {0} without a bearer token: give --metrics-token-file")]
    MetricsTokenRequired(std::net::SocketAddr),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("configuration: {0}")]
    Config(String),
}

impl ServeError {
    /// Whether the configuration is at fault, not the store, the network or a client: the command
    /// then exits 2, as it does for clap's own usage errors.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ServeError::Config(_)
                | ServeError::PlaintextRefused(_)
                | ServeError::MetricsTokenRequired(_)
                | ServeError::AdminToken(_)
        )
    }
}

/// The file the first admin token is written to, readable by its owner only.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The principal the server acts as for its own bookkeeping (the first admin token).
fn system() -> Principal {
    Principal {
        name: PrincipalName::parse("system").expect("valid name"),
        role: Role::Admin,
        create_time: 0,
        revoke_time: None,
    }
}

/// Opens the data directory `dir` (upgrading a release's directory in place) and starts the ledger
/// on it (also used by the offline CLI). With the journal in PostgreSQL, the ledger takes part in
/// the writer's lease as `node`: it writes only while it holds the lease.
pub async fn open_ledger(
    dir: &Path,
    limits: &Limits,
    journal: Option<&crate::ledger::journal::PostgresTarget>,
    signing_key: Option<&Path>,
    node: &Node,
) -> Result<(Ledger, crate::ledger::WriterGuard), ServeError> {
    let open_dir = dir.to_path_buf();
    let signing_key = signing_key.map(Path::to_path_buf);
    let journal = journal.cloned();
    let node = node.clone();
    let cache = limits.cache_bytes;
    let options = crate::ledger::Options {
        queue_max: limits.write_queue_max,
        checkpoint_bytes: limits.checkpoint_bytes,
        wall_clock: crate::ledger::system_clock(),
    };
    let started = tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
        let opened = crate::datadir::open(&open_dir, cache, journal.as_ref(), signing_key.as_deref())?;
        let public_key = crate::ledger::journal::hex(&opened.signer.public_key());
        let lease = match (&journal, opened.fence) {
            (Some(target), Some(fence)) => {
                let lease =
                    crate::ledger::journal::lease::Lease::connect(target.clone(), &node.name, node.lease, fence)
                        .map_err(crate::domain::LedgerError::from)?;
                Some(Arc::new(lease) as Arc<dyn crate::ledger::journal::lease::WriterLease>)
            }
            _ => None,
        };
        let (ledger, writer) = Ledger::start_node(opened.journal, opened.derived, opened.signer, options, lease)?;
        if opened.upgraded {
            crate::datadir::finish_upgrade(&open_dir)?;
        }
        tracing::info!(
            public_key,
            file = crate::ledger::signing::PUBLIC_KEY_FILE,
            "journal heads are signed with this key"
        );
        Ok((ledger, writer))
    });
    started.await.map_err(|e| std::io::Error::other(e.to_string()))?
}

/// The journal's PostgreSQL target: `url`, over TLS verified against the CA certificates in the
/// PEM file `ca` when given.
pub fn journal_target(
    url: Option<&str>,
    ca: Option<&Path>,
) -> Result<Option<crate::ledger::journal::PostgresTarget>, ServeError> {
    use crate::ledger::journal::PostgresTarget;
    let Some(url) = url else { return Ok(None) };
    let Some(ca) = ca else { return Ok(Some(PostgresTarget::plain(url))) };
    let pem = read_pem(ca)?;
    Ok(Some(PostgresTarget::with_ca(url, &pem).map_err(crate::domain::LedgerError::from)?))
}

/// The standard health service's name for the writer: NOT_SERVING once writes are stopped.
pub const WRITER_HEALTH_SERVICE: &str = "ipledger.v1.Writer";

/// Keeps the health service true: the writer's service is SERVING only on the node that writes
/// (orchestrators and HAProxy route writes by it); after a storage failure the writer refuses
/// every write until a restart, and the whole server says NOT_SERVING so that an orchestrator
/// restarts it.
async fn report_health(
    reporter: tonic_health::server::HealthReporter,
    mut role: tokio::sync::watch::Receiver<crate::ledger::role::NodeRole>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    mut behind: tokio::sync::watch::Receiver<bool>,
) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    loop {
        let writes_stopped = *stopped.borrow_and_update();
        let lagging = *behind.borrow_and_update();
        let writer = role.borrow_and_update().is_writer();
        if writes_stopped {
            tracing::error!("writes are stopped after a storage failure: health says NOT_SERVING; restart the server");
        }
        let overall = if writes_stopped || lagging { NotServing } else { Serving };
        let writes = if writer && !writes_stopped { Serving } else { NotServing };
        reporter.set_service_status("", overall).await;
        reporter.set_service_status(WRITER_HEALTH_SERVICE, writes).await;
        tokio::select! {
            changed = role.changed() => if changed.is_err() { return },
            changed = stopped.changed() => if changed.is_err() { return },
            changed = behind.changed() => if changed.is_err() { return },
        }
    }
}

/// Unauthenticated HTTP health for load balancers that cannot speak gRPC health (HAProxy's
/// `option httpchk`): `/healthz` answers 200 while the node serves, `/healthz/writer` 200 only on
/// the node that writes (503 elsewhere, naming the writer when known).
fn health_routes(ledger: &Ledger) -> axum::Router {
    use axum::http::StatusCode;
    let (role, stopped, behind) = (ledger.role(), ledger.writes_stopped(), ledger.behind());
    let serving = stopped.clone();
    axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let answer = match (*serving.borrow(), *behind.borrow()) {
                    (true, _) => {
                        (StatusCode::SERVICE_UNAVAILABLE, "writes stopped: restart once the logged cause is fixed\n")
                    }
                    (false, true) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "behind the journal for longer than three leases (see the log)\n",
                    ),
                    (false, false) => (StatusCode::OK, "serving\n"),
                };
                async move { answer }
            }),
        )
        .route(
            "/healthz/writer",
            axum::routing::get(move || {
                let answer = match (&*role.borrow(), *stopped.borrow()) {
                    (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "writes stopped\n".to_owned()),
                    (crate::ledger::role::NodeRole::Writer { .. }, false) => (StatusCode::OK, "writer\n".to_owned()),
                    (crate::ledger::role::NodeRole::Follower { writer }, false) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("follower; the writer is {}\n", writer.as_deref().unwrap_or("being elected")),
                    ),
                };
                async move { answer }
            }),
        )
}

/// Secure by default: on a store that never had a principal, create an admin and write its token
/// to a file only the owner can read. A store whose principals are all revoked is served as it is
/// (creating `admin` again would collide with the revoked one): an operator creates one offline.
async fn bootstrap_admin(ledger: &Ledger, data_dir: &Path, token_file: Option<&Path>) -> Result<(), ServeError> {
    if !ledger.principals().is_empty() {
        return Ok(());
    }
    let (ever, _) = ledger.read(|store| crate::ledger::query::list_principals(store, 1, "")).await?;
    if !ever.is_empty() {
        tracing::warn!(
            data_dir = %data_dir.display(),
            "every principal is revoked: no caller can authenticate; stop the server and run \
             `ipledger token create --data-dir <dir> --name <name> --role admin` to create one"
        );
        return Ok(());
    }
    let name = PrincipalName::parse("admin").expect("valid name");
    if let Some(file) = token_file {
        let token =
            std::fs::read_to_string(file).map_err(|source| ServeError::Pem { path: file.to_path_buf(), source })?;
        let token = crate::domain::principal::parse_given_token(token.trim())
            .map_err(|why| ServeError::AdminToken(why.to_owned()))?;
        let command = crate::ledger::Command::CreatePrincipal {
            name,
            role: Role::Admin,
            token_hash: crate::domain::principal::token_hash(token),
        };
        ledger.write(&system(), command).await?;
        tracing::warn!(path = %file.display(), "created the first admin with the token of this file");
        return Ok(());
    }
    let (_, token) = crate::ledger::tokens::create(ledger, &system(), name, Role::Admin).await?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    write_secret(&path, &token)?;
    tracing::warn!(path = %path.display(), "created the first admin token; read it from this file (owner-only) and keep it safe");
    Ok(())
}

fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn read_pem(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Pem { path: path.to_path_buf(), source })
}

/// Serves on `listener` until `shutdown` resolves, then drains and returns. In order: the
/// address rules, the ledger, the first admin, the metrics port, the routes, the transport; then,
/// at shutdown, every task that holds the ledger, and the writer last (it drains the queue).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    config.limits.check()?;
    if config.witnesses.len() > crate::ledger::transparency::WITNESSES_MAX {
        return Err(ServeError::Config(format!(
            "--witness names {} witnesses; at most {}",
            config.witnesses.len(),
            crate::ledger::transparency::WITNESSES_MAX
        )));
    }
    for (i, w) in config.witnesses.iter().enumerate() {
        if config.witnesses[..i].iter().any(|o| o.name == w.name || o.key == w.key) {
            return Err(ServeError::Config(format!("--witness names {} (or its key) twice", w.name)));
        }
    }
    let address = listener.local_addr()?;
    if config.tls.is_none() && !address.ip().is_loopback() && !config.allow_plaintext {
        return Err(ServeError::PlaintextRefused(address));
    }
    let metrics_access = metrics_access(&config)?;
    let (ledger, writer) = start_ledger(&config, address).await?;
    let bootstrap = first_admin(&ledger, &config).await?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let metrics_task = match metrics_access {
        Some((address, access)) => Some(start_metrics(address, access, &ledger, stopping.clone()).await?),
        None => None,
    };
    let routes = routes(ledger, &config, stopping).await?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::info!(
        %address,
        tls = config.tls.is_some(),
        mutual_tls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        data_dir = %config.data_dir.display(),
        "serving ipledger.v1 (reflection v1 and v1alpha, grpc.health.v1) and the dashboard at /dashboard/"
    );
    transport(&config)?
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            stopping_tx.send_replace(true);
        })
        .await?;
    if let Some(task) = metrics_task {
        task.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    }
    if let Some(task) = bootstrap {
        task.abort();
        let _ = task.await;
    }
    // Every service (and so every `Ledger` clone) is dropped with the router: the writer drains.
    tokio::task::spawn_blocking(move || writer.join()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::info!("stopped: every accepted write is committed and flushed");
    Ok(())
}

/// The metrics port's address and access, checked: it carries every region's exposure, so the
/// gRPC port's rule applies (TLS or loopback), and a token is required off loopback.
fn metrics_access(config: &Config) -> Result<Option<(SocketAddr, crate::scrape::Access)>, ServeError> {
    let Some(metrics) = config.metrics_listen else { return Ok(None) };
    if config.tls.is_none() && !metrics.ip().is_loopback() && !config.allow_plaintext {
        return Err(ServeError::PlaintextRefused(metrics));
    }
    if config.metrics_token_file.is_none() && !metrics.ip().is_loopback() {
        return Err(ServeError::MetricsTokenRequired(metrics));
    }
    let token_sha256 = match &config.metrics_token_file {
        Some(path) => Some(crate::scrape::read_token(path).map_err(ServeError::Metrics)?),
        None => None,
    };
    let tls = match &config.tls {
        Some(tls) => {
            Some(crate::scrape::tls_config(&read_pem(&tls.cert)?, &read_pem(&tls.key)?).map_err(ServeError::Metrics)?)
        }
        None => None,
    };
    Ok(Some((metrics, crate::scrape::Access { tls, token_sha256 })))
}

/// The ledger on the configured engines (tests), or on the data directory and journal.
async fn start_ledger(config: &Config, address: SocketAddr) -> Result<(Ledger, WriterGuard), ServeError> {
    let limits = &config.limits;
    match &config.engines {
        Some(engines) => {
            // The directory still receives the first admin's token.
            crate::datadir::create_private(&config.data_dir)?;
            let signer = crate::ledger::signing::Signer::open(&config.data_dir, config.signing_key.as_deref())
                .map_err(ServeError::AdminToken)?;
            let options = crate::ledger::Options {
                queue_max: limits.write_queue_max,
                checkpoint_bytes: limits.checkpoint_bytes,
                wall_clock: crate::ledger::system_clock(),
            };
            Ok(Ledger::start(engines.journal.clone(), engines.derived.clone(), signer, options)?)
        }
        None => {
            let name = config.advertise.clone().unwrap_or_else(|| address.to_string());
            let node = Node { name, lease: config.lease };
            let target = journal_target(config.journal.as_deref(), config.journal_ca.as_deref())?;
            open_ledger(&config.data_dir, limits, target.as_ref(), config.signing_key.as_deref(), &node).await
        }
    }
}

/// Creates the first admin's token when this node writes; in a cluster, a task does it once this
/// node first holds the lease (returned: it holds a handle of the ledger, so it is aborted at
/// shutdown, or the writer would wait for it).
async fn first_admin(ledger: &Ledger, config: &Config) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    // A node of a cluster competes for the writer's lease at once: give it a moment, so that a
    // lone node (or the first) has created the first admin before it serves.
    let mut role = ledger.role();
    let _ = tokio::time::timeout(Duration::from_secs(2), role.wait_for(|r| r.is_writer())).await;
    if ledger.role().borrow().is_writer() {
        bootstrap_admin(ledger, &config.data_dir, config.admin_token_file.as_deref()).await?;
        return Ok(None);
    }
    let (ledger, dir, file) = (ledger.clone(), config.data_dir.clone(), config.admin_token_file.clone());
    Ok(Some(tokio::spawn(async move {
        let mut role = ledger.role();
        if role.wait_for(|r| r.is_writer()).await.is_ok()
            && let Err(e) = bootstrap_admin(&ledger, &dir, file.as_deref()).await
        {
            tracing::error!(error = %e, "cannot create the first admin");
        }
    })))
}

/// The metrics port, serving until `stopping` turns true.
async fn start_metrics(
    address: SocketAddr,
    access: crate::scrape::Access,
    ledger: &Ledger,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, ServeError> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(
        address = %listener.local_addr()?,
        tls = access.tls.is_some(),
        bearer_token = access.token_sha256.is_some(),
        "serving Prometheus metrics at /metrics"
    );
    Ok(tokio::spawn(crate::scrape::serve(listener, ledger.clone(), access, async move {
        let _ = stopping.wait_for(|s| *s).await;
    })))
}

/// Every route of the port: health, reflection, the six services (size limits, compression and
/// authentication on each), the dashboard and its JSON API, the plain-HTTP health checks. Takes
/// the ledger: the routes hold its only handles from here on.
async fn routes(
    ledger: Ledger,
    config: &Config,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<tonic::service::Routes, ServeError> {
    let limits = &config.limits;
    let health_service = health_service(&ledger).await;
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    let auth = Authenticate {
        ledger: ledger.clone(),
        client_certificates: config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
    };
    let scratch_dir = config.engines.is_none().then(|| config.data_dir.clone());
    let api = Api::new(ledger.clone(), limits.quotas.clone(), limits.timeouts, stopping, scratch_dir)
        .with_witnesses(config.witnesses.clone());
    let health = health_routes(&ledger);
    drop(ledger);
    // Size limits and compression are set on the generated service, then it is wrapped.
    macro_rules! limited {
        ($server:expr) => {
            InterceptedService::new(
                $server
                    .max_decoding_message_size(limits.request_bytes_max)
                    .max_encoding_message_size(limits.response_bytes_max)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .send_compressed(CompressionEncoding::Gzip),
                auth.clone(),
            )
        };
    }
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(limited!(pb::pledge_service_server::PledgeServiceServer::new(api.clone())))
        .add_service(limited!(pb::credit_line_service_server::CreditLineServiceServer::new(api.clone())))
        .add_service(limited!(pb::exposure_service_server::ExposureServiceServer::new(api.clone())))
        .add_service(limited!(pb::admin_service_server::AdminServiceServer::new(api.clone())))
        .add_service(limited!(pb::journal_service_server::JournalServiceServer::new(api.clone())))
        .add_service(limited!(pb::risk_service_server::RiskServiceServer::new(api.clone())));
    // The dashboard page and its JSON API share the port (and so its TLS) with gRPC.
    Ok(tonic::service::Routes::from(
        routes
            .into_axum_router()
            .merge(crate::http::router(crate::http::HttpState { api, auth }))
            .merge(health)
            .layer(axum::middleware::from_fn(crate::grpc::client_deadline)),
    ))
}

/// `grpc.health.v1` for every service, following the ledger's role and state.
async fn health_service(
    ledger: &Ledger,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<pb::pledge_service_server::PledgeServiceServer<Api>>().await;
    health_reporter.set_serving::<pb::credit_line_service_server::CreditLineServiceServer<Api>>().await;
    health_reporter.set_serving::<pb::exposure_service_server::ExposureServiceServer<Api>>().await;
    health_reporter.set_serving::<pb::admin_service_server::AdminServiceServer<Api>>().await;
    health_reporter.set_serving::<pb::journal_service_server::JournalServiceServer<Api>>().await;
    health_reporter.set_serving::<pb::risk_service_server::RiskServiceServer<Api>>().await;
    tokio::spawn(report_health(health_reporter, ledger.role(), ledger.writes_stopped(), ledger.behind()));
    health_service
}

/// Both reflection versions, describing everything served, each other included, so that any
/// client (grpcurl, buf curl, grpcio, evans) sees the same list whichever version it speaks.
/// Reflection reveals only the published schema, so it needs no token: a tool then reaches the
/// method itself, which answers UNAUTHENTICATED without one.
#[allow(clippy::type_complexity)]
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let descriptor_sets = [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut v1 = tonic_reflection::server::Builder::configure().include_reflection_service(false);
    let mut v1alpha = tonic_reflection::server::Builder::configure().include_reflection_service(false);
    for set in descriptor_sets {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    Ok((v1.build_v1()?, v1alpha.build_v1alpha()?))
}

/// The HTTP/2 server: TLS (client certificates optional), streams per connection, keepalives,
/// and HTTP/1.1 for browsers reaching the dashboard without TLS. Our own listener gets no
/// TCP_NODELAY from tonic (the caller sets it); without it small calls stall ~40 ms.
fn transport(config: &Config) -> Result<tonic::transport::Server, ServeError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        let mut tls_config =
            ServerTlsConfig::new().identity(Identity::from_pem(read_pem(&tls.cert)?, read_pem(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            // Optional client certificates: callers with a bearer token need none.
            tls_config = tls_config.client_ca_root(Certificate::from_pem(read_pem(ca)?)).client_auth_optional(true);
        }
        builder = builder.tls_config(tls_config)?;
    }
    Ok(builder
        .max_concurrent_streams(config.limits.streams_per_connection_max)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .accept_http1(true))
}
