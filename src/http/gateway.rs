//! A read-only JSON API for the dashboard page and for scripts that cannot speak gRPC. Each
//! `POST /api/<service>/<method>` with a proto3-JSON body runs that method's own gRPC handler
//! in-process, so authentication (the same bearer tokens), scopes, limits, metrics and the error
//! table are the gRPC API's own. Bodies, status codes and errors follow the Connect protocol's
//! unary JSON conventions (`{"code": "permission_denied", "message": …, "details": […]}`).
//! Only reads are offered: writes stay on gRPC, where request ids and streaming live. Every
//! answer is 200 with JSON or a Connect error body, whatever the request's bytes: a body that is
//! too large or not JSON, an unknown method and an answer above `RESPONSE_BYTES_MAX` included.

use super::HttpState;
use crate::domain::principal::Principal;
use crate::grpc::Api;
use crate::proto as pb;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use pb::credit_line_service_server::CreditLineService;
use pb::exposure_service_server::ExposureService;
use pb::pledge_service_server::PledgeService;
use pb::risk_service_server::RiskService;
use prost::Message;
use std::future::Future;
use tonic::{Code, Request, Status};

/// Largest request body: every read request is a few hundred bytes.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// Largest JSON answer, in bytes: the gRPC API's response limit (`server::Limits`), so both APIs
/// refuse the same answers (gRPC's with OUT_OF_RANGE too). A larger answer is refused with a
/// message to ask for a smaller page, before its JSON is built when its binary encoding already
/// exceeds the limit (proto3 JSON of these messages is larger than their binary form: names,
/// quotes, decimal strings), and after it otherwise.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The methods offered (the read methods of the ledger services), each written once: the list
/// below and the dispatch to its gRPC handler come from the same line.
macro_rules! offered {
    ($(($service:literal, $method:literal, $request:literal, $response:literal, $handler:ident)),* $(,)?) => {
        /// The methods offered, as (service, method).
        pub const METHODS: &[(&str, &str)] = &[$(($service, $method)),*];

        /// Runs `service/method` as `principal`; `None` when it is not offered.
        async fn dispatch(api: Api, service: &str, method: &str, body: &[u8], principal: Principal) -> Option<Response> {
            match (service, method) {
                $(($service, $method) => Some(
                    unary(body, principal, $request, $response, |r| async move { api.$handler(r).await }).await,
                ),)*
                _ => None,
            }
        }
    };
}

offered! {
    ("ipledger.v1.ExposureService", "GetExposure", "GetExposureRequest", "GetExposureResponse", get_exposure),
    ("ipledger.v1.ExposureService", "GetStatistics", "GetStatisticsRequest", "GetStatisticsResponse", get_statistics),
    ("ipledger.v1.CreditLineService", "GetCreditLine", "GetCreditLineRequest", "CreditLine", get_credit_line),
    ("ipledger.v1.CreditLineService", "ListCreditLines", "ListCreditLinesRequest", "ListCreditLinesResponse", list_credit_lines),
    ("ipledger.v1.PledgeService", "GetPledge", "GetPledgeRequest", "Pledge", get_pledge),
    ("ipledger.v1.PledgeService", "ListPledges", "ListPledgesRequest", "ListPledgesResponse", list_pledges),
    ("ipledger.v1.PledgeService", "GetPledgeHistory", "GetPledgeHistoryRequest", "GetPledgeHistoryResponse", get_pledge_history),
    ("ipledger.v1.PledgeService", "LookupRight", "LookupRightRequest", "LookupRightResponse", lookup_right),
    ("ipledger.v1.PledgeService", "GetPledgeCertificate", "GetPledgeCertificateRequest", "PledgeCertificate", get_pledge_certificate),
    ("ipledger.v1.RiskService", "GetRight", "GetRightRequest", "RightRecord", get_right),
    ("ipledger.v1.RiskService", "GetProgramme", "GetProgrammeRequest", "Programme", get_programme),
    ("ipledger.v1.RiskService", "ListProgrammes", "ListProgrammesRequest", "ListProgrammesResponse", list_programmes),
    ("ipledger.v1.RiskService", "GetClaim", "GetClaimRequest", "Claim", get_claim),
    ("ipledger.v1.RiskService", "ListClaims", "ListClaimsRequest", "ListClaimsResponse", list_claims),
    ("ipledger.v1.RiskService", "ListAlerts", "ListAlertsRequest", "ListAlertsResponse", list_alerts),
    ("ipledger.v1.RiskService", "GetAlertPolicy", "GetAlertPolicyRequest", "AlertPolicy", get_alert_policy),
}

