//! Prometheus metrics of a [`Server`](crate::Server), served as text on `GET /metrics`
//! when [`ServerConfig::metrics_addr`](crate::ServerConfig::metrics_addr) is set.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mw_rpc_connections` | gauge | |
//! | `mw_rpc_calls_total` | counter | `service`, `method`, `outcome` (`ok`, `failed`, `deadline_exceeded`, `cancelled`) |
//! | `mw_rpc_call_duration_seconds` | histogram | `service`, `method` |
//! | `mw_rpc_calls_in_flight` | gauge (running and queued) | |
//! | `mw_rpc_calls_queued` | gauge (waiting for a slot) | |
//!
//! Applications add their own with [`ServerBuilder::metrics_registry`](crate::ServerBuilder::metrics_registry)
//! (the broker adds its queues, bus and routes there). The registry uses
//! [`prometheus_client`]; names follow Prometheus conventions (`_total` counters, base
//! units).

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::connections::Connections;

/// `service` and `method` of a call.
pub(crate) type CallLabels = [(&'static str, &'static str); 2];
/// `service`, `method` and `outcome` of a finished call.
pub(crate) type OutcomeLabels = [(&'static str, &'static str); 3];

fn histogram() -> Histogram {
    // 100 µs to ~26 s in factors of 4.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// The server's own metrics, updated as calls run.
#[derive(Debug, Clone)]
pub(crate) struct ServerMetrics {
    calls: Family<OutcomeLabels, Counter>,
    durations: Family<CallLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge<i64, AtomicI64>,
    queued: Gauge<i64, AtomicI64>,
}

/// The number of open connections, read from the table on each scrape.
#[derive(Debug)]
struct ConnectionsGauge(Connections);

impl TypedMetric for ConnectionsGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for ConnectionsGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&(self.0.count() as i64))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

impl ServerMetrics {
    /// Registers the server's metrics in `registry`.
    pub(crate) fn register(registry: &mut Registry, connections: &Connections) -> Self {
        let m = ServerMetrics {
            calls: Family::default(),
            durations: Family::new_with_constructor(histogram as fn() -> Histogram),
            in_flight: Gauge::default(),
            queued: Gauge::default(),
        };
        registry.register(
            "mw_rpc_connections",
            "Open client connections",
            ConnectionsGauge(connections.clone()),
        );
        registry.register(
            "mw_rpc_calls",
            "Calls finished, by service, method and outcome",
            m.calls.clone(),
        );
        registry.register_with_unit(
            "mw_rpc_call_duration",
            "Time from a call's arrival to its reply (or end, for streams)",
            Unit::Seconds,
            m.durations.clone(),
        );
        registry.register(
            "mw_rpc_calls_in_flight",
            "Calls accepted and not finished (running or queued)",
            m.in_flight.clone(),
        );
        registry.register(
            "mw_rpc_calls_queued",
            "Calls waiting for a slot to run",
            m.queued.clone(),
        );
        m
    }

    pub(crate) fn accepted(&self) {
        self.in_flight.inc();
    }

    pub(crate) fn queued(&self, delta: i64) {
        self.queued.inc_by(delta);
    }

    /// A call ended (`outcome`), `took` after its arrival.
    pub(crate) fn finished(&self, labels: CallLabels, outcome: &'static str, took: Duration) {
        self.in_flight.dec();
        let [service, method] = labels;
        self.calls
            .get_or_create(&[service, method, ("outcome", outcome)])
            .inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A call was abandoned with its connection (no outcome to record).
    pub(crate) fn abandoned(&self) {
        self.in_flight.dec();
    }
}

/// Most bytes of an HTTP request head read before answering.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `registry` as Prometheus text on `GET /metrics` at `listener` until `stop`.
/// The text is encoded on the blocking pool, so collectors may block (read a file).
/// Scrapes are answered one at a time (each is short, and it bounds what a scraper
/// can make the server do); anything else gets `404`.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    stop: CancellationToken,
) {
    loop {
        let (mut sock, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    continue;
                }
            },
        };
        let answer = async {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                let n = sock.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let response = if head.starts_with(b"GET /metrics ")
                || head.starts_with(b"GET /metrics?")
            {
                // On the blocking pool: collectors may read from disk.
                let registry = registry.clone();
                let body = tokio::task::spawn_blocking(move || {
                    let mut body = String::new();
                    prometheus_client::encoding::text::encode(&mut body, &registry).map(|()| body)
                })
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            sock.write_all(response.as_bytes()).await?;
            sock.shutdown().await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "metrics scrape failed"),
            Err(_) => tracing::debug!("metrics scrape timed out"),
        }
    }
}
