//! ipledger: the system of record for intellectual-property pledge financing.
//!
//! Layers, from the inside out: `domain` (pure types and rules), `store` (the narrow key-value
//! interface and its sled backend), `ledger` (the single writer, the state machine and the read
//! path), `grpc` (thin handlers and the error table) and `server` (wiring, limits, shutdown).

pub mod datadir;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod protojson;
pub mod scrape;
pub mod server;
pub mod store;
pub mod workload;

/// Generated protobuf messages and gRPC services of `ipledger.v1`.
#[allow(missing_debug_implementations, clippy::all)]
pub mod proto {
    tonic::include_proto!("ipledger.v1");

    /// Encoded descriptors of `ipledger.v1` (with its imports), for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("ipledger_descriptor");
}