/// `POST /api/{service}/{method}`.
pub async fn call(
    State(state): State<HttpState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        let message = "the body must be proto3 JSON with `content-type: application/json`";
        let mut response = error(&Status::invalid_argument(message));
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return response;
    }
    let principal = match state.auth.bearer(&tonic::metadata::MetadataMap::from_headers(headers)) {
        Some(Ok(principal)) => principal,
        Some(Err(status)) => return error(&status),
        None => return error(&Status::unauthenticated("missing `authorization: Bearer <token>` header")),
    };
    let offered = || METHODS.iter().map(|(s, m)| format!("{s}/{m}")).collect::<Vec<_>>().join(", ");
    let Ok(Path((service, method))) = path else {
        return error(&Status::unimplemented(format!("not a method offered over HTTP; these are: {}", offered())));
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            // As gRPC answers a request message above its limit.
            return error(&Status::out_of_range(format!("the body is larger than {BODY_BYTES_MAX} bytes")));
        }
        Err(rejection) => return error(&Status::invalid_argument(format!("the body could not be read: {rejection}"))),
    };
    match dispatch(state.api, &service, &method, &body, principal).await {
        Some(response) => response,
        None => {
            let message = format!("{service}/{method} is not offered over HTTP; these are: {}", offered());
            error(&Status::unimplemented(message))
        }
    }
}

/// Parses the body as `request_name`, runs `handler` as the authenticated `principal` (exactly as
/// the gRPC interceptor would have), and answers with the response in proto3 JSON.
async fn unary<Q, A, Fut>(
    body: &[u8],
    principal: Principal,
    request_name: &str,
    response_name: &str,
    handler: impl FnOnce(Request<Q>) -> Fut,
) -> Response
where
    Q: Message + Default,
    A: Message,
    Fut: Future<Output = Result<tonic::Response<A>, Status>>,
{
    let text = match std::str::from_utf8(body) {
        Ok(t) if t.trim().is_empty() => "{}",
        Ok(t) => t,
        Err(_) => return error(&Status::invalid_argument("the body is not UTF-8")),
    };
    let message: Q = match crate::protojson::from_json(request_name, text) {
        Ok(m) => m,
        Err(e) => return error(&Status::invalid_argument(format!("the body is not a {request_name}: {e}"))),
    };
    let mut request = Request::new(message);
    request.extensions_mut().insert(principal);
    match handler(request).await.and_then(|response| render(response_name, response.get_ref(), RESPONSE_BYTES_MAX)) {
        Ok(json) => {
            ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], json).into_response()
        }
        Err(status) => error(&status),
    }
}

/// `message` in proto3 JSON, or OUT_OF_RANGE when that would be more than `bytes_max` bytes:
/// refused from its encoded length before any JSON is built when that already exceeds the bound.
fn render<A: Message>(response_name: &str, message: &A, bytes_max: usize) -> Result<String, Status> {
    let encoded_bytes = message.encoded_len();
    if encoded_bytes > bytes_max {
        return Err(response_too_large(bytes_max));
    }
    let json = crate::protojson::to_json(response_name, message);
    if json.len() > bytes_max {
        return Err(response_too_large(bytes_max));
    }
    Ok(json)
}

fn response_too_large(bytes_max: usize) -> Status {
    crate::grpc::status::to_status(crate::domain::LedgerError::ResponseTooLarge { bytes_max })
}

