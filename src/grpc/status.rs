//! The one table from ledger errors to gRPC statuses. Every status carries a google.rpc.ErrorInfo
//! (domain `ipledger.v1`) whose reason clients can branch on; malformed requests add a BadRequest
//! with one violation per field, overload adds a RetryInfo. Internal and unavailable errors carry
//! storage or program detail that is no client's business: the client reads a generic message with
//! an error id, and the server log carries the detail under the same id.

use crate::domain::LedgerError;
use std::collections::HashMap;
use std::time::Duration;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

pub const ERROR_DOMAIN: &str = "ipledger.v1";

/// How long an overloaded caller should wait before retrying.
const OVERLOAD_RETRY_DELAY_MS: u64 = 50;

/// The ErrorInfo metadata key of the id under which the server log carries a hidden detail.
pub const ERROR_ID_KEY: &str = "errorId";

/// What a client may read of `error`, and the id of the log line with the detail when it is hidden.
fn public(error: &LedgerError) -> (String, Option<String>) {
    let generic = match error {
        LedgerError::Internal(_) => "internal error",
        LedgerError::Unavailable(_) => "the service is unavailable",
        LedgerError::OutcomeUnknown(_) => {
            "the write's outcome is unknown (the journal was unreachable during its commit); retry with the same request id"
        }
        _ => return (error.to_string(), None),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(error_id = %id, reason = error.reason(), detail = %error, "error detail withheld from the client");
    (format!("{generic}; the server log has the detail under error id {id}"), Some(id))
}

/// The message a client may read for `error` (for answers that carry no status, such as an
/// import's rejections): internal and storage details are logged under an id and not returned.
pub fn public_message(error: &LedgerError) -> String {
    public(error).0
}

// Longer than ~70 lines: the one table from `LedgerError` to a gRPC status and its details, kept
// whole so that every error is seen mapped in one place.
pub fn to_status(error: LedgerError) -> Status {
    let reason = error.reason();
    let (message, error_id) = public(&error);
    let hidden = || error_id.iter().map(|id| (ERROR_ID_KEY.to_owned(), id.clone())).collect::<HashMap<_, _>>();
    let mut details = ErrorDetails::new();
    let code = match error {
        LedgerError::Invalid { violations, .. } => {
            details.set_bad_request(
                violations.into_iter().map(|v| FieldViolation::new(v.field, v.description)).collect::<Vec<_>>(),
            );
            details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
            Code::InvalidArgument
        }
        LedgerError::NotFound { resource, id } => {
            details.set_resource_info(resource, id, "", "");
            details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
            Code::NotFound
        }
        LedgerError::RequestIdReused { request_id } => {
            details.set_error_info(reason, ERROR_DOMAIN, HashMap::from([("requestId".to_owned(), request_id)]));
            Code::AlreadyExists
        }
        LedgerError::Refused { metadata, .. } => {
            let metadata: HashMap<String, String> = metadata.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            details.set_error_info(reason, ERROR_DOMAIN, metadata);
            Code::FailedPrecondition
        }
        LedgerError::Unauthenticated(_) => {
            details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
            Code::Unauthenticated
        }
        LedgerError::PermissionDenied(_) => {
            details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
            Code::PermissionDenied
        }
        LedgerError::DeadlineExceeded(_) => {
            details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
            Code::DeadlineExceeded
        }
        LedgerError::Overloaded(_) | LedgerError::TooManyRequests(_) => {
            details.set_retry_info(Some(Duration::from_millis(OVERLOAD_RETRY_DELAY_MS)));
            details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
            Code::ResourceExhausted
        }
        LedgerError::ResponseTooLarge { bytes_max } => {
            details.set_error_info(
                reason,
                ERROR_DOMAIN,
                HashMap::from([("bytesMax".to_owned(), bytes_max.to_string())]),
            );
            Code::OutOfRange
        }
        LedgerError::LimitReached { limit, per_principal, .. } => {
            details.set_retry_info(Some(Duration::from_millis(OVERLOAD_RETRY_DELAY_MS)));
            let scope = if per_principal { "principal" } else { "server" };
            let metadata =
                HashMap::from([("limit".to_owned(), limit.to_string()), ("scope".to_owned(), scope.to_owned())]);
            details.set_error_info(reason, ERROR_DOMAIN, metadata);
            Code::ResourceExhausted
        }
        LedgerError::Unavailable(_) => {
            details.set_error_info(reason, ERROR_DOMAIN, hidden());
            Code::Unavailable
        }
        LedgerError::NotWriter { writer } => {
            // Retry at once, at the writer when it is named.
            details.set_retry_info(Some(Duration::from_millis(OVERLOAD_RETRY_DELAY_MS)));
            details.set_error_info(
                reason,
                ERROR_DOMAIN,
                writer.map(|w| ("writer".to_owned(), w)).into_iter().collect::<HashMap<_, _>>(),
            );
            Code::Unavailable
        }
        LedgerError::OutcomeUnknown(_) => {
            details.set_error_info(reason, ERROR_DOMAIN, hidden());
            Code::Unavailable
        }
        LedgerError::Internal(_) => {
            details.set_error_info(reason, ERROR_DOMAIN, hidden());
            Code::Internal
        }
    };
    Status::with_error_details(code, message, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Reason;

    /// An error carrying `reason`, built as the code builds one.
    fn sample(reason: Reason) -> LedgerError {
        match reason {
            Reason::INVALID_FIELDS | Reason::TERM_EXCEEDS_RIGHT_EXPIRY => {
                LedgerError::Invalid { reason, violations: vec![crate::domain::FieldViolation::new("f", "d")] }
            }
            Reason::REQUEST_ID_REUSED => LedgerError::RequestIdReused { request_id: "r".into() },
            Reason::NOT_FOUND => LedgerError::NotFound { resource: "pledge", id: "x".into() },
            Reason::UNAUTHENTICATED => LedgerError::Unauthenticated("x".into()),
            Reason::PERMISSION_DENIED => LedgerError::PermissionDenied("x".into()),
            Reason::WRITE_QUEUE_FULL => LedgerError::Overloaded(1),
            Reason::TOO_MANY_REQUESTS => LedgerError::TooManyRequests(1),
            Reason::TOO_MANY_STREAMS | Reason::TOO_MANY_WATCHERS => {
                LedgerError::LimitReached { reason, what: "streams", limit: 1, per_principal: false }
            }
            Reason::DEADLINE_EXCEEDED => LedgerError::DeadlineExceeded(1),
            Reason::RESPONSE_TOO_LARGE => LedgerError::ResponseTooLarge { bytes_max: 1 },
            Reason::UNAVAILABLE => LedgerError::Unavailable("x".into()),
            Reason::NOT_WRITER => LedgerError::NotWriter { writer: None },
            Reason::OUTCOME_UNKNOWN => LedgerError::OutcomeUnknown("x".into()),
            Reason::INTERNAL => LedgerError::Internal("x".into()),
            refused => LedgerError::refused(refused, "m"),
        }
    }

    #[test]
    fn every_reason_comes_with_the_status_its_documentation_names() {
        for reason in Reason::ALL {
            let error = sample(*reason);
            assert_eq!(error.kind(), *reason);
            let status = to_status(error);
            let code = format!("{:?}", status.code());
            let named = reason.code().replace('_', "").to_lowercase();
            assert_eq!(code.to_lowercase(), named, "{reason}: documented {}, mapped to {code}", reason.code());
            let info = status.get_error_details().error_info().cloned().unwrap();
            assert_eq!(info.reason, reason.as_str());
        }
    }

    fn check(error: LedgerError, code: Code, reason: &str, fields: &[&str]) {
        let status = to_status(error);
        assert_eq!(status.code(), code);
        let details = status.get_error_details();
        assert_eq!(details.error_info().map(|i| i.reason.as_str()), Some(reason));
        let got: Vec<&str> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(got, fields);
    }

    #[test]
    fn table() {
        check(
            LedgerError::invalid_field("pledge.countyCode", "unknown"),
            Code::InvalidArgument,
            "INVALID_FIELDS",
            &["pledge.countyCode"],
        );
        check(LedgerError::NotFound { resource: "pledge", id: "x".into() }, Code::NotFound, "NOT_FOUND", &[]);
        check(LedgerError::RequestIdReused { request_id: "r".into() }, Code::AlreadyExists, "REQUEST_ID_REUSED", &[]);
        check(
            LedgerError::refused(Reason::RIGHT_ALREADY_PLEDGED, "m"),
            Code::FailedPrecondition,
            "RIGHT_ALREADY_PLEDGED",
            &[],
        );
        check(LedgerError::Overloaded(1), Code::ResourceExhausted, "WRITE_QUEUE_FULL", &[]);
        check(LedgerError::TooManyRequests(1), Code::ResourceExhausted, "TOO_MANY_REQUESTS", &[]);
        check(LedgerError::ResponseTooLarge { bytes_max: 1 }, Code::OutOfRange, "RESPONSE_TOO_LARGE", &[]);
        let limit = LedgerError::LimitReached {
            reason: crate::domain::Reason::TOO_MANY_STREAMS,
            what: "streams",
            limit: 2,
            per_principal: true,
        };
        check(limit, Code::ResourceExhausted, "TOO_MANY_STREAMS", &[]);
        check(LedgerError::Unauthenticated("x".into()), Code::Unauthenticated, "UNAUTHENTICATED", &[]);
        check(LedgerError::PermissionDenied("x".into()), Code::PermissionDenied, "PERMISSION_DENIED", &[]);
        check(LedgerError::DeadlineExceeded(1), Code::DeadlineExceeded, "DEADLINE_EXCEEDED", &[]);
        check(LedgerError::Unavailable("x".into()), Code::Unavailable, "UNAVAILABLE", &[]);
        check(LedgerError::Internal("x".into()), Code::Internal, "INTERNAL", &[]);
        check(LedgerError::NotWriter { writer: Some("n2:50051".into()) }, Code::Unavailable, "NOT_WRITER", &[]);
        check(LedgerError::OutcomeUnknown("x".into()), Code::Unavailable, "OUTCOME_UNKNOWN", &[]);
    }

    #[test]
    fn internal_and_storage_details_stay_in_the_log() {
        for error in [
            LedgerError::Internal("index 7 out of range in keys.rs".into()),
            LedgerError::Unavailable("storage: IO error: /var/lib/ipledger/data/db: No space left".into()),
        ] {
            let detail = error.to_string();
            let message = public_message(&error);
            let status = to_status(error);
            for text in [status.message(), message.as_str()] {
                assert!(!text.contains("keys.rs") && !text.contains("/var/lib"), "{detail} leaks into {text}");
                assert!(text.contains("error id "), "{text}");
            }
            let info = status.get_error_details().error_info().cloned().unwrap();
            let id = &info.metadata[ERROR_ID_KEY];
            assert!(status.message().ends_with(id.as_str()), "{}", status.message());
        }
        let refused = LedgerError::refused(Reason::RIGHT_ALREADY_PLEDGED, "the right is pledged");
        assert_eq!(public_message(&refused), refused.to_string());
    }
}
