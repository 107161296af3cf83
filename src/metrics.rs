//! Prometheus metrics on a separate HTTP port: requests by method and status, latency histograms,
//! write-group sizes and commit latency, the write queue's depth, the data size, and exposure gauges
//! per province and city (secured amount, pledge count, credit drawn) so Grafana can chart them
//! with no extra service. Counters live for the process; gauges are read at each scrape.

use crate::domain::exposure::{Bucket, Dimension};
use crate::domain::region::Region;
use crate::ledger::{Ledger, query};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency_seconds: Family<MethodLabels, Histogram>,
    pub group_requests: Histogram,
    pub commit_seconds: Histogram,
}

/// Latency buckets from 100 µs to ~13 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 18)
}

/// The process's metrics (one server per process in production; tests share them harmlessly).
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("ipledger");
    let requests = Family::<RequestLabels, Counter>::default();
    let latency_seconds = Family::<MethodLabels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
    let group_requests = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 13));
    let commit_seconds = Histogram::new(latency_buckets());
    registry.register("requests", "gRPC calls by method and status (UPPER_SNAKE reason or OK)", requests.clone());
    registry.register("request_latency_seconds", "gRPC call latency by method", latency_seconds.clone());
    registry.register("write_group_requests", "Requests committed per group commit", group_requests.clone());
    registry.register("write_group_commit_seconds", "Time to apply and flush one group commit", commit_seconds.clone());
    Metrics { registry, requests, latency_seconds, group_requests, commit_seconds }
});

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabels {
    level: &'static str,
    region: String,
    name: String,
}

/// The whole scrape: the counters, then gauges read from the ledger now.
pub fn render(ledger: &Ledger, store: &dyn crate::store::Store) -> Result<String, String> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &METRICS.registry).map_err(|e| e.to_string())?;
    let mut registry = Registry::with_prefix("ipledger");
    let queue = Gauge::<i64>::default();
    queue.set(ledger.queue_depth() as i64);
    registry.register("write_queue_depth", "Writes waiting for the writer", queue);
    let size = Gauge::<i64>::default();
    size.set(store.size_on_disk().map_err(|e| e.to_string())? as i64);
    registry.register("data_bytes", "Bytes the store occupies on disk", size);
    let secured = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
    let pledges = Family::<RegionLabels, Gauge>::default();
    let drawn = Family::<RegionLabels, Gauge<f64, AtomicU64>>::default();
    for province in Region::COUNTRY.children() {
        for (level, region) in
            std::iter::once(("province", *province)).chain(province.children().iter().map(|c| ("city", *c)))
        {
            let row = query::exposure_row(store, &Bucket { region, dimension: Dimension::Total })
                .map_err(|e| e.to_string())?;
            let labels = RegionLabels { level, region: region.code_string(), name: region.name().to_owned() };
            secured.get_or_create(&labels).set(row.secured_amount.fen() as f64 / 100.0);
            pledges.get_or_create(&labels).set(row.pledge_count as i64);
            drawn.get_or_create(&labels).set(row.credit_drawn.fen() as f64 / 100.0);
        }
    }
    registry.register("exposure_secured_amount_yuan", "Secured amount of active pledges by region", secured);
    registry.register("exposure_pledges", "Active pledges by region", pledges);
    registry.register("exposure_credit_drawn_yuan", "Credit drawn on lines signed in the region", drawn);
    prometheus_client::encoding::text::encode(&mut text, &registry).map_err(|e| e.to_string())?;
    Ok(text)
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ledger: Ledger,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    async fn scrape(axum::extract::State(ledger): axum::extract::State<Ledger>) -> axum::response::Response {
        let handle = ledger.clone();
        match ledger.read(move |store| Ok(render(&handle, store))).await {
            Ok(Ok(text)) => {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
            }
            Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        }
    }
    let app = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(ledger);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
