//! Limits a caller cannot push past: calls, streams and change feeds in flight (for the server and
//! per principal), idle and revoked streams, deadlines, message sizes, bytes per page, each with
//! a clear status instead of a stall, and none of them one principal can take from another.

use crate::helpers::*;
use ipledger::grpc::Timeouts;
use ipledger::grpc::limits::Quotas;
use ipledger::proto::journal_service_client::JournalServiceClient;
use ipledger::proto::*;
use ipledger::server::{Config, Limits};
use prost::Message;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Registrations here are a bank's, dated as a bank may date them (`recent`).
fn pledge(county: &str, amount: &str) -> Pledge {
    recent(crate::helpers::pledge(county, amount))
}

async fn start_with(limits: Limits) -> (TestServer, tempfile::TempDir) {
    let temp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config { limits, ..Config::new(temp.path().join("data")) };
    let (tx, rx) = tokio::sync::oneshot::channel();
    (TestServer::start_with(listener, config, tx, rx).await, temp)
}

/// An import stream left open with nothing sent: the sender keeps it open until dropped.
type OpenImport = (
    tokio::sync::mpsc::Sender<RegisterPledgeRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<ImportPledgesResponse>, tonic::Status>>,
);

async fn open_import(server: &TestServer, token: &str) -> OpenImport {
    let (feed, records) = tokio::sync::mpsc::channel::<RegisterPledgeRequest>(16);
    let mut client = server.pledges_as(Bearer::new(token)).await;
    let call = tokio::spawn(async move { client.import_pledges(ReceiverStream::new(records)).await });
    (feed, call)
}

