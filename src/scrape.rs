//! Prometheus metrics on a separate HTTP port: the registry's counters (`metrics`), then gauges read
//! from the ledger at each scrape: the write queue's depth, the data size, and exposure gauges per
//! province and city (secured amount, pledge count, credit drawn) so Grafana can chart them with no
//! extra service.
//!
//! The gauges are secured amounts of every province and city, so the port follows the gRPC port's
//! rule: TLS (the same certificate) or loopback, and a bearer token (`authorization: Bearer`, as
//! Prometheus sends it from `credentials_file`) that the server requires whenever it was given one
//! and refuses to start without on a non-loopback address.

use crate::domain::LedgerError;
use crate::domain::exposure::{Bucket, Dimension};
use crate::domain::region::Region;
use crate::ledger::{Ledger, query};
use crate::metrics::METRICS;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    level: &'static str,
    region: String,
    name: String,
}

/// The whole scrape: the counters, then gauges read from the ledger now.
// Longer than ~70 lines: the gauges of one scrape, one after another, each a few lines.
pub fn render(ledger: &Ledger, store: &dyn crate::store::Store) -> Result<String, String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &METRICS.registry).map_err(|e| e.to_string())?;
    let mut registry = Registry::with_prefix("ipledger");
    let queue = Gauge::<i64>::default();
    queue.set(ledger.queue_depth() as i64);
    registry.register("write_queue_depth", "Writes waiting for the writer", queue);
    let reads = Gauge::<i64>::default();
    reads.set(ledger.reads_in_flight() as i64);
    registry.register(
        "reads_in_flight",
        "Reads running on the blocking pool (each stops at its call's deadline)",
        reads,
    );
    let journal_bytes = ledger.journal().size_on_disk().map_err(|e| e.to_string())?;
    let size = Gauge::<i64>::default();
    size.set((store.size_on_disk().map_err(|e| e.to_string())? + journal_bytes) as i64);
    registry.register("data_bytes", "Bytes the journal and derived state occupy on disk", size);
    let journal_size = Gauge::<i64>::default();
    journal_size.set(journal_bytes as i64);
    registry.register("journal_bytes", "Bytes the journal (the ground state) occupies on disk", journal_size);
    let head = Gauge::<i64>::default();
    head.set(*ledger.committed().borrow() as i64);
    registry.register(
        "journal_head_sequence",
        "The sequence of the last journal entry this node applied (and serves reads from)",
        head,
    );
    // In a cluster: which node writes, and how far a follower is behind the journal.
    let writer = Gauge::<i64>::default();
    writer.set(i64::from(ledger.role().borrow().is_writer()));
    registry.register("writer", "1 on the node that writes (holds the writer's lease), 0 on a follower", writer);
    let durable = ledger.journal().head().map_err(|e| e.to_string())?.sequence;
    let lag = Gauge::<i64>::default();
    lag.set(durable.saturating_sub(*ledger.committed().borrow()) as i64);
    registry.register("journal_lag_entries", "Journal entries durable but not yet applied on this node", lag);
    let secured = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
    let pledges = Family::<RegionLabels, Gauge>::default();
    let drawn = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
    let at_risk = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
    let defaulted = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
    let paid = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
    let yuan = |m: crate::domain::money::Money| m.fen() as f64 / 100.0;
    for province in Region::COUNTRY.children() {
        for (level, region) in
            std::iter::once(("province", *province)).chain(province.children().iter().map(|c| ("city", *c)))
        {
            let row = query::exposure_row(store, &Bucket { region, dimension: Dimension::Total })
                .map_err(|e| e.to_string())?;
            let labels = RegionLabels { level, region: region.code_string(), name: region.name().to_owned() };
            secured.get_or_create(&labels).set(yuan(row.secured_amount));
            pledges.get_or_create(&labels).set(row.pledge_count as i64);
            drawn.get_or_create(&labels).set(yuan(row.credit_drawn));
            at_risk.get_or_create(&labels).set(yuan(row.at_risk_amount));
            defaulted.get_or_create(&labels).set(yuan(row.defaulted_amount));
            paid.get_or_create(&labels).set(yuan(row.compensation_paid));
        }
    }
    registry.register("exposure_secured_amount_yuan", "Secured amount of active pledges by region", secured);
    registry.register("exposure_pledges", "Active pledges by region", pledges);
    registry.register("exposure_credit_drawn_yuan", "Credit drawn on lines signed in the region", drawn);
    registry.register(
        "exposure_at_risk_amount_yuan",
        "Secured amount of active pledges whose right lost force or is frozen, by region",
        at_risk,
    );
    registry.register(
        "exposure_defaulted_amount_yuan",
        "Outstanding principal of active pledges in default, not resolved, by region",
        defaulted,
    );
    registry.register(
        "exposure_compensation_paid_yuan",
        "Risk compensation paid on claims for pledges of the region",
        paid,
    );
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| e.to_string())?;
    Ok(text)
}

