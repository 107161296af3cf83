//! Prometheus metrics: a scrape of /metrics parses, counts calls by method and status, and carries
//! the exposure gauges per province and city.

use crate::helpers::*;
use ipledger::proto::*;
use ipledger::server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    pledges.register_pledge(register(pledge("330108", "1234.50"))).await.unwrap();
    assert!(pledges.get_pledge(GetPledgeRequest { id: "x".into() }).await.is_err());

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
    assert!(value("ipledger_data_bytes", &[]) > 0.0);
    assert_eq!(value("ipledger_write_queue_depth", &[]), 0.0);
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