/// The Connect protocol's names and HTTP statuses of the gRPC codes.
fn connect_code(code: Code) -> (&'static str, StatusCode) {
    match code {
        Code::Ok => ("ok", StatusCode::OK),
        Code::Cancelled => ("canceled", StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)),
        Code::Unknown => ("unknown", StatusCode::INTERNAL_SERVER_ERROR),
        Code::InvalidArgument => ("invalid_argument", StatusCode::BAD_REQUEST),
        Code::DeadlineExceeded => ("deadline_exceeded", StatusCode::GATEWAY_TIMEOUT),
        Code::NotFound => ("not_found", StatusCode::NOT_FOUND),
        Code::AlreadyExists => ("already_exists", StatusCode::CONFLICT),
        Code::PermissionDenied => ("permission_denied", StatusCode::FORBIDDEN),
        Code::ResourceExhausted => ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS),
        Code::FailedPrecondition => ("failed_precondition", StatusCode::BAD_REQUEST),
        Code::Aborted => ("aborted", StatusCode::CONFLICT),
        Code::OutOfRange => ("out_of_range", StatusCode::BAD_REQUEST),
        Code::Unimplemented => ("unimplemented", StatusCode::NOT_FOUND),
        Code::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        Code::DataLoss => ("data_loss", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unauthenticated => ("unauthenticated", StatusCode::UNAUTHORIZED),
    }
}

/// A Connect error body: the code, the message, and each google.rpc detail with its bytes and,
/// for people, its JSON form (`debug`), which carries the UPPER_SNAKE reason and field violations.
fn error(status: &Status) -> Response {
    let (code, http) = connect_code(status.code());
    let details: Vec<serde_json::Value> = tonic_types::pb::Status::decode(status.details())
        .map(|s| s.details)
        .unwrap_or_default()
        .iter()
        .map(|any| {
            let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
            serde_json::json!({
                "type": type_name,
                "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
                "debug": crate::protojson::any_to_json(type_name, &any.value),
            })
        })
        .collect();
    let body = serde_json::json!({"code": code, "message": status.message(), "details": details});
    (http, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body.to_string())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn answers_above_the_bound_are_refused_before_or_after_rendering() {
        assert_eq!(RESPONSE_BYTES_MAX, crate::server::Limits::default().response_bytes_max);
        let page = pb::ListPledgesResponse {
            pledges: vec![pb::Pledge { registration_number: "R".repeat(100), ..Default::default() }],
            next_page_token: "t".repeat(100),
        };
        let (encoded_bytes, json) = (page.encoded_len(), crate::protojson::to_json("ListPledgesResponse", &page));
        assert!(encoded_bytes < json.len());
        let check = |bytes_max: usize, expected: Result<&str, &str>| {
            let got = render("ListPledgesResponse", &page, bytes_max).map_err(|status| {
                assert_eq!(status.code(), Code::OutOfRange, "{bytes_max}");
                assert!(status.message().contains("smaller page"), "{bytes_max}: {}", status.message());
                let info = status.get_error_details().error_info().cloned().expect("an ErrorInfo");
                assert_eq!(info.metadata.get("bytesMax"), Some(&bytes_max.to_string()));
                info.reason
            });
            assert_eq!(got, expected.map(str::to_owned).map_err(str::to_owned), "{bytes_max}");
        };
        // Refused from the encoded length alone, from the rendered length, and just fitting.
        check(encoded_bytes - 1, Err("RESPONSE_TOO_LARGE"));
        check(json.len() - 1, Err("RESPONSE_TOO_LARGE"));
        check(json.len(), Ok(json.as_str()));
    }

    #[test]
    fn every_grpc_code_has_a_connect_name_and_an_error_status() {
        for n in 1..=16 {
            let (name, http) = connect_code(Code::from_i32(n));
            assert!(!name.is_empty() && name != "ok", "code {n}");
            assert!(http.is_client_error() || http.is_server_error(), "code {n}: {http}");
        }
    }
}
