//! Prometheus metrics of a node, served as Prometheus text (format 0.0.4) by the `/metrics`
//! endpoint: call [`Metrics::render`] and answer with [`CONTENT_TYPE`].
//!
//! Recording is cheap enough for the hot path: every recorder is a relaxed atomic increment,
//! and the per-method histograms are found in a fixed table (a short scan of `&'static str`
//! method names), never in a locked map. Only [`Metrics::connection_closed`] goes through a
//! label map (close codes are open-ended), once per connection.
//!
//! What is exported (all names start with `herald_`):
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `herald_client_connections_opened_total` | counter | |
//! | `herald_client_connections_closed_total` | counter | `code` (WebSocket close code) |
//! | `herald_client_commands_received_total` | counter | |
//! | `herald_client_command_duration_seconds` | histogram | `method` |
//! | `herald_client_messages_queued_total` | counter | |
//! | `herald_client_slow_consumers_total` | counter | |
//! | `herald_node_client_connection_limit_total` | counter | |
//! | `herald_node_client_connection_rate_limit_total` | counter | |
//! | `herald_publications_total` | counter | `source` (`api`, `client`, `other`) |
//! | `herald_api_command_duration_seconds` | histogram | `method` |
//! | `herald_clients`, `herald_users`, `herald_channels`, `herald_subscriptions` | gauge | |
//! | `herald_process_resident_memory_bytes` | gauge | |
//! | `herald_websocket_write_budget_share` | gauge | |
//! | `herald_webhook_events_queued` | gauge | |
//! | `herald_webhook_events_dropped_total`, `herald_webhook_events_delivered_total`, `herald_webhook_posts_failed_total` | counter | |
//! | `herald_build_info` | gauge (info) | `version` |
//!
//! The gauges are read from the [`Hub`] (and `/proc`) when the metrics are rendered, so
//! nothing on the hot path keeps them up to date.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::hub::Hub;

/// The `Content-Type` to serve [`Metrics::render`] with (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Client protocol methods with their own `herald_client_command_duration_seconds` series;
/// anything else is counted as `other`.
const CLIENT_METHODS: &[&str] = &[
    "connect",
    "ping",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "rpc",
    "send",
    "refresh",
    "sub_refresh",
    "other",
];

/// Server API methods with their own `herald_api_command_duration_seconds` series; anything
/// else is counted as `other`.
const API_METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "rpc",
    "refresh",
    "batch",
    "other",
];

