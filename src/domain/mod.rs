//! The domain: pure, synchronous types and rules of IP-pledge financing. Nothing here knows about
//! gRPC, protobuf, storage or async runtimes; every type can only hold valid values.

pub mod access;
pub mod alert;
pub mod asof;
pub mod asof_risk;
pub mod credit_line;
pub mod error;
pub mod exposure;
pub mod ident;
pub mod money;
pub mod pledge;
pub mod principal;
pub mod programme;
pub mod reason;
pub mod region;
pub mod right;
pub mod risk;
pub mod statistics;
pub mod text;

pub use error::{FieldViolation, LedgerError};
pub use reason::Reason;

/// A server-assigned instant in microseconds since the Unix epoch (UTC). The writer makes them
/// strictly increasing, so two writes never share one.
pub type Micros = i64;
