//! The metrics registry: the counters and histograms the process records into (requests by method
//! and status, latency, write-group sizes and commit latency). They live for the process. This
//! module sits at the bottom of the house: the writer and the gRPC layer record here, and it reads
//! nothing back; the scrape, which adds gauges read from the ledger, is `scrape` above the ledger.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

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
    pub(crate) registry: Registry,
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
