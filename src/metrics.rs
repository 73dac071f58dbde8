//! The broker's Prometheus metrics, read from its parts at each scrape and served with
//! the server's own ([`crate::rpc::metrics`]) on `GET /metrics` at `--metrics-addr`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mw_queue_depth` | gauge: messages waiting (ready, returned, delayed) | `queue` |
//! | `mw_queue_delayed` | gauge: of those, delayed | `queue` |
//! | `mw_queue_in_flight` | gauge: delivered, not yet settled | `queue` |
//! | `mw_queue_consumers` | gauge | `queue` |
//! | `mw_queue_dead_letters` | gauge: messages in the queue's dead-letter queue | `queue` |
//! | `mw_queue_oldest_message_age_seconds` | gauge: since the oldest waiting message was sent (0 when empty) | `queue` |
//! | `mw_queue_log_appends_total` | counter: log records written | |
//! | `mw_queue_log_written_bytes_total` | counter | |
//! | `mw_queue_fsyncs_total` | counter | |
//! | `mw_queue_fsynced_records_total` | counter: records made durable by those fsyncs (÷ fsyncs = messages per fsync) | |
//! | `mw_queue_fsync_duration_seconds` | histogram | |
//! | `mw_queue_segments` | gauge: segment files on disk | |
//! | `mw_pubsub_subscriptions` | gauge: subscriptions on the bus (network subscribers included) | |
//! | `mw_pubsub_durable_subscriptions` | gauge | |
//! | `mw_pubsub_retained_topics` | gauge | |
//! | `mw_pubsub_events_published_total` | counter | |
//! | `mw_pubsub_events_delivered_total` | counter: one per subscriber reached | |
//! | `mw_pubsub_events_dropped_total` | counter: lost to slow-consumer policies | |
//! | `mw_route_pending` | gauge: messages waiting to be forwarded | `hop` |
//! | `mw_route_forwarded_total` | counter | `hop` |
//! | `mw_route_up` | gauge: 1 while the last call to the hop succeeded | `hop` |

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::pubsub::Bus;
use crate::queue::forward::Router;
use crate::queue::QueueManager;

/// Reads the broker's queues, bus and routes at each scrape.
#[derive(Debug)]
pub struct BrokerCollector {
    queues: QueueManager,
    bus: Bus,
    router: Router,
}

impl BrokerCollector {
    /// A collector over the broker's parts.
    pub fn new(queues: QueueManager, bus: Bus, router: Router) -> Self {
        BrokerCollector {
            queues,
            bus,
            router,
        }
    }
}

/// The log writer's fsync durations, as a histogram.
#[derive(Debug)]
struct FsyncHistogram(crate::queue::LogStats);

impl prometheus_client::metrics::TypedMetric for FsyncHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for FsyncHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = crate::queue::FSYNC_BUCKETS_SECONDS
            .iter()
            .copied()
            .chain([f64::MAX]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.fsync_buckets).collect();
        let count = self.0.fsync_buckets.iter().sum();
        let sum = self.0.fsync_nanos as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Writes one metric without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(e)
}