/// Who may scrape, and over what.
#[derive(Clone, Default)]
pub struct Access {
    /// TLS for the port; plaintext when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The SHA-256 of the bearer token a scrape must carry; any scrape when `None`.
    pub token_sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("tls", &self.tls.is_some()).field("token", &self.token_sha256.is_some()).finish()
    }
}

/// Characters a metrics token has at least: a guessable one protects nothing.
pub const TOKEN_CHARS_MIN: usize = 16;
/// Bytes of a metrics token file read at most.
const TOKEN_FILE_BYTES_MAX: u64 = 4096;

/// Reads the metrics bearer token from a file (a mounted secret), keeping only its hash.
pub fn read_token(path: &std::path::Path) -> Result<[u8; 32], String> {
    use sha2::Digest;
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_FILE_BYTES_MAX).read_to_string(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.chars().count() < TOKEN_CHARS_MIN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} must hold one token of at least {TOKEN_CHARS_MIN} characters without spaces",
            path.display()
        ));
    }
    Ok(sha2::Sha256::digest(token.as_bytes()).into())
}

/// Concurrent TLS handshakes at most; further connections wait in the kernel's accept queue.
const HANDSHAKES_MAX: usize = 64;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A listener whose connections are TLS streams: handshakes run in their own tasks, so one slow
/// client never holds up the others.
struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
}

impl TlsListener {
    fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, ready) = tokio::sync::mpsc::channel(HANDSHAKES_MAX);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = sender.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "metrics: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The acceptor task ends only with the listener: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[derive(Clone)]
struct State {
    ledger: Ledger,
    token_sha256: Option<[u8; 32]>,
}

/// Whether `headers` carry the bearer token whose hash is `expected` (any, when none is set).
fn authorized(headers: &axum::http::HeaderMap, expected: Option<&[u8; 32]>) -> bool {
    use sha2::Digest;
    let Some(expected) = expected else { return true };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    // Hashes are compared, so the comparison's time says nothing about the token.
    presented.is_some_and(|token| <[u8; 32]>::from(sha2::Sha256::digest(token.as_bytes())) == *expected)
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves, over TLS and behind a bearer
/// token as `access` says.
pub async fn serve(
    listener: TcpListener,
    ledger: Ledger,
    access: Access,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    async fn scrape(
        axum::extract::State(state): axum::extract::State<State>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        if !authorized(&headers, state.token_sha256.as_ref()) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"ipledger metrics\"")],
                "a scrape needs `authorization: Bearer <metrics token>`\n",
            )
                .into_response();
        }
        let handle = state.ledger.clone();
        match state.ledger.read(move |store| Ok(render(&handle, store))).await {
            Ok(Ok(text)) => {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
            }
            Ok(Err(e)) => {
                let error = LedgerError::Internal(e);
                (StatusCode::INTERNAL_SERVER_ERROR, crate::grpc::status::public_message(&error)).into_response()
            }
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, crate::grpc::status::public_message(&e)).into_response(),
        }
    }
    let state = State { ledger, token_sha256: access.token_sha256 };
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(state);
    match access.tls {
        Some(config) => axum::serve(TlsListener::new(listener, config)?, app).with_graceful_shutdown(shutdown).await,
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
    }
}

/// A TLS configuration for the metrics port from the gRPC port's PEM certificate chain and key.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| e.to_string())?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
