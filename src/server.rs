//! Wiring: opens the store, starts the writer, serves the three ledger services with health and
//! reflection (v1 and v1alpha) under explicit limits, and shuts down gracefully: in-flight requests
//! finish, the writer commits everything it accepted, then the store is dropped.

use crate::grpc::{CreditLineApi, ExposureApi, PledgeApi};
use crate::ledger::Ledger;
use crate::proto as pb;
use crate::store::SledStore;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;

/// Limits of one server; every field has a production default.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request message: an import record or a pledge with 500 rights fits many times over.
    pub request_bytes_max: usize,
    /// Largest response message: a full page of pledges with many rights.
    pub response_bytes_max: usize,
    /// Writes waiting for the writer at most; beyond it unary writes get RESOURCE_EXHAUSTED.
    pub write_queue_max: usize,
    /// Concurrent HTTP/2 streams per connection.
    pub streams_per_connection_max: u32,
    /// sled's page cache.
    pub cache_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_bytes_max: 4 * 1024 * 1024,
            response_bytes_max: 64 * 1024 * 1024,
            write_queue_max: 65_536,
            streams_per_connection_max: 1024,
            cache_bytes: 512 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the data directory {dir}: {source}")]
    Store { dir: PathBuf, source: crate::store::StoreError },
    #[error(transparent)]
    Ledger(#[from] crate::domain::LedgerError),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves on `listener` until `shutdown` resolves, then drains and returns.
pub async fn serve(
    listener: TcpListener,
    data_dir: PathBuf,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let open_dir = data_dir.clone();
    let cache = limits.cache_bytes;
    let store = tokio::task::spawn_blocking(move || SledStore::open(&open_dir, cache))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .map_err(|source| ServeError::Store { dir: data_dir.clone(), source })?;
    let (ledger, writer) = Ledger::start(Arc::new(store), limits.write_queue_max)?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<pb::pledge_service_server::PledgeServiceServer<PledgeApi>>().await;
    health_reporter.set_serving::<pb::credit_line_service_server::CreditLineServiceServer<CreditLineApi>>().await;
    health_reporter.set_serving::<pb::exposure_service_server::ExposureServiceServer<ExposureApi>>().await;

    // Both reflection versions describe everything served, each other included, so any client
    // (grpcurl, buf curl, grpcio, evans) sees the same list whichever version it speaks.
    let descriptor_sets = [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut reflection_v1 = tonic_reflection::server::Builder::configure().include_reflection_service(false);
    let mut reflection_v1alpha = tonic_reflection::server::Builder::configure().include_reflection_service(false);
    for set in descriptor_sets {
        reflection_v1 = reflection_v1.register_encoded_file_descriptor_set(set);
        reflection_v1alpha = reflection_v1alpha.register_encoded_file_descriptor_set(set);
    }
    let reflection_v1 = reflection_v1.build_v1()?;
    let reflection_v1alpha = reflection_v1alpha.build_v1alpha()?;

    macro_rules! limited {
        ($server:expr) => {
            $server
                .max_decoding_message_size(limits.request_bytes_max)
                .max_encoding_message_size(limits.response_bytes_max)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
        };
    }
    let pledges = limited!(pb::pledge_service_server::PledgeServiceServer::new(PledgeApi { ledger: ledger.clone() }));
    let credit_lines = limited!(pb::credit_line_service_server::CreditLineServiceServer::new(CreditLineApi {
        ledger: ledger.clone()
    }));
    let exposure =
        limited!(pb::exposure_service_server::ExposureServiceServer::new(ExposureApi { ledger: ledger.clone() }));
    drop(ledger);

    let address = listener.local_addr()?;
    // Our own listener gets no TCP_NODELAY from tonic; without it small calls stall ~40 ms.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::info!(%address, data_dir = %data_dir.display(), "serving ipledger.v1 (reflection v1 and v1alpha, grpc.health.v1)");
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.streams_per_connection_max)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(pledges)
        .add_service(credit_lines)
        .add_service(exposure)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    // Every service (and so every `Ledger` clone) is dropped with the router: the writer drains.
    tokio::task::spawn_blocking(move || writer.join()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    tracing::info!("stopped: every accepted write is committed and flushed");
    Ok(())
}