/// Where publications come from (`herald_publications_total{source}`).
const PUBLICATION_SOURCES: &[&str] = &["api", "client", "other"];

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds, for integer comparison on the hot path.
const BUCKETS_NS: [u64; 12] = [
    100_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Label set of `herald_client_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    connections_opened: Counter,
    connections_closed: Family<CloseLabels, Counter>,
    commands_in: Counter,
    messages_out: Counter,
    slow_consumers: Counter,
    connection_limit: Counter,
    connection_rate_limit: Counter,
    publications: ByLabel<Counter>,
    command_duration: ByLabel<LatencyHistogram>,
    api_duration: ByLabel<LatencyHistogram>,
    clients: Gauge,
    users: Gauge,
    channels: Gauge,
    subscriptions: Gauge,
    resident_memory: Gauge,
    /// The share of `websocket.write_budget` write pacing keeps in force (below 1 while the
    /// cores are contended), read from the pacer given to [`Metrics::watch_pacer`].
    write_budget_share: Gauge<f64, AtomicU64>,
    pacer: std::sync::OnceLock<Arc<herald_ws::Pacer>>,
    webhooks: crate::webhooks::QueueMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("connections_opened", &self.connections_opened.get())
            .field("commands_in", &self.commands_in.get())
            .field("messages_out", &self.messages_out.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics, all zero, registered under the `herald_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("herald");
        let metrics = Metrics {
            connections_opened: Counter::default(),
            connections_closed: Family::default(),
            commands_in: Counter::default(),
            messages_out: Counter::default(),
            slow_consumers: Counter::default(),
            connection_limit: Counter::default(),
            connection_rate_limit: Counter::default(),
            publications: ByLabel::new("source", PUBLICATION_SOURCES, false),
            command_duration: ByLabel::new("method", CLIENT_METHODS, true),
            api_duration: ByLabel::new("method", API_METHODS, true),
            clients: Gauge::default(),
            users: Gauge::default(),
            channels: Gauge::default(),
            subscriptions: Gauge::default(),
            resident_memory: Gauge::default(),
            write_budget_share: Gauge::default(),
            pacer: std::sync::OnceLock::new(),
            webhooks: crate::webhooks::QueueMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "client_connections_opened",
            "Client connections accepted (WebSocket upgraded)",
            metrics.connections_opened.clone(),
        );
        registry.register(
            "client_connections_closed",
            "Client connections ended, by WebSocket close code",
            metrics.connections_closed.clone(),
        );
        registry.register(
            "client_commands_received",
            "Commands received from clients",
            metrics.commands_in.clone(),
        );
        registry.register(
            "client_command_duration_seconds",
            "Time to handle a client command, by protocol method",
            metrics.command_duration.clone(),
        );
        registry.register(
            "client_messages_queued",
            "Messages queued for delivery to clients",
            metrics.messages_out.clone(),
        );
        registry.register(
            "client_slow_consumers",
            "Clients disconnected as slow consumers: their outbound queue overflowed, or their output stalled for the write timeout",
            metrics.slow_consumers.clone(),
        );
        registry.register(
            "node_client_connection_limit",
            "WebSocket connections refused because client.connection_limit connections were open",
            metrics.connection_limit.clone(),
        );
        registry.register(
            "node_client_connection_rate_limit",
            "WebSocket connections refused by client.connection_rate_limit",
            metrics.connection_rate_limit.clone(),
        );
        registry.register(
            "publications",
            "Publications made, by source",
            metrics.publications.clone(),
        );
        registry.register(
            "api_command_duration_seconds",
            "Time to execute a server API command, by method",
            metrics.api_duration.clone(),
        );
        registry.register(
            "clients",
            "Clients connected to this node",
            metrics.clients.clone(),
        );
        registry.register(
            "users",
            "Distinct users connected to this node",
            metrics.users.clone(),
        );
        registry.register(
            "channels",
            "Channels with subscribers on this node",
            metrics.channels.clone(),
        );
        registry.register(
            "subscriptions",
            "Channel subscriptions on this node",
            metrics.subscriptions.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            metrics.resident_memory.clone(),
        );
        registry.register(
            "websocket_write_budget_share",
            "Share of websocket.write_budget that write pacing keeps in force: 1, or less while \
             the server's threads wait for a core",
            metrics.write_budget_share.clone(),
        );
        registry.register(
            "webhook_events_queued",
            "Webhook events waiting for delivery (webhooks.max_queue bounds them)",
            metrics.webhooks.queued.clone(),
        );
        registry.register(
            "webhook_events_dropped",
            "Webhook events dropped because the queue was full or could not be written",
            metrics.webhooks.dropped.clone(),
        );
        registry.register(
            "webhook_events_delivered",
            "Webhook events the backend acknowledged (2xx)",
            metrics.webhooks.delivered.clone(),
        );
        registry.register(
            "webhook_posts_failed",
            "Webhook POSTs that failed (no answer within webhooks.timeout, refused, not 2xx) and are retried",
            metrics.webhooks.failed_posts.clone(),
        );
        registry.register(
            "build",
            "Herald version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The webhook queue's metrics (it updates them itself).
    pub fn webhooks(&self) -> &crate::webhooks::QueueMetrics {
        &self.webhooks
    }

    /// A client connection was accepted (WebSocket upgraded).
    pub fn connection_opened(&self) {
        self.connections_opened.inc();
    }

    /// A client connection ended with `code` (WebSocket close code).
    pub fn connection_closed(&self, code: u16) {
        self.connections_closed
            .get_or_create(&CloseLabels { code })
            .inc();
    }

    /// A frame with `commands` commands arrived from a client.
    pub fn commands_in(&self, commands: u64) {
        self.commands_in.inc_by(commands);
    }

    /// `n` messages were queued to clients.
    pub fn messages_out(&self, n: u64) {
        self.messages_out.inc_by(n);
    }

    /// A publication was made; `source` is "api" or "client".
    pub fn publication(&self, source: &'static str) {
        self.publications.get(source).inc();
    }

    /// A client command of `method` (a protocol method name, e.g. `Method::as_str()`) took
    /// `elapsed`.
    pub fn command(&self, method: &'static str, elapsed: Duration) {
        self.command_duration.get(method).observe(elapsed);
    }

    /// `n` clients were disconnected as slow consumers.
    pub fn slow_consumers(&self, n: u64) {
        self.slow_consumers.inc_by(n);
    }

    /// A new connection was refused for `refusal` (see [`crate::limits`]).
    pub fn connection_refused(&self, refusal: crate::limits::Refusal) {
        match refusal {
            crate::limits::Refusal::ConnectionLimit => self.connection_limit.inc(),
            crate::limits::Refusal::RateLimit => self.connection_rate_limit.inc(),
        };
    }

    /// An API call of `method` took `elapsed`.
    pub fn api_call(&self, method: &'static str, elapsed: Duration) {
        self.api_duration.get(method).observe(elapsed);
    }

    /// Reads `herald_websocket_write_budget_share` from `pacer` from now on (the server's one
    /// pacer; a second call is ignored).
    pub fn watch_pacer(&self, pacer: Arc<herald_ws::Pacer>) {
        let _ = self.pacer.set(pacer);
    }

    /// The Prometheus text exposition, with gauges read from the hub.
    pub fn render(&self, hub: &Hub) -> String {
        self.clients.set(gauge_value(hub.num_clients()));
        self.users.set(gauge_value(hub.num_users()));
        self.channels.set(gauge_value(hub.num_channels()));
        self.subscriptions.set(gauge_value(hub.num_subscriptions()));
        self.resident_memory
            .set(process_rss_bytes().map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)));
        // Without pacing (write_coalesce 0s) nothing shrinks the budget.
        self.write_budget_share
            .set(self.pacer.get().map_or(1.0, |p| p.budget_share()));
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; an encoder error would only cut the output short.
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Resident memory of this process in bytes (`VmRSS` of `/proc/self/status`), or `None` where
/// `/proc` is not available.
pub fn process_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb.saturating_mul(1024))
}