/// The status code and the HTTP answer's first line of a JSON API call (raw HTTP/1.1).
async fn post_json(server: &TestServer, path: &str, token: &str, body: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: ipledger\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

fn refusal(status: tonic::Status) -> (Code, String, Option<String>) {
    let scope = metadata(&status, "scope");
    let (code, reason, _) = failure(status);
    (code, reason, scope)
}

#[tokio::test]
async fn idle_streams_take_no_call_slots_and_each_principal_has_its_own_share() {
    let quotas = Quotas {
        calls_max: 4,
        principal_calls_max: 4,
        streams_max: 4,
        principal_streams_max: 2,
        watchers_max: 4,
        principal_watchers_max: 2,
        ..Quotas::default()
    };
    let (server, _temp) = start_with(Limits { quotas, cache_bytes: 16 << 20, ..Limits::default() }).await;
    let bank_a = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let bank_b = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;

    // Bank A opens as many idle import streams as the server has call slots: only its own share
    // of streams is granted, the rest refused at once as the principal's limit.
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(open_import(&server, &bank_a).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..2 {
        let (_feed, call) = open_import(&server, &bank_a).await;
        let (code, reason, scope) = refusal(call.await.unwrap().unwrap_err());
        assert_eq!(
            (code, reason.as_str(), scope.as_deref()),
            (Code::ResourceExhausted, "TOO_MANY_STREAMS", Some("principal"))
        );
    }
    // Its idle streams hold no call slot: every other call still runs, its own and bank B's,
    // over gRPC and over the JSON API.
    for token in [&bank_a, &bank_b, &server.admin_token] {
        for _ in 0..8 {
            server.pledges_as(Bearer::new(token)).await.list_pledges(ListPledgesRequest::default()).await.unwrap();
        }
    }
    let line = post_json(&server, "/api/ipledger.v1.PledgeService/ListPledges", &bank_b, "{}").await;
    assert!(line.contains(" 200 "), "{line}");
    // Bank B gets streams of its own.
    let (feed_b, call_b) = open_import(&server, &bank_b).await;

    // Change feeds: the same, per principal.
    let journal = |token: &str| {
        let bearer = Bearer::new(token);
        let server = &server;
        async move { JournalServiceClient::with_interceptor(server.channel().await, bearer) }
    };
    let mut feeds = Vec::new();
    for _ in 0..2 {
        feeds.push(journal(&bank_a).await.watch_events(WatchEventsRequest::default()).await.unwrap().into_inner());
    }
    let (code, reason, scope) =
        refusal(journal(&bank_a).await.watch_events(WatchEventsRequest::default()).await.unwrap_err());
    assert_eq!(
        (code, reason.as_str(), scope.as_deref()),
        (Code::ResourceExhausted, "TOO_MANY_WATCHERS", Some("principal"))
    );
    journal(&bank_b).await.watch_events(WatchEventsRequest::default()).await.unwrap();

    // Closing a stream gives its slot back.
    let (feed, call) = open.pop().unwrap();
    drop(feed);
    assert_eq!(call.await.unwrap().unwrap().into_inner().received, 0);
    let (feed_a, call_a) = open_import(&server, &bank_a).await;
    drop((feed_a, feed_b, open));
    call_a.await.unwrap().unwrap();
    call_b.await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn an_idle_import_stream_is_ended_and_calls_have_deadlines() {
    let timeouts = Timeouts { stream_idle: Duration::from_millis(300), ..Timeouts::default() };
    let (server, _temp) = start_with(Limits { timeouts, cache_bytes: 16 << 20, ..Limits::default() }).await;
    let (feed, call) = open_import(&server, &server.admin_token).await;
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), call).await.unwrap().unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(feed);
    server.stop().await;

    // The whole stream has a deadline too.
    let timeouts = Timeouts { import: Duration::from_millis(300), ..Timeouts::default() };
    let (server, _temp) = start_with(Limits { timeouts, cache_bytes: 16 << 20, ..Limits::default() }).await;
    let (feed, call) = open_import(&server, &server.admin_token).await;
    let status = tokio::time::timeout(Duration::from_secs(5), call).await.unwrap().unwrap().unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    drop(feed);
    server.stop().await;
}

#[tokio::test]
async fn a_revocation_ends_the_principals_open_streams_at_once() {
    let server = TestServer::start().await;
    let bank = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let mut feed = JournalServiceClient::with_interceptor(server.channel().await, Bearer::new(&bank))
        .watch_events(WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (records, import) = open_import(&server, &bank).await;
    records.send(register(pledge("330108", "100.00"))).await.unwrap();
    // The bank sees its own registration on its feed.
    let first = tokio::time::timeout(Duration::from_secs(5), feed.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.event, "PLEDGE_REGISTERED");

    let revoke = RevokeTokenRequest { name: "bank-a".into() };
    server.admin().await.revoke_token(revoke).await.unwrap();
    // Both streams end with UNAUTHENTICATED as soon as the revocation has returned.
    let ended = tokio::time::timeout(Duration::from_secs(2), feed.message()).await.expect("the feed ended");
    assert_eq!(ended.unwrap_err().code(), Code::Unauthenticated);
    let ended = tokio::time::timeout(Duration::from_secs(2), import).await.expect("the import ended");
    assert_eq!(ended.unwrap().unwrap_err().code(), Code::Unauthenticated);
    // Nothing sent after the revocation is registered.
    let _ = records.send(register(pledge("330108", "200.00"))).await;
    let filter = ListPledgesRequest { pledgee_credit_code: BANK_A.into(), ..Default::default() };
    let listed = server.pledges().await.list_pledges(filter).await.unwrap().into_inner().pledges;
    assert_eq!(listed.len(), 1);
    server.stop().await;
}

/// A pledge whose stored record is about 1 MB: 500 rights with long titles.
fn large_pledge() -> Pledge {
    let mut p = pledge("330108", "1000.00");
    p.rights = (0..500)
        .map(|_| {
            let mut right = patent_right(&invention_patent(unique()));
            right.title = "专利名称".repeat(125);
            right
        })
        .collect();
    p
}

#[tokio::test]
async fn pages_and_histories_are_bounded_in_bytes_before_they_are_built() {
    let server = TestServer::start().await;
    let mut pledges = server.pledges().await.max_decoding_message_size(64 << 20);
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(pledges.register_pledge(register(large_pledge())).await.unwrap().into_inner().id);
    }
    // One page of "up to 1000" large pledges stops at the byte bound, with a token to go on.
    let mut seen = Vec::new();
    let mut request = ListPledgesRequest { page_size: 1000, ..Default::default() };
    let mut pages = 0;
    loop {
        let page = pledges.list_pledges(request.clone()).await.unwrap().into_inner();
        assert!(page.encoded_len() < 24 << 20, "a page of {} bytes", page.encoded_len());
        pages += 1;
        seen.extend(page.pledges.iter().map(|p| p.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert!(pages >= 2, "12 pledges of ~1 MB came in one page");
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);

    // Each version of a history holds the whole pledge: the history pages by bytes too.
    let id = ids[0].clone();
    for n in 0..11 {
        let change = ChangePledgeRequest {
            request_id: request_id(),
            id: id.clone(),
            secured_amount: format!("{}.00", 2000 + n),
            reason: "partial repayment".into(),
            ..Default::default()
        };
        pledges.change_pledge(change).await.unwrap();
    }
    let mut versions = Vec::new();
    let mut request = GetPledgeHistoryRequest { id: id.clone(), ..Default::default() };
    let mut pages = 0;
    loop {
        let page = pledges.get_pledge_history(request.clone()).await.unwrap().into_inner();
        assert!(page.encoded_len() < 24 << 20, "a page of {} bytes", page.encoded_len());
        pages += 1;
        versions.extend(page.versions.iter().map(|v| v.sequence));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert!(pages >= 2);
    assert_eq!(versions.len(), 12, "the registration and 11 changes");
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "in order: {versions:?}");
    // A page size is honoured, and a token of another pledge's history is refused.
    let one = GetPledgeHistoryRequest { id: id.clone(), page_size: 1, ..Default::default() };
    let page = pledges.get_pledge_history(one).await.unwrap().into_inner();
    assert_eq!(page.versions.len(), 1);
    let other = GetPledgeHistoryRequest { id: ids[1].clone(), page_token: page.next_page_token, page_size: 1 };
    let (code, _, fields) = failure(pledges.get_pledge_history(other).await.unwrap_err());
    assert_eq!((code, fields), (Code::InvalidArgument, vec!["pageToken".to_owned()]));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_write_bytes_are_bounded_per_principal() {
    use ipledger::ledger::journal::{Access, Guarded, MemoryJournal};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // A slow disk: appends wait while `hold` is set, so writes pile up in the queue.
    let hold = Arc::new(AtomicBool::new(false));
    let held = hold.clone();
    let journal = Guarded::new(Arc::new(MemoryJournal::default()), move |access| {
        while access == Access::Append && held.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    });
    let one_write = register(pledge("330108", "1.00")).encoded_len() as u32;
    // Room for three registrations of bank A (they differ by a few bytes), not four.
    let quotas = Quotas {
        queued_bytes_max: 20 * one_write,
        principal_queued_bytes_max: 3 * one_write + 64,
        ..Quotas::default()
    };
    let temp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let limits = Limits { quotas, ..Limits::default() };
    let engines = ipledger::server::Engines {
        journal: Arc::new(journal),
        derived: Arc::new(ipledger::store::MemoryStore::default()),
    };
    let config = Config { limits, engines: Some(engines), ..Config::new(temp.path().join("data")) };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = TestServer::start_with(listener, config, tx, rx).await;
    let bank_a = server.token("bank-a", TokenRole::Bank, BANK_A, "").await;
    let bank_b = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;

    hold.store(true, Ordering::SeqCst);
    // Bank A fills its share of the queue: three writes wait behind the slow disk...
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(spawn_registration(&server, &bank_a, BANK_A).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...so its next write is refused at once, as its own share's...
    let next = tokio::time::timeout(Duration::from_secs(5), spawn_registration(&server, &bank_a, BANK_A).await);
    let refused = next.await.expect("refused at once, not queued").unwrap().unwrap_err();
    let (code, reason, scope) = refusal(refused);
    assert_eq!(
        (code, reason.as_str(), scope.as_deref()),
        (Code::ResourceExhausted, "WRITE_QUEUE_FULL", Some("principal"))
    );
    // ...while bank B's write is still taken.
    let b = spawn_registration(&server, &bank_b, BANK_B).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    hold.store(false, Ordering::SeqCst);
    b.await.unwrap().unwrap();
    for call in waiting {
        call.await.unwrap().unwrap();
    }
    server.stop().await;
}

/// A registration by `token` to `pledgee`, sent on its own task.
async fn spawn_registration(
    server: &TestServer,
    token: &str,
    pledgee: &str,
) -> tokio::task::JoinHandle<Result<tonic::Response<Pledge>, tonic::Status>> {
    let mut p = pledge("330108", "1.00");
    p.pledgee = Some(party("Bank", pledgee));
    let mut client = server.pledges_as(Bearer::new(token)).await;
    tokio::spawn(async move { client.register_pledge(register(p)).await })
}
