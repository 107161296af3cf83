//! Limits a caller cannot push past: requests in flight, deadlines, message sizes, page sizes and
//! rights per pledge, each with a clear status instead of a stall.

use crate::helpers::*;
use ipledger::proto::*;
use ipledger::server::{Config, Limits};
use std::time::Duration;
use tonic::Code;

async fn start_with(limits: Limits) -> (TestServer, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config { limits, ..Config::new(temp.path().join("data")) };
    let (tx, rx) = tokio::sync::oneshot::channel();
    (TestServer::start_with(listener, config, tx, rx).await, temp)
}

#[tokio::test]
async fn requests_in_flight_are_bounded_and_calls_have_deadlines() {
    let limits = Limits {
        requests_max: 1,
        import_timeout: Duration::from_millis(300),
        cache_bytes: 16 << 20,
        ..Limits::default()
    };
    let (server, _temp) = start_with(limits).await;
    // An import stream left open holds the only slot...
    let (feed, records) = tokio::sync::mpsc::channel::<RegisterPledgeRequest>(1);
    let mut importer = server.pledges().await;
    let import =
        tokio::spawn(
            async move { importer.import_pledges(tokio_stream::wrappers::ReceiverStream::new(records)).await },
        );
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...so another call is refused at once, with a reason and a retry hint.
    let status = server.pledges().await.list_pledges(ListPledgesRequest::default()).await.unwrap_err();
    let (code, reason, _) = failure(status);
    assert_eq!((code, reason.as_str()), (Code::ResourceExhausted, "TOO_MANY_REQUESTS"));
    // The stream outlives its deadline and is cut off.
    let status = import.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    drop(feed);
    // The slot is free again.
    server.pledges().await.list_pledges(ListPledgesRequest::default()).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let limits = Limits { request_bytes_max: 64 * 1024, cache_bytes: 16 << 20, ..Limits::default() };
    let (server, _temp) = start_with(limits).await;
    let mut p = pledge("330108", "1");
    p.rights[0].title = "x".repeat(100 * 1024);
    let status = server.pledges().await.register_pledge(register(p)).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    server.stop().await;
}
