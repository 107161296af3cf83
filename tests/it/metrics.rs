//! Prometheus metrics: a scrape of /metrics parses, counts calls by method and status, and carries
//! the exposure gauges per province and city. The port follows the gRPC port's rule (TLS or
//! loopback) and takes a bearer token, which it requires off loopback.

use crate::helpers::*;
use ipledger::proto::*;
use ipledger::server::{self, Config, Limits, Tls};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

#[tokio::test]
async fn a_scrape_parses_and_carries_requests_and_exposure() {
    let temp = tempfile::tempdir().unwrap();
    let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config { metrics_listen: Some(metrics_addr), ..Config::new(temp.path().join("data")) };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = TestServer::start_with(listener, config, tx, rx).await;
    let mut pledges = server.pledges().await;
    let id = pledges.register_pledge(register(pledge("330108", "1234.50"))).await.unwrap().into_inner().id;
    assert!(pledges.get_pledge(GetPledgeRequest { id: "x".into() }).await.is_err());
    let default = RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: id,
        defaulted_on: "2024-01-01".into(),
        outstanding_principal: "1000".into(),
        loss: String::new(),
    };
    let mut risk = ipledger::proto::risk_service_client::RiskServiceClient::with_interceptor(
        server.channel().await,
        Bearer::new(&server.admin_token),
    );
    risk.record_default(default).await.unwrap();

    let body = scrape(metrics_addr).await;
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        parsed
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"))
    };
    assert!(value("ipledger_requests_total", &[("method", "RegisterPledge"), ("status", "OK")]) >= 1.0);
    assert!(value("ipledger_requests_total", &[("method", "GetPledge"), ("status", "INVALID_FIELDS")]) >= 1.0);
    assert_eq!(value("ipledger_exposure_secured_amount_yuan", &[("region", "330000"), ("level", "province")]), 1234.5);
    assert_eq!(value("ipledger_exposure_pledges", &[("region", "330100"), ("level", "city")]), 1.0);
    assert_eq!(value("ipledger_exposure_pledges", &[("region", "320000")]), 0.0);
    assert_eq!(value("ipledger_exposure_defaulted_amount_yuan", &[("region", "330100"), ("level", "city")]), 1000.0);
    assert_eq!(value("ipledger_exposure_at_risk_amount_yuan", &[("region", "330000")]), 0.0);
    assert!(value("ipledger_data_bytes", &[]) > 0.0);
    assert_eq!(value("ipledger_write_queue_depth", &[]), 0.0);
    // A lone node writes, and has applied everything durable.
    assert_eq!(value("ipledger_writer", &[]), 1.0);
    assert_eq!(value("ipledger_journal_lag_entries", &[]), 0.0);
    // The scrape itself is the one read running.
    assert_eq!(value("ipledger_reads_in_flight", &[]), 1.0);
    assert!(body.contains("ipledger_request_latency_seconds_bucket"));
    assert!(body.contains("ipledger_write_group_commit_seconds_bucket"));

    // Every metric the Grafana dashboard charts is in the scrape.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut charted = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("ipledger_"))
            {
                assert!(
                    body.lines().any(|l| l.starts_with(name)),
                    "the dashboard charts {name}, which the scrape lacks"
                );
                charted += 1;
            }
        }
    }
    assert!(charted >= 10);
    server.stop().await;
}

/// Status line and body of `GET /metrics` over TLS to `addr`, trusting `ca_pem` for "localhost".
async fn scrape_tls(addr: std::net::SocketAddr, ca_pem: &str, authorization: Option<&str>) -> (String, String) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let header = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    tls.write_all(format!("GET /metrics HTTP/1.0\r\nHost: localhost\r\n{header}\r\n").as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify still sent a whole HTTP/1.0 response.
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{response}"));
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_loopback_need_tls_and_a_bearer_token() {
    let temp = tempfile::tempdir().unwrap();
    let pki = crate::tls::Pki::new("metrics ca");
    let (cert, key) = pki.issue("localhost");
    let write = |name: &str, text: &str| {
        let path = temp.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let token = "scrape-4f1e0c9a7b2d6e83";
    let tls = Tls { cert: write("server.pem", &cert), key: write("server.key", &key), client_ca: None };
    // Every interface, as in a container: allowed with TLS and a token.
    let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let metrics_listen: std::net::SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let config = Config {
        limits: Limits { cache_bytes: 16 * 1024 * 1024, ..Limits::default() },
        tls: Some(tls),
        metrics_listen: Some(metrics_listen),
        metrics_token_file: Some(write("metrics.token", &format!("{token}\n"))),
        ..Config::new(temp.path().join("data"))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let server = TestServer::start_with(listener, config, tx, rx).await;
    let target: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut answered = None;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(target).await.is_ok() {
            answered = Some(scrape_tls(target, &pki.ca_pem, Some(&format!("Bearer {token}"))).await);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (status, body) = answered.expect("the metrics port listens");
    assert!(status.ends_with("200 OK"), "{status}");
    assert!(body.contains("ipledger_exposure_secured_amount_yuan"), "{body}");
    for authorization in [None, Some("Bearer wrong-token-0000000000"), Some(token)] {
        let (status, body) = scrape_tls(target, &pki.ca_pem, authorization).await;
        assert!(status.contains(" 401 "), "{authorization:?}: {status}");
        assert!(!body.contains("ipledger_"), "{body}");
    }
    // Plaintext to the TLS port gets nothing.
    let mut plain = tokio::net::TcpStream::connect(target).await.unwrap();
    plain.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    let _ = plain.read_to_end(&mut response).await;
    assert!(!String::from_utf8_lossy(&response).contains("ipledger_"));
    server.stop().await;
}

#[tokio::test]
async fn metrics_off_loopback_are_refused_at_start_without_tls_or_a_token() {
    let temp = tempfile::tempdir().unwrap();
    let metrics_listen: std::net::SocketAddr = "0.0.0.0:0".parse().unwrap();
    let token_file = temp.path().join("metrics.token");
    std::fs::write(&token_file, "scrape-4f1e0c9a7b2d6e83").unwrap();
    let serve = |config: Config| async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        server::serve(listener, config, async {}).await
    };
    let data = temp.path().join("data");
    let plaintext = Config {
        metrics_listen: Some(metrics_listen),
        metrics_token_file: Some(token_file.clone()),
        ..Config::new(data.clone())
    };
    let result = serve(plaintext).await;
    assert!(matches!(result, Err(server::ServeError::PlaintextRefused(a)) if a == metrics_listen), "{result:?}");
    let tokenless = Config { metrics_listen: Some(metrics_listen), allow_plaintext: true, ..Config::new(data.clone()) };
    let result = serve(tokenless).await;
    assert!(matches!(result, Err(server::ServeError::MetricsTokenRequired(_))), "{result:?}");
    assert!(!data.exists(), "nothing is created before the refusal");
    // A guessable token is refused too.
    std::fs::write(&token_file, "short").unwrap();
    let weak = Config {
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        metrics_token_file: Some(token_file),
        ..Config::new(data.clone())
    };
    let result = serve(weak).await;
    assert!(matches!(result, Err(server::ServeError::Metrics(_))), "{result:?}");
}