/// CPU time (user + system) used by this process so far, from `/proc/self/stat`, or `None`
/// where `/proc` is not available.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| Duration::from_millis(ticks.saturating_mul(1000) / USER_HZ))
}

/// Clock ticks per second of `/proc` times: `USER_HZ`, 100 on every Linux architecture Herald
/// runs on.
const USER_HZ: u64 = 100;

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces: count fields from
    // the last ')'. utime and stime are fields 14 and 15, i.e. 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

// ---------------------------------------------------------------------------------------------
// A fixed family: one metric per known label value, found by a scan, encoded as a family.
// ---------------------------------------------------------------------------------------------

/// Metrics that can tell whether they recorded anything.
trait Observed {
    fn is_unused(&self) -> bool;
}

impl Observed for Counter {
    fn is_unused(&self) -> bool {
        self.get() == 0
    }
}

/// A metric family whose label values are known in advance (the last one, `other`, takes
/// everything else). Lookups scan a short static table: no lock, no hashing.
#[derive(Debug)]
struct ByLabel<M> {
    inner: Arc<ByLabelInner<M>>,
}

impl<M> Clone for ByLabel<M> {
    fn clone(&self) -> Self {
        ByLabel {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct ByLabelInner<M> {
    label: &'static str,
    values: &'static [&'static str],
    metrics: Box<[M]>,
    /// Leave out series that recorded nothing (keeps histograms of unused methods out of the
    /// exposition).
    skip_unused: bool,
}

impl<M: Default> ByLabel<M> {
    fn new(label: &'static str, values: &'static [&'static str], skip_unused: bool) -> Self {
        debug_assert!(!values.is_empty());
        ByLabel {
            inner: Arc::new(ByLabelInner {
                label,
                values,
                metrics: values.iter().map(|_| M::default()).collect(),
                skip_unused,
            }),
        }
    }
}

impl<M> ByLabel<M> {
    /// The metric for `value`, or the last (`other`) one.
    fn get(&self, value: &str) -> &M {
        let inner = &*self.inner;
        let i = inner
            .values
            .iter()
            .position(|v| *v == value)
            .unwrap_or(inner.values.len() - 1);
        &inner.metrics[i]
    }
}

impl<M: TypedMetric> TypedMetric for ByLabel<M> {
    const TYPE: MetricType = M::TYPE;
}

impl<M: EncodeMetric + TypedMetric + Observed> EncodeMetric for ByLabel<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.inner;
        for (value, metric) in inner.values.iter().zip(inner.metrics.iter()) {
            if inner.skip_unused && metric.is_unused() {
                continue;
            }
            let labels = [(inner.label, *value)];
            metric.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

// ---------------------------------------------------------------------------------------------
// A lock-free latency histogram.
// ---------------------------------------------------------------------------------------------

/// A latency histogram with fixed buckets ([`BUCKETS`]), recorded with two relaxed atomic
/// additions (prometheus-client's own histogram takes a lock per observation).
#[derive(Debug, Default)]
struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last slot is above the largest bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of all observations, in nanoseconds.
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = BUCKETS_NS
            .iter()
            .position(|bound| ns <= *bound)
            .unwrap_or(BUCKETS_NS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl Observed for LatencyHistogram {
    fn is_unused(&self) -> bool {
        self.count() == 0
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); BUCKETS.len()];
        for (slot, (bound, count)) in buckets
            .iter_mut()
            .zip(BUCKETS.iter().zip(self.counts.iter()))
        {
            *slot = (*bound, count.load(Ordering::Relaxed));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, self.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ClientHandle;
    use crate::ws::{CloseCode, Outbox};

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .map(|l| l[series.len() + 1..].trim())
    }

    #[test]
    fn counters_and_gauges_render_with_herald_prefix() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.connection_closed(3001);
        m.connection_closed(3001);
        m.connection_closed(1000);
        m.commands_in(5);
        m.messages_out(7);
        m.slow_consumers(1);
        m.publication("api");
        m.publication("client");
        m.publication("client");
        m.publication("elsewhere");

        let hub = Hub::new();
        let c = Arc::new(ClientHandle::new(
            "c1".into(),
            "u1".into(),
            None,
            Arc::new(Outbox::new(1 << 20, CloseCode(3008), "slow")),
        ));
        hub.add_client(c.clone());
        hub.subscribe("news", &c);
        hub.subscribe("chat", &c);

        let text = m.render(&hub);
        assert_eq!(
            sample(&text, "herald_client_connections_opened_total"),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "herald_client_connections_closed_total{code=\"3001\"}"
            ),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                "herald_client_connections_closed_total{code=\"1000\"}"
            ),
            Some("1")
        );
        assert_eq!(
            sample(&text, "herald_client_commands_received_total"),
            Some("5")
        );
        assert_eq!(
            sample(&text, "herald_client_messages_queued_total"),
            Some("7")
        );
        assert_eq!(
            sample(&text, "herald_client_slow_consumers_total"),
            Some("1")
        );
        assert_eq!(
            sample(&text, "herald_publications_total{source=\"api\"}"),
            Some("1")
        );
        assert_eq!(
            sample(&text, "herald_publications_total{source=\"client\"}"),
            Some("2")
        );
        assert_eq!(
            sample(&text, "herald_publications_total{source=\"other\"}"),
            Some("1")
        );
        assert_eq!(sample(&text, "herald_clients"), Some("1"));
        assert_eq!(sample(&text, "herald_users"), Some("1"));
        assert_eq!(sample(&text, "herald_channels"), Some("2"));
        assert_eq!(sample(&text, "herald_subscriptions"), Some("2"));
        assert!(text.contains("# TYPE herald_clients gauge"));
        assert!(text.contains(&format!(
            "herald_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("herald_"), "{line}");
        }
        // Gauges follow the hub.
        hub.remove_client(&c);
        let text = m.render(&hub);
        assert_eq!(sample(&text, "herald_subscriptions"), Some("0"));
        assert_eq!(sample(&text, "herald_clients"), Some("0"));
    }

    /// `herald_websocket_write_budget_share` is 1 without pacing, then what the server's pacer
    /// keeps in force: here three contended periods take 6 % each.
    #[test]
    fn the_write_budget_share_is_the_pacers() {
        let m = Metrics::new();
        let hub = Hub::new();
        assert_eq!(
            sample(&m.render(&hub), "herald_websocket_write_budget_share"),
            Some("1.0")
        );
        let pacer = Arc::new(herald_ws::Pacer::with_contention(
            1_000,
            Duration::from_millis(200),
            || Some(0.9),
        ));
        m.watch_pacer(pacer.clone());
        let t0 = tokio::time::Instant::now();
        for period in 1..=3 {
            pacer.wrote(None, t0 + Duration::from_millis(300 * period));
        }
        assert_eq!(
            sample(&m.render(&hub), "herald_websocket_write_budget_share"),
            Some("0.82")
        );
    }

    #[test]
    fn histograms_by_method() {
        let m = Metrics::new();
        m.command("publish", Duration::from_micros(50));
        m.command("publish", Duration::from_millis(3));
        m.command("publish", Duration::from_secs(20));
        m.command("bogus", Duration::from_millis(1));
        m.api_call("broadcast", Duration::from_millis(2));
        let text = m.render(&Hub::new());
        let p = "herald_client_command_duration_seconds";
        assert_eq!(
            sample(
                &text,
                &format!("{p}_bucket{{method=\"publish\",le=\"0.0001\"}}")
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                &format!("{p}_bucket{{method=\"publish\",le=\"0.005\"}}")
            ),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                &format!("{p}_bucket{{method=\"publish\",le=\"10\"}}")
            ),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                &format!("{p}_bucket{{method=\"publish\",le=\"+Inf\"}}")
            ),
            Some("3")
        );
        assert_eq!(
            sample(&text, &format!("{p}_count{{method=\"publish\"}}")),
            Some("3")
        );
        let sum: f64 = sample(&text, &format!("{p}_sum{{method=\"publish\"}}"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 20.00305).abs() < 1e-6, "{sum}");
        assert_eq!(
            sample(&text, &format!("{p}_count{{method=\"other\"}}")),
            Some("1")
        );
        // Unused methods are left out.
        assert!(!text.contains("method=\"connect\""));
        assert_eq!(
            sample(
                &text,
                "herald_api_command_duration_seconds_count{method=\"broadcast\"}"
            ),
            Some("1")
        );
        assert!(text.contains("# TYPE herald_api_command_duration_seconds histogram"));
    }

    #[test]
    fn proc_parsers() {
        let status = "Name:\therald\nVmPeak:\t  10000 kB\nVmRSS:\t    2048 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        if cfg!(target_os = "linux") {
            assert!(process_rss_bytes().is_some_and(|b| b > 0));
            assert!(process_cpu_time().is_some());
        }
    }
}
