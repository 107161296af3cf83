//! The service as generic gRPC tools see it: reflection (v1 and v1alpha) lists every service and
//! resolves the error-detail types without a token, so a method called without one answers
//! UNAUTHENTICATED itself; health answers SERVING, and NOT_SERVING once a storage failure stopped
//! writes, whose error reaches the client as a generic message with an error id.

use crate::helpers::*;
use ipledger::ledger::journal::{Access, Guarded, JournalError, MemoryJournal};
use ipledger::proto::*;
use ipledger::server::Config;
use ipledger::store::MemoryStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn reflect(server: &TestServer, request: MessageRequest) -> MessageResponse {
    // As grpcurl and buf curl do when given no token.
    let mut client = ServerReflectionClient::with_interceptor(server.channel().await, Bearer::none());
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    responses.message().await.unwrap().unwrap().message_response.unwrap()
}

#[tokio::test]
async fn reflection_lists_every_service_and_error_detail() {
    let server = TestServer::start().await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "ipledger.v1.AdminService",
            "ipledger.v1.CreditLineService",
            "ipledger.v1.ExposureService",
            "ipledger.v1.JournalService",
            "ipledger.v1.PledgeService",
            "ipledger.v1.RiskService",
        ]
    );
    for symbol in ["google.rpc.BadRequest", "google.rpc.ErrorInfo", "ipledger.v1.Pledge"] {
        let response = reflect(&server, MessageRequest::FileContainingSymbol(symbol.into())).await;
        assert!(matches!(response, MessageResponse::FileDescriptorResponse(_)), "{symbol}: {response:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn health_reports_serving() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    // Orchestrators probe health without credentials.
    for service in ["", "ipledger.v1.PledgeService", "ipledger.v1.ExposureService", "ipledger.v1.CreditLineService"] {
        let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(response.status, 1, "{service} is SERVING");
    }
    server.stop().await;
}

#[tokio::test]
async fn without_a_token_reflection_answers_and_the_method_says_unauthenticated() {
    let server = TestServer::start().await;
    let response = reflect(&server, MessageRequest::FileContainingSymbol("ipledger.v1.ExposureService".into())).await;
    assert!(matches!(response, MessageResponse::FileDescriptorResponse(_)), "{response:?}");
    let v1alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await)
            .server_reflection_info(tokio_stream::iter([tonic_reflection::pb::v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            }]))
            .await;
    assert!(v1alpha.is_ok(), "{v1alpha:?}");
    let status =
        server.exposure_as(Bearer::none()).await.get_exposure(GetExposureRequest::default()).await.unwrap_err();
    assert_eq!(failure(status), (Code::Unauthenticated, "UNAUTHENTICATED".to_owned(), vec![]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_makes_health_not_serving_and_its_detail_stays_in_the_log() {
    let temp = tempfile::tempdir().unwrap();
    // A journal whose appends fail once told to, as a failing disk does: with an outcome nobody
    // can learn (its head is unreadable too), so the writer must stop.
    let fail = Arc::new(AtomicBool::new(false));
    let failing = fail.clone();
    let journal = Guarded::new(Arc::new(MemoryJournal::default()), move |access| match access {
        Access::Append | Access::Head if failing.load(Ordering::SeqCst) => {
            Err(JournalError::OutcomeUnknown("IO error: /secret/path/db.log: no space left on device".to_owned()))
        }
        _ => Ok(()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engines = ipledger::server::Engines { journal: Arc::new(journal), derived: Arc::new(MemoryStore::default()) };
    let config = Config { engines: Some(engines), ..Config::new(temp.path().join("data")) };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = TestServer::start_with(listener, config, tx, rx).await;
    let mut pledges = server.pledges().await;
    pledges.register_pledge(register(pledge("330108", "1"))).await.unwrap();
    let mut health = HealthClient::new(server.channel().await);
    let status = |service: &str| HealthCheckRequest { service: service.into() };
    for service in ["", ipledger::server::WRITER_HEALTH_SERVICE] {
        assert_eq!(health.check(status(service)).await.unwrap().into_inner().status, 1, "{service} SERVING");
    }

    fail.store(true, Ordering::SeqCst);
    let refused = pledges.register_pledge(register(pledge("330108", "2"))).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    let id = metadata(&refused, "errorId").unwrap_or_else(|| panic!("no error id: {refused:?}"));
    assert!(!refused.message().contains("/secret") && refused.message().contains(&id), "{}", refused.message());
    // The journal is whole again, but what it held after the failed append was unknown: writes
    // stay stopped, and health says so until a restart.
    fail.store(false, Ordering::SeqCst);
    let refused = pledges.register_pledge(register(pledge("330108", "3"))).await.unwrap_err();
    assert!(!refused.message().contains("/secret"), "{}", refused.message());
    let mut answered = Vec::new();
    for _ in 0..200 {
        answered.clear();
        for service in ["", ipledger::server::WRITER_HEALTH_SERVICE] {
            answered.push(health.check(status(service)).await.unwrap().into_inner().status);
        }
        if answered == [2, 2] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(answered, [2, 2], "NOT_SERVING overall and for the writer");
    // The container health check exits non-zero.
    let url = format!("http://{}", server.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ipledger")).args(["health", "--server", &url]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // Reads still work.
    assert_eq!(
        server
            .exposure()
            .await
            .get_exposure(GetExposureRequest::default())
            .await
            .unwrap()
            .into_inner()
            .total
            .unwrap()
            .pledge_count,
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_whose_bytes_are_not_the_methods_message_is_invalid_argument() {
    let server = TestServer::start().await;
    // `08 05` (field 1 as a varint: a WatchEventsRequest) sent to a method whose field 1 is a
    // string, as a hand-rolled client might.
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/ipledger.v1.AdminService/RevokeToken");
    let mut request = tonic::Request::new(WatchEventsRequest { from_sequence: 5 });
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {}", server.admin_token).parse().unwrap();
    request.metadata_mut().insert("authorization", bearer);
    let codec = tonic_prost::ProstCodec::<WatchEventsRequest, Token>::default();
    let status = grpc.unary(request, path, codec).await.unwrap_err();
    let (code, reason, fields) = failure(status);
    assert_eq!((code, reason.as_str(), fields), (Code::InvalidArgument, "INVALID_FIELDS", vec![String::new()]));
    server.stop().await;
}

/// A client's deadline (`grpc-timeout`) that runs out while the server works is answered
/// DEADLINE_EXCEEDED with its ErrorInfo, as the error table promises, not tonic's bare CANCELLED.
#[tokio::test]
async fn a_client_deadline_reached_on_the_server_answers_deadline_exceeded_with_its_reason() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await;
    // A read that waits for a journal sequence this server never reaches.
    let mut request = tonic::Request::new(GetPledgeRequest { id: uuid::Uuid::new_v4().to_string() });
    request.metadata_mut().insert(ipledger::grpc::MIN_SEQUENCE_HEADER, "1000000".parse().unwrap());
    let deadline = std::time::Duration::from_millis(400);
    request.set_timeout(deadline);
    let started = std::time::Instant::now();
    let status = pledges.get_pledge(request).await.unwrap_err();
    let elapsed = started.elapsed();
    let message = status.message().to_owned();
    let (code, reason, _) = failure(status);
    assert_eq!((code, reason.as_str()), (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"), "{message}");
    assert!(elapsed < deadline + std::time::Duration::from_millis(300), "answered after {elapsed:?}");
    server.stop().await;
}
