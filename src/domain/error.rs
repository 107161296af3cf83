//! What can go wrong with a request, in the ledger's own terms; `grpc::status` is the one table
//! that maps these to gRPC status codes, reasons and details.

pub use super::reason::Reason;
use std::fmt;

/// One field of a request and what is wrong with it. `field` is the request path in the API's
/// JSON names (`pledge.rights[0].number`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl fmt::Display) -> FieldViolation {
        FieldViolation { field: field.into(), description: description.to_string() }
    }
}

/// Why a request was refused. Every variant has a stable UPPER_SNAKE reason (the ErrorInfo
/// reason clients branch on) and metadata naming the things involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The request is malformed in itself: INVALID_ARGUMENT with field violations.
    #[error("invalid request: {}", describe(.violations))]
    Invalid { reason: Reason, violations: Vec<FieldViolation> },
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// The request id was used before for a request with other content.
    #[error("request id {request_id} was already used for a different request")]
    RequestIdReused { request_id: String },
    /// A rule broken by the ledger's current state: FAILED_PRECONDITION.
    #[error("{message}")]
    Refused { reason: Reason, message: String, metadata: Vec<(&'static str, String)> },
    /// No valid credentials: missing, malformed, unknown or revoked token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Valid credentials, but the request reaches outside the principal's scope.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Too many requests in flight: back off and retry.
    #[error("too many requests in flight (at most {0}); retry with backoff")]
    TooManyRequests(usize),
    /// The call ran past its deadline; a write may still have been committed (retry with the same
    /// request id to learn its result).
    #[error("deadline of {0} ms exceeded")]
    DeadlineExceeded(u64),
    /// A bound on concurrent work was reached, the server's own or the principal's share of it:
    /// back off and retry. `reason` names the bound (TOO_MANY_STREAMS, ...).
    #[error("{what}: at most {limit} {}; retry with backoff", if *.per_principal { "per principal" } else { "on this server" })]
    LimitReached { reason: Reason, what: &'static str, limit: u64, per_principal: bool },
    /// The answer would exceed the response size bound: the caller should ask for a smaller page.
    #[error("the answer would be larger than {bytes_max} bytes: ask for a smaller page (pageSize)")]
    ResponseTooLarge { bytes_max: usize },
    /// The write queue is full: the caller should back off and retry.
    #[error("the write queue is full ({0} requests waiting); retry with backoff")]
    Overloaded(usize),
    /// The server is shutting down or the store failed; nothing was written.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This node follows another node's journal and does not write: send writes to the writer
    /// (its advertised address when known).
    #[error("this node does not write; send writes to {}", .writer.as_deref().unwrap_or("the writer (being elected)"))]
    NotWriter { writer: Option<String> },
    /// The journal could not tell whether the write was committed (the connection to it was lost
    /// during the commit and it stayed unreachable): retry with the same request id, which is
    /// answered with the committed result if there is one and decided anew if there is none.
    #[error("the write's outcome is unknown ({0}); retry with the same request id")]
    OutcomeUnknown(String),
    /// A broken invariant or unreadable record: a bug or corruption, never the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl LedgerError {
    pub fn invalid(violations: Vec<FieldViolation>) -> LedgerError {
        assert!(!violations.is_empty());
        LedgerError::Invalid { reason: Reason::INVALID_FIELDS, violations }
    }

    pub fn invalid_field(field: impl Into<String>, description: impl fmt::Display) -> LedgerError {
        LedgerError::invalid(vec![FieldViolation::new(field, description)])
    }

    pub fn refused(reason: Reason, message: impl Into<String>) -> LedgerError {
        LedgerError::Refused { reason, message: message.into(), metadata: Vec::new() }
    }

    pub fn with(mut self, key: &'static str, value: impl fmt::Display) -> LedgerError {
        if let LedgerError::Refused { metadata, .. } = &mut self {
            metadata.push((key, value.to_string()));
        }
        self
    }

    /// The machine-readable reason of this error, as clients see it.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The reason of this error.
    pub fn kind(&self) -> Reason {
        match self {
            LedgerError::Invalid { reason, .. } => *reason,
            LedgerError::NotFound { .. } => Reason::NOT_FOUND,
            LedgerError::RequestIdReused { .. } => Reason::REQUEST_ID_REUSED,
            LedgerError::Refused { reason, .. } => *reason,
            LedgerError::Unauthenticated(_) => Reason::UNAUTHENTICATED,
            LedgerError::PermissionDenied(_) => Reason::PERMISSION_DENIED,
            LedgerError::TooManyRequests(_) => Reason::TOO_MANY_REQUESTS,
            LedgerError::DeadlineExceeded(_) => Reason::DEADLINE_EXCEEDED,
            LedgerError::Overloaded(_) => Reason::WRITE_QUEUE_FULL,
            LedgerError::LimitReached { reason, .. } => *reason,
            LedgerError::ResponseTooLarge { .. } => Reason::RESPONSE_TOO_LARGE,
            LedgerError::Unavailable(_) => Reason::UNAVAILABLE,
            LedgerError::NotWriter { .. } => Reason::NOT_WRITER,
            LedgerError::OutcomeUnknown(_) => Reason::OUTCOME_UNKNOWN,
            LedgerError::Internal(_) => Reason::INTERNAL,
        }
    }
}
