//! Prometheus metrics: what the agent wrote, what the kernel lost, how full its maps are and
//! how fast alerts come out, served in the text exposition format from a thread of their own
//! ([`server`]) when `[metrics] listen` (or `--metrics`) names an address.
//!
//! The event loop only bumps atomics: [`Metrics::observe`] for each document written, the
//! sinks' counters as they change. Map fill and ring buffer use are read by the metrics
//! thread itself when it is scraped.

pub mod server;

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

use crate::{
    error::Error,
    format::ecs::{self, Document},
    kernel::{KernelGauges, Sensor},
    sinks::SinkStats,
    system,
};

/// The reasons `events-lost` names, each a series from the start (at 0) so that a query
/// for loss finds it before the first loss (the exfiltration rule's alerts likewise).
pub const LOSS_REASONS: [&str; 6] = [
    "ring-buffer-full",
    "taint-map-full",
    "send-totals-full",
    "outbound-uncopied",
    "record-malformed",
    "agent-map-update-failed",
];

/// Alert latency buckets: 50 µs, doubling up to ~1.6 s.
const LATENCY_BUCKET_START: f64 = 50e-6;
const LATENCY_BUCKETS: u16 = 16;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DocumentLabels {
    kind: &'static str,
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: &'static str,
}

/// The agent's metrics; clones share them.
#[derive(Debug, Clone)]
pub struct Metrics {
    families: Arc<Families>,
}

#[derive(Debug)]
struct Families {
    documents: Family<DocumentLabels, Counter>,
    alerts: Family<RuleLabels, Counter>,
    lost: Family<ReasonLabels, Counter>,
    alert_latency: Histogram,
    sink_queued: Family<SinkLabels, Gauge>,
    sink_dropped: Family<SinkLabels, Counter>,
    sink_retries: Family<SinkLabels, Counter>,
    map_entries: Family<MapLabels, Gauge>,
    map_capacity: Family<MapLabels, Gauge>,
    ring_unread: Gauge,
    ring_capacity: Gauge,
    /// Wall-clock time of boot as the pipeline stamps kernel times with it.
    boot_wall_ns: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        let families = Families {
            documents: Family::default(),
            alerts: Family::default(),
            lost: Family::default(),
            alert_latency: Histogram::new(exponential_buckets(LATENCY_BUCKET_START, 2.0, LATENCY_BUCKETS)),
            sink_queued: Family::default(),
            sink_dropped: Family::default(),
            sink_retries: Family::default(),
            map_entries: Family::default(),
            map_capacity: Family::default(),
            ring_unread: Gauge::default(),
            ring_capacity: Gauge::default(),
            boot_wall_ns: system::boot_wall_ns(),
        };
        for reason in LOSS_REASONS {
            drop(families.lost.get_or_create(&ReasonLabels { reason }));
        }
        drop(families.alerts.get_or_create(&RuleLabels { rule: ecs::EXFILTRATION_RULE.name }));
        Self { families: Arc::new(families) }
    }
}

impl Metrics {
    /// Serves the metrics on `listen` from a thread of their own, reading `sensor`'s maps at
    /// each scrape; `None` when no address is configured. Failing to bind is an error.
    pub fn serve(listen: Option<SocketAddr>, sensor: &Sensor) -> Result<Option<Self>, Error> {
        let Some(listen) = listen else { return Ok(None) };
        let metrics = Self::default();
        server::start(listen, metrics.clone(), sensor.gauges()?)?;
        Ok(Some(metrics))
    }

    /// Counts `document`, written now: by kind and action, an alert by its rule and how long
    /// after its kernel event, a loss by its reason.
    pub fn observe(&self, document: &Document) {
        let families = &*self.families;
        let event = &document.event.class;
        families.documents.get_or_create(&DocumentLabels { kind: event.kind, action: event.action }).inc();
        if let Some(rule) = document.rule.as_ref().filter(|_| event.kind == "alert") {
            families.alerts.get_or_create(&RuleLabels { rule: rule.name }).inc();
            if let Some(seconds) = self.latency(&document.timestamp) {
                families.alert_latency.observe(seconds);
            }
        }
        if let Some(loss) = document.vigie.as_ref().and_then(|vigie| vigie.events_lost.as_ref()) {
            families.lost.get_or_create(&ReasonLabels { reason: loss.reason }).inc_by(loss.new);
        }
    }