/// Writes one metric family with one label, `label`, from `(value, metric)` pairs.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &'static str,
    rows: impl IntoIterator<Item = (String, M)>,
) -> Result<(), std::fmt::Error> {
    let mut e = encoder.encode_descriptor(name, help, None, kind)?;
    for (value, metric) in rows {
        let labels = [(label, value.as_str())];
        metric.encode(e.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        self.encode_queues(e)?;
        self.encode_log(e)?;
        self.encode_pubsub(e)?;
        self.encode_routes(e)
    }
}

impl BrokerCollector {
    /// Per queue: depth, delayed, in flight, consumers, dead letters, oldest message's age.
    fn encode_queues(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let queues = self.queues.queues();
        let gauge = |f: fn(&crate::queue::QueueStats) -> u64| {
            queues
                .iter()
                .map(move |(n, s)| (n.clone(), ConstGauge::new(f(s) as i64)))
        };
        let g = MetricType::Gauge;
        family(
            e,
            "mw_queue_depth",
            "Messages waiting in the queue (ready, returned, delayed)",
            g,
            "queue",
            gauge(|s| s.depth),
        )?;
        family(
            e,
            "mw_queue_delayed",
            "Messages waiting for their delay to pass",
            g,
            "queue",
            gauge(|s| s.delayed),
        )?;
        family(
            e,
            "mw_queue_in_flight",
            "Messages delivered and not yet settled",
            g,
            "queue",
            gauge(|s| s.in_flight),
        )?;
        family(
            e,
            "mw_queue_consumers",
            "Consumers attached",
            g,
            "queue",
            gauge(|s| s.consumers),
        )?;
        family(
            e,
            "mw_queue_dead_letters",
            "Messages in the queue's dead-letter queue",
            g,
            "queue",
            gauge(|s| s.dead_letters),
        )?;

        // Blocking reads, at most one record per queue: scrapes run on the blocking pool.
        let now_ms = mw_core::time::unix_ms();
        let ages = queues.iter().map(|(n, _)| {
            let sent = self.queues.oldest_sent_ms_blocking(n).ok().flatten();
            let age = sent.map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0);
            (n.clone(), ConstGauge::new(age))
        });
        family(
            e,
            "mw_queue_oldest_message_age_seconds",
            "Seconds since the oldest message waiting in the queue was sent (0 when none waits)",
            g,
            "queue",
            ages,
        )?;
        Ok(())
    }

    /// The queue log: appends, bytes, fsyncs, records per fsync, segments, fsync durations.
    fn encode_log(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let log = self.queues.log_stats();
        single(
            e,
            "mw_queue_log_appends",
            "Log records written",
            &ConstCounter::new(log.appends),
        )?;
        single(
            e,
            "mw_queue_log_written_bytes",
            "Bytes written to segment files",
            &ConstCounter::new(log.bytes_written),
        )?;
        single(
            e,
            "mw_queue_fsyncs",
            "fdatasync calls on segment files",
            &ConstCounter::new(log.fsyncs),
        )?;
        single(
            e,
            "mw_queue_fsynced_records",
            "Log records made durable by fsyncs (divided by fsyncs: records per fsync)",
            &ConstCounter::new(log.synced_records),
        )?;
        single(
            e,
            "mw_queue_segments",
            "Segment files on disk",
            &ConstGauge::new(self.queues.segment_count() as i64),
        )?;

        let fsync = FsyncHistogram(log);
        let d = e.encode_descriptor(
            "mw_queue_fsync_duration",
            "Time an fdatasync of a segment file took",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Histogram,
        )?;
        fsync.encode(d)?;
        Ok(())
    }

    /// The event bus: subscriptions, retained topics, events published, delivered, dropped.
    fn encode_pubsub(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bus = self.bus.stats();
        single(
            e,
            "mw_pubsub_subscriptions",
            "Subscriptions on the event bus",
            &ConstGauge::new(bus.subscriptions as i64),
        )?;
        single(
            e,
            "mw_pubsub_durable_subscriptions",
            "Durable subscriptions collecting events",
            &ConstGauge::new(bus.sinks as i64),
        )?;
        single(
            e,
            "mw_pubsub_retained_topics",
            "Topics holding a retained message",
            &ConstGauge::new(bus.retained_topics as i64),
        )?;
        single(
            e,
            "mw_pubsub_events_published",
            "Events published",
            &ConstCounter::new(bus.published),
        )?;
        single(
            e,
            "mw_pubsub_events_delivered",
            "Events taken by a subscriber (one per subscriber reached)",
            &ConstCounter::new(bus.delivered),
        )?;
        single(
            e,
            "mw_pubsub_events_dropped",
            "Events lost to slow-consumer policies",
            &ConstCounter::new(bus.dropped),
        )?;
        Ok(())
    }

    /// Per forwarding hop: pending, forwarded, up.
    fn encode_routes(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let hops = self.router.hops();
        family(
            e,
            "mw_route_pending",
            "Messages waiting to be forwarded to the hop",
            MetricType::Gauge,
            "hop",
            hops.iter()
                .map(|h| (h.hop.clone(), ConstGauge::new(h.pending as i64))),
        )?;
        family(
            e,
            "mw_route_forwarded",
            "Messages the hop confirmed",
            MetricType::Counter,
            "hop",
            hops.iter()
                .map(|h| (h.hop.clone(), ConstCounter::new(h.stats.forwarded))),
        )?;
        family(
            e,
            "mw_route_up",
            "1 while the last call to the hop succeeded",
            MetricType::Gauge,
            "hop",
            hops.iter()
                .map(|h| (h.hop.clone(), ConstGauge::new(i64::from(h.stats.hop_up)))),
        )?;
        Ok(())
    }
}
