//! The service as generic gRPC tools see it: reflection (v1 and v1alpha) lists every service and
//! resolves the error-detail types; health answers SERVING.

use crate::helpers::*;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn reflect(server: &TestServer, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token));
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