    /// Records a sink's delivery state (its totals only grow).
    pub fn sink(&self, stats: &SinkStats) {
        let families = &*self.families;
        let labels = SinkLabels { sink: stats.name.clone() };
        families.sink_queued.get_or_create(&labels).set(i64::try_from(stats.queued).unwrap_or(i64::MAX));
        raise(&families.sink_dropped.get_or_create(&labels), stats.dropped);
        raise(&families.sink_retries.get_or_create(&labels), stats.retries);
    }

    /// Reads the kernel's map fill and ring buffer use into their gauges.
    fn read_kernel(&self, gauges: &KernelGauges) {
        let families = &*self.families;
        for fill in gauges.fill() {
            families.map_entries.get_or_create(&MapLabels { map: fill.map }).set(fill.entries.into());
            families.map_capacity.get_or_create(&MapLabels { map: fill.map }).set(fill.capacity.into());
        }
        let ring = gauges.ring();
        families.ring_unread.set(i64::try_from(ring.unread).unwrap_or(i64::MAX));
        families.ring_capacity.set(i64::try_from(ring.capacity).unwrap_or(i64::MAX));
    }

    /// Seconds from the kernel event a document's `@timestamp` stamps (boot time plus the
    /// event's monotonic time) to now, on the monotonic clock: a wall-clock step after start
    /// does not skew it.
    fn latency(&self, timestamp: &str) -> Option<f64> {
        let event_ns = ecs::epoch_ns(timestamp)?.checked_sub(self.families.boot_wall_ns)?;
        let elapsed_ns = system::monotonic_ns().saturating_sub(event_ns);
        #[expect(clippy::cast_precision_loss, reason = "a latency in seconds needs no 53-bit precision")]
        Some(elapsed_ns as f64 / 1e9)
    }

    /// The text exposition, as `GET /metrics` answers it (for tests).
    #[cfg(test)]
    pub fn exposition(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry()).unwrap();
        text
    }

    /// Every family, named and described, for encoding.
    fn registry(&self) -> Registry {
        let families = &*self.families;
        let mut registry = Registry::with_prefix("vigie");
        registry.register(
            "documents",
            "Documents written, by event.kind and event.action",
            families.documents.clone(),
        );
        registry.register("alerts", "Alerts written, by rule", families.alerts.clone());
        registry.register(
            "events_lost",
            "Kernel records, taints, byte counts or map updates lost, by reason (as events-lost reports them)",
            families.lost.clone(),
        );
        registry.register(
            "alert_latency_seconds",
            "From the kernel event to its alert being written",
            families.alert_latency.clone(),
        );
        registry.register("sink_queue_depth", "Documents waiting for a sink", families.sink_queued.clone());
        registry.register(
            "sink_dropped",
            "Documents a sink never took (dropped from its full queue)",
            families.sink_dropped.clone(),
        );
        registry.register("sink_retries", "Retries of a failing sink", families.sink_retries.clone());
        registry.register(
            "map_entries",
            "Entries in a kernel map, read at scrape time",
            families.map_entries.clone(),
        );
        registry.register("map_capacity", "Capacity of a kernel map", families.map_capacity.clone());
        registry.register(
            "ring_buffer_unread_bytes",
            "Bytes in the kernel ring buffer not yet read",
            families.ring_unread.clone(),
        );
        registry.register(
            "ring_buffer_bytes",
            "Size of the kernel ring buffer",
            families.ring_capacity.clone(),
        );
        registry
    }
}

/// Raises `counter` to `total`, a count kept elsewhere.
fn raise(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

#[cfg(test)]
pub mod tests;
