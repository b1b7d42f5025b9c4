//! Owns: the text of `GET /metrics`, in the Prometheus text format (0.0.4) or OpenMetrics 1.0,
//! built from a [`Scrape`]: the counters and latency histograms the control thread gathered from
//! every shard for this one request.
//! Must not: keep metric state between scrapes, touch shards, sockets or the clock. Shards keep
//! plain counters and histograms (`stats.rs`, `latency.rs`); a scrape builds a fresh
//! `prometheus_client` registry holding one [`Collector`] over values computed from the
//! [`Scrape`], and the crate's encoder writes the text (escaping, `_total`/`_info` suffixes,
//! `# UNIT` and `# EOF` for OpenMetrics). No shared atomics, nothing on the request path.
//!
//! Metric and label names are API (docs/metrics.md, "Prometheus"); [`FAMILIES`] lists them and the
//! tests check that the docs and the output contain every one.

use std::collections::HashMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::h2::CalmReason;
use crate::latency::{Latency, LatencyKind, LatencyScope, LatencySet};
use crate::stats::{ShardStats, StatsReport, StatusCounts};

/// `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE_PROMETHEUS: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Server states with a `ringway_server_state` series each (as HAProxy's `haproxy_server_status`).
/// A state outside this list (a future one) gets a series of its own, set to 1.
pub const SERVER_STATES: &[&str] = &["UP", "DOWN", "DRAIN", "MAINT"];

/// Every metric family `encode` writes: name as it appears in the Prometheus text format, and its
/// type there (OpenMetrics shows the counters without `_total` and `ringway_build_info` /
/// `ringway_server_info` as type `info`).
pub const FAMILIES: &[(&str, &str)] = &[
    ("ringway_up", "gauge"),
    ("ringway_build_info", "gauge"),
    ("ringway_start_time_seconds", "gauge"),
    ("ringway_uptime_seconds", "gauge"),
    ("ringway_shards", "gauge"),
    ("ringway_connections_accepted_total", "counter"),
    ("ringway_connections_active", "gauge"),
    ("ringway_connections_closed_total", "counter"),
    ("ringway_connections_rejected_total", "counter"),
    ("ringway_connections_drain_closed_total", "counter"),
    ("ringway_idle_timeouts_total", "counter"),
    ("ringway_proxied_bytes_total", "counter"),
    ("ringway_spliced_bytes_total", "counter"),
    ("ringway_connect_errors_total", "counter"),
    ("ringway_connect_timeouts_total", "counter"),
    ("ringway_connect_retries_total", "counter"),
    ("ringway_tls_peek_rejected_total", "counter"),
    ("ringway_proxy_rejected_total", "counter"),
    ("ringway_h2_connections_total", "counter"),
    ("ringway_h2_streams_total", "counter"),
    ("ringway_h2_streams_refused_total", "counter"),
    ("ringway_h2_resets_received_total", "counter"),
    ("ringway_h2_resets_sent_total", "counter"),
    ("ringway_h2_goaway_sent_total", "counter"),
    ("ringway_h2_goaway_received_total", "counter"),
    ("ringway_h2_glitches_total", "counter"),
    ("ringway_h2_window_timeouts_total", "counter"),
    ("ringway_h2_calm_closes_total", "counter"),
    ("ringway_tls_handshakes_total", "counter"),
    ("ringway_tls_resumed_total", "counter"),
    ("ringway_tls_handshake_errors_total", "counter"),
    ("ringway_tls_handshake_timeouts_total", "counter"),
    ("ringway_tls_connections_active", "gauge"),
    ("ringway_tls_upstream_handshakes_total", "counter"),
    ("ringway_tls_upstream_errors_total", "counter"),
    ("ringway_detect_classified_total", "counter"),
    ("ringway_detect_rejected_total", "counter"),
    ("ringway_http_requests_total", "counter"),
    ("ringway_http_responses_total", "counter"),
    ("ringway_http_local_responses_total", "counter"),
    ("ringway_http_bad_responses_total", "counter"),
    ("ringway_http_request_timeouts_total", "counter"),
    ("ringway_http_server_timeouts_total", "counter"),
    ("ringway_http_pool_reused_total", "counter"),
    ("ringway_http_pool_retries_total", "counter"),
    ("ringway_http_tunnels_total", "counter"),
    ("ringway_http_queued_total", "counter"),
    ("ringway_http_queue_timeouts_total", "counter"),
    ("ringway_shard_connections_accepted_total", "counter"),
    ("ringway_shard_connections_active", "gauge"),
    ("ringway_shard_http_requests_total", "counter"),
    ("ringway_backend_queue_requests", "gauge"),
    ("ringway_backend_servers", "gauge"),
    ("ringway_backend_request_duration_seconds", "histogram"),
    ("ringway_backend_queue_duration_seconds", "histogram"),
    ("ringway_backend_connect_duration_seconds", "histogram"),
    (
        "ringway_backend_response_head_duration_seconds",
        "histogram",
    ),
    ("ringway_server_info", "gauge"),
    ("ringway_server_state", "gauge"),
    ("ringway_server_weight", "gauge"),
    ("ringway_server_connections_active", "gauge"),
    ("ringway_server_selected_total", "counter"),
    ("ringway_server_requests_total", "counter"),
    ("ringway_server_http_responses_total", "counter"),
    ("ringway_server_checks_passed_total", "counter"),
    ("ringway_server_checks_failed_total", "counter"),
    ("ringway_server_check_transitions_total", "counter"),
    ("ringway_server_proxied_bytes_total", "counter"),
    ("ringway_server_request_duration_seconds", "histogram"),
    ("ringway_listener_connections_accepted_total", "counter"),
    ("ringway_listener_connections_active", "gauge"),
    ("ringway_listener_http_requests_total", "counter"),
    ("ringway_listener_http_responses_total", "counter"),
    ("ringway_listener_proxied_bytes_total", "counter"),
    ("ringway_listener_request_duration_seconds", "histogram"),
    (
        "ringway_listener_tls_handshake_duration_seconds",
        "histogram",
    ),
    (
        "ringway_listener_tcp_connection_duration_seconds",
        "histogram",
    ),
];

/// Everything one scrape exports, gathered by the control thread from every shard.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub shards: usize,
    pub uptime_s: f64,
    /// Process start, seconds since the Unix epoch (`ringway_start_time_seconds`).
    pub start_time_s: f64,
    /// Sum of `per_shard`.
    pub total: ShardStats,
    /// `(shard index, its counters)`.
    pub per_shard: Vec<(usize, ShardStats)>,
    pub backends: Vec<BackendScrape>,
    pub listeners: Vec<ListenerScrape>,
}

/// One backend, summed over shards.
#[derive(Debug, Clone)]
pub struct BackendScrape {
    pub name: String,
    /// HTTP requests waiting in this backend's queues now.
    pub queue: u64,
    pub servers: Vec<ServerScrape>,
    /// Merged over shards; exported: request, queue, connect, response_head. `None` until the
    /// backend has recorded something (no histogram series then).
    pub latency: Option<LatencySet>,
}

/// One server of a backend, summed over shards.
#[derive(Debug, Clone, Default)]
pub struct ServerScrape {
    pub name: String,
    pub address: String,
    /// `UP`, `DOWN` or `DRAIN` (see [`SERVER_STATES`]).
    pub state: String,
    pub backup: bool,
    /// Connections open to the server now.
    pub active: u64,
    /// Times the balancer chose this server.
    pub selected: u64,
    /// HTTP requests this server answered or failed.
    pub requests: u64,
    pub status: StatusCounts,
    /// Health check counters; `None` without `health_check` (no series then).
    pub checks: Option<CheckCounts>,
    /// Configured weight; `None` leaves `ringway_server_weight` out for this server.
    pub weight: Option<u32>,
    /// HTTP: request body bytes from clients, response bytes to clients.
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
    /// Request time of the server's answered requests (merged over shards).
    pub request_latency: Option<Latency>,
}

/// Health check counters of one server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckCounts {
    pub passed: u64,
    pub failed: u64,
    /// UP↔DOWN changes.
    pub transitions: u64,
}

/// One listener, merged over shards; exported: request, tls_handshake, tcp_connection.
#[derive(Debug, Clone)]
pub struct ListenerScrape {
    pub name: String,
    pub latency: LatencySet,
    pub accepted: u64,
    pub active: u64,
    pub http_requests: u64,
    pub http_status: StatusCounts,
    pub bytes_client_to_server: u64,
    pub bytes_server_to_client: u64,
}

impl ListenerScrape {
    fn named(name: String, latency: LatencySet) -> ListenerScrape {
        ListenerScrape {
            name,
            latency,
            accepted: 0,
            active: 0,
            http_requests: 0,
            http_status: StatusCounts::default(),
            bytes_client_to_server: 0,
            bytes_server_to_client: 0,
        }
    }
}

impl Scrape {
    /// The natural input: the `/stats` report (with the merged histograms it carries) plus any
    /// further latency sets, keyed by scope and listener or backend name. Entries with the same
    /// key are merged, so the caller may pass every shard's list concatenated. Backend
    /// latencies attach to the backend of that name (a name missing from the report, e.g.
    /// removed by a reload, becomes a backend without servers); listeners appear in the order of
    /// their first entry.
    pub fn from_report(
        report: &StatsReport,
        start_time_s: f64,
        latency: Vec<(LatencyScope, String, LatencySet)>,
    ) -> Scrape {
        let mut backends: Vec<BackendScrape> = report
            .backends
            .iter()
            .map(|b| BackendScrape {
                name: b.name.clone(),
                queue: b.queue,
                servers: b
                    .servers
                    .iter()
                    .map(|s| ServerScrape {
                        name: s.name.clone(),
                        address: s.address.clone(),
                        state: s.state.clone(),
                        backup: s.backup,
                        active: s.active,
                        selected: s.selected,
                        requests: s.requests,
                        status: s.status,
                        checks: s.checks.as_ref().map(|c| CheckCounts {
                            passed: c.checks_passed,
                            failed: c.checks_failed,
                            transitions: c.transitions,
                        }),
                        weight: Some(s.weight),
                        bytes_client_to_server: s.bytes_client_to_server,
                        bytes_server_to_client: s.bytes_server_to_client,
                        request_latency: s.request_latency.clone(),
                    })
                    .collect(),
                latency: b.latency_set.clone(),
            })
            .collect();
        let mut listeners: Vec<ListenerScrape> = report
            .listeners
            .iter()
            .map(|l| ListenerScrape {
                accepted: l.accepted,
                active: l.active,
                http_requests: l.http_requests,
                http_status: l.http_status,
                bytes_client_to_server: l.bytes_client_to_server,
                bytes_server_to_client: l.bytes_server_to_client,
                ..ListenerScrape::named(l.name.clone(), l.latency_set.clone().unwrap_or_default())
            })
            .collect();
        let mut backend_index: HashMap<String, usize> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        let mut listener_index: HashMap<String, usize> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        for (scope, name, set) in latency {
            match scope {
                LatencyScope::Backend => match backend_index.get(&name) {
                    Some(&i) => {
                        if let Some(b) = backends.get_mut(i) {
                            match &mut b.latency {
                                Some(l) => l.merge(&set),
                                None => b.latency = Some(set),
                            }
                        }
                    }
                    None => {
                        backend_index.insert(name.clone(), backends.len());
                        backends.push(BackendScrape {
                            name,
                            queue: 0,
                            servers: Vec::new(),
                            latency: Some(set),
                        });
                    }
                },
                LatencyScope::Listener => match listener_index.get(&name) {
                    Some(&i) => {
                        if let Some(l) = listeners.get_mut(i) {
                            l.latency.merge(&set);
                        }
                    }
                    None => {
                        listener_index.insert(name.clone(), listeners.len());
                        listeners.push(ListenerScrape::named(name, set));
                    }
                },
            }
        }
        Scrape {
            shards: report.shards,
            uptime_s: report.uptime_ms as f64 / 1000.0,
            start_time_s,
            total: report.total,
            per_shard: report
                .per_shard
                .iter()
                .map(|r| (r.shard, r.stats))
                .collect(),
            backends,
            listeners,
        }
    }
}

/// Whether an `Accept` header asks for OpenMetrics (Prometheus 2.5+ sends
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,...`). A media
/// range with `q=0` is a refusal.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

/// The `Content-Type` that goes with `encode(_, openmetrics)`.
pub fn content_type(openmetrics: bool) -> &'static str {
    if openmetrics {
        CONTENT_TYPE_OPENMETRICS
    } else {
        CONTENT_TYPE_PROMETHEUS
    }
}

/// The `/metrics` body for `scrape`: Prometheus text, or OpenMetrics text (ending in `# EOF`).
pub fn encode(scrape: &Scrape, openmetrics: bool) -> String {
    let mut registry = Registry::with_prefix("ringway");
    registry.register_collector(Box::new(Families(families(scrape))));
    let mut out = String::new();
    let encoded = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    // Writing to a String cannot fail and every value here is encodable; should the crate ever
    // refuse one, say so in the body instead of serving a truncated exposition as complete.
    if encoded.is_err() {
        out = String::from("# ringway: metrics encoding failed\n");
    }
    out
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy)]
enum GaugeValue {
    Int(u64),
    Float(f64),
}

#[derive(Debug)]
struct Histogram {
    sum_s: f64,
    count: u64,
    /// Cumulative, as `Latency::to_buckets` gives them, ending with `+Inf`.
    buckets: Vec<(f64, u64)>,
}

#[derive(Debug)]
enum Samples {
    Counter(Vec<(Labels, u64)>),
    Gauge(Vec<(Labels, GaugeValue)>),
    Info(Vec<Labels>),
    Histogram(Vec<(Labels, Histogram)>),
}

#[derive(Debug)]
struct Family {
    /// Without the `ringway_` prefix, the unit and the `_total` / `_info` suffix (the encoder adds
    /// them).
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    samples: Samples,
}

impl Family {
    fn metric_type(&self) -> MetricType {
        match self.samples {
            Samples::Counter(_) => MetricType::Counter,
            Samples::Gauge(_) => MetricType::Gauge,
            Samples::Info(_) => MetricType::Info,
            Samples::Histogram(_) => MetricType::Histogram,
        }
    }
}

/// The collector of one scrape: owns the computed families (a `Collector` must be `'static`).
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for family in &self.0 {
            let mut metric = encoder.encode_descriptor(
                family.name,
                family.help,
                family.unit.as_ref(),
                family.metric_type(),
            )?;
            match &family.samples {
                Samples::Counter(series) => {
                    for (labels, value) in series {
                        metric
                            .encode_family(labels)?
                            .encode_counter::<NoLabelSet, u64, u64>(value, None)?;
                    }
                }
                Samples::Gauge(series) => {
                    for (labels, value) in series {
                        let mut m = metric.encode_family(labels)?;
                        match *value {
                            GaugeValue::Int(v) => m.encode_gauge(&v)?,
                            GaugeValue::Float(v) => m.encode_gauge(&v)?,
                        }
                    }
                }
                Samples::Info(series) => {
                    for labels in series {
                        metric.encode_info(labels)?;
                    }
                }
                Samples::Histogram(series) => {
                    for (labels, h) in series {
                        // The encoder takes per-bucket counts and accumulates them itself.
                        let mut previous = 0u64;
                        let per_bucket: Vec<(f64, u64)> = h
                            .buckets
                            .iter()
                            .map(|&(bound, cumulative)| {
                                let n = cumulative.saturating_sub(previous);
                                previous = cumulative;
                                (bound, n)
                            })
                            .collect();
                        metric
                            .encode_family(labels)?
                            .encode_histogram::<NoLabelSet>(h.sum_s, h.count, &per_bucket, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn counter(name: &'static str, help: &'static str, value: u64) -> Family {
    Family {
        name,
        help,
        unit: None,
        samples: Samples::Counter(vec![(Vec::new(), value)]),
    }
}

fn counter_by(name: &'static str, help: &'static str, series: Vec<(Labels, u64)>) -> Family {
    Family {
        name,
        help,
        unit: None,
        samples: Samples::Counter(series),
    }
}

fn gauge(name: &'static str, help: &'static str, value: GaugeValue) -> Family {
    gauge_by(name, help, vec![(Vec::new(), value)])
}

fn gauge_by(name: &'static str, help: &'static str, series: Vec<(Labels, GaugeValue)>) -> Family {
    Family {
        name,
        help,
        unit: None,
        samples: Samples::Gauge(series),
    }
}

fn seconds(mut family: Family) -> Family {
    family.unit = Some(Unit::Seconds);
    family
}

fn codes(status: &StatusCounts, labels: &Labels) -> Vec<(Labels, u64)> {
    let StatusCounts {
        http_1xx,
        http_2xx,
        http_3xx,
        http_4xx,
        http_5xx,
    } = *status;
    [
        ("1xx", http_1xx),
        ("2xx", http_2xx),
        ("3xx", http_3xx),
        ("4xx", http_4xx),
        ("5xx", http_5xx),
    ]
    .into_iter()
    .map(|(code, n)| {
        let mut l = labels.clone();
        l.push(("code", code.to_string()));
        (l, n)
    })
    .collect()
}

fn directions(labels: &Labels, to_server: u64, to_client: u64) -> Vec<(Labels, u64)> {
    [
        ("client_to_server", to_server),
        ("server_to_client", to_client),
    ]
    .into_iter()
    .map(|(d, n)| {
        let mut l = labels.clone();
        l.push(("direction", d.to_string()));
        (l, n)
    })
    .collect()
}

fn histogram_of(latency: &Latency) -> Histogram {
    Histogram {
        sum_s: latency.sum_s(),
        count: latency.count(),
        buckets: latency.default_buckets(),
    }
}

fn label(key: &'static str, value: &str) -> Labels {
    vec![(key, value.to_string())]
}

fn server_labels(backend: &str, server: &str) -> Labels {
    vec![
        ("backend", backend.to_string()),
        ("server", server.to_string()),
    ]
}

/// The process and shard-total families. Destructures `ShardStats` without `..`, so a counter
/// added there does not compile until it has a metric here.
fn total_families(total: &ShardStats, out: &mut Vec<Family>) {
    let ShardStats {
        accepted,
        active,
        closed,
        bytes_client_to_server,
        bytes_server_to_client,
        bytes_spliced,
        connect_errors,
        connect_timeouts,
        connect_retries,
        idle_timeouts,
        rejected,
        drain_closed,
        tls_peek_rejected,
        proxy_rejected,
        h2_connections,
        h2_streams,
        h2_streams_refused,
        h2_resets_received,
        h2_resets_sent,
        h2_goaway_sent,
        h2_goaway_received,
        h2_glitches,
        h2_window_timeouts,
        h2_calm_closes,
        tls_handshakes,
        tls_resumed,
        tls_handshake_errors,
        tls_handshake_timeouts,
        tls_active,
        tls_upstream_handshakes,
        tls_upstream_errors,
        detect_http,
        detect_tls,
        detect_other,
        detect_rejected,
        http_requests,
        http_status,
        http_local_responses,
        http_bad_responses,
        http_request_timeouts,
        http_server_timeouts,
        http_pool_reused,
        http_pool_retries,
        http_tunnels,
        http_queued,
        http_queue_timeouts,
    } = *total;
    out.extend([
        counter(
            "connections_accepted",
            "Client connections accepted, including those rejected at once.",
            accepted,
        ),
        gauge(
            "connections_active",
            "Client connections open now.",
            GaugeValue::Int(active),
        ),
        counter(
            "connections_closed",
            "Client connections fully closed (both sockets closed, every resource returned).",
            closed,
        ),
        counter(
            "connections_rejected",
            "Clients closed at accept: shard at conns_per_shard_max, or draining.",
            rejected,
        ),
        counter(
            "connections_drain_closed",
            "Connections closed by the drain deadline during shutdown.",
            drain_closed,
        ),
        counter(
            "idle_timeouts",
            "Connections closed because a side was idle past its idle timeout.",
            idle_timeouts,
        ),
        Family {
            name: "proxied",
            help: "Bytes moved between clients and servers, by direction (client_to_server: read \
                   from clients, written to servers).",
            unit: Some(Unit::Bytes),
            samples: Samples::Counter(vec![
                (
                    label("direction", "client_to_server"),
                    bytes_client_to_server,
                ),
                (
                    label("direction", "server_to_client"),
                    bytes_server_to_client,
                ),
            ]),
        },
        Family {
            name: "spliced",
            help: "Of ringway_proxied_bytes_total, bytes moved by splice(2) through a pipe \
                   instead of the buffer ring.",
            unit: Some(Unit::Bytes),
            samples: Samples::Counter(vec![(Vec::new(), bytes_spliced)]),
        },
        counter(
            "connect_errors",
            "Server connects that failed (refused, unreachable, reset), or no server could be \
             picked.",
            connect_errors,
        ),
        counter(
            "connect_timeouts",
            "Server connects not completed within timeouts.connect.",
            connect_timeouts,
        ),
        counter(
            "connect_retries",
            "Connect attempts retried on another (or the same) server after a failure.",
            connect_retries,
        ),
        counter(
            "tls_peek_rejected",
            "SNI passthrough: connections closed for not starting with a valid ClientHello, or \
             an unrouted server name.",
            tls_peek_rejected,
        ),
        counter(
            "proxy_rejected",
            "accept_proxy listeners: connections closed for a missing or malformed PROXY \
             protocol header.",
            proxy_rejected,
        ),
        counter(
            "h2_connections",
            "HTTP/2 client connections opened (ALPN h2 or prior-knowledge h2c).",
            h2_connections,
        ),
        counter(
            "h2_streams",
            "HTTP/2 streams opened by clients (one request each).",
            h2_streams,
        ),
        counter(
            "h2_streams_refused",
            "HTTP/2 streams refused (REFUSED_STREAM): past the concurrent limit, or opened after \
             GOAWAY.",
            h2_streams_refused,
        ),
        counter(
            "h2_resets_received",
            "RST_STREAM frames received from HTTP/2 clients.",
            h2_resets_received,
        ),
        counter(
            "h2_resets_sent",
            "RST_STREAM frames sent to HTTP/2 clients.",
            h2_resets_sent,
        ),
        counter(
            "h2_goaway_sent",
            "GOAWAY frames sent to HTTP/2 clients (drain, reload, idle, errors).",
            h2_goaway_sent,
        ),
        counter(
            "h2_goaway_received",
            "GOAWAY frames received from HTTP/2 clients.",
            h2_goaway_received,
        ),
        counter(
            "h2_glitches",
            "HTTP/2 frames that cost a glitch token (SETTINGS after the first, PING, PRIORITY, \
             empty frames, frames on closed streams, refused streams).",
            h2_glitches,
        ),
        counter(
            "h2_window_timeouts",
            "HTTP/2 streams reset after client_idle with their response stalled on a window the \
             client kept shut.",
            h2_window_timeouts,
        ),
        counter_by(
            "h2_calm_closes",
            "HTTP/2 connections ended with ENHANCE_YOUR_CALM, by the abuse defence that fired.",
            CalmReason::ALL
                .into_iter()
                .map(|r| (label("reason", r.as_str()), h2_calm_closes.get(r)))
                .collect(),
        ),
        counter(
            "tls_handshakes",
            "TLS termination: full handshakes completed.",
            tls_handshakes,
        ),
        counter(
            "tls_resumed",
            "TLS termination: resumed handshakes (session ID or ticket).",
            tls_resumed,
        ),
        counter(
            "tls_handshake_errors",
            "TLS termination: handshakes that failed or broke off.",
            tls_handshake_errors,
        ),
        counter(
            "tls_handshake_timeouts",
            "TLS termination: handshakes not finished within handshake_timeout.",
            tls_handshake_timeouts,
        ),
        gauge(
            "tls_connections_active",
            "TLS connections open now, client side (termination) and server side (upstream TLS).",
            GaugeValue::Int(tls_active),
        ),
        counter(
            "tls_upstream_handshakes",
            "Upstream TLS: handshakes with servers completed.",
            tls_upstream_handshakes,
        ),
        counter(
            "tls_upstream_errors",
            "Upstream TLS: connects, handshakes or certificate checks with servers that failed \
             or timed out.",
            tls_upstream_errors,
        ),
        counter_by(
            "detect_classified",
            "Detect listeners: connections classified, by protocol (http, tls, other).",
            vec![
                (label("protocol", "http"), detect_http),
                (label("protocol", "tls"), detect_tls),
                (label("protocol", "other"), detect_other),
            ],
        ),
        counter(
            "detect_rejected",
            "Detect listeners: connections closed because their protocol has no destination, or \
             the client left before sending enough.",
            detect_rejected,
        ),
        counter(
            "http_requests",
            "HTTP requests answered, by a backend or by ringway itself.",
            http_requests,
        ),
        counter_by(
            "http_responses",
            "HTTP responses by status class of the final response (a 101 counts as 1xx).",
            codes(&http_status, &Vec::new()),
        ),
        counter(
            "http_local_responses",
            "HTTP responses ringway generated itself (400, 404, 408, 413, 431, 502, 503, 504, \
             ...).",
            http_local_responses,
        ),
        counter(
            "http_bad_responses",
            "Backend responses refused as malformed (502, or cut off if already started).",
            http_bad_responses,
        ),
        counter(
            "http_request_timeouts",
            "Request heads not complete within timeouts.http_request (408).",
            http_request_timeouts,
        ),
        counter(
            "http_server_timeouts",
            "Responses not started within timeouts.server_response (504).",
            http_server_timeouts,
        ),
        counter(
            "http_pool_reused",
            "Requests sent on a pooled keep-alive backend connection instead of a new one.",
            http_pool_reused,
        ),
        counter(
            "http_pool_retries",
            "Bodyless requests replayed on a new connection after a pooled one closed before \
             answering.",
            http_pool_retries,
        ),
        counter(
            "http_tunnels",
            "Connections switched to a tunnel by 101 Switching Protocols.",
            http_tunnels,
        ),
        counter(
            "http_queued",
            "Requests that waited in a backend queue (every server at maxconn).",
            http_queued,
        ),
        counter(
            "http_queue_timeouts",
            "Queued requests answered 503 after queue_timeout.",
            http_queue_timeouts,
        ),
    ]);
}

fn histogram_family<'a>(
    name: &'static str,
    help: &'static str,
    kind: LatencyKind,
    series: impl Iterator<Item = (Labels, &'a LatencySet)>,
) -> Family {
    let samples = series
        .filter_map(|(labels, set)| {
            let latency = set.get(kind);
            // A series appears once it has a value: an HTTP listener never shows TCP connection
            // durations, a backend without queueing no queue time.
            (latency.count() > 0).then(|| (labels, histogram_of(latency)))
        })
        .collect();
    Family {
        name,
        help,
        unit: Some(Unit::Seconds),
        samples: Samples::Histogram(samples),
    }
}

fn families(scrape: &Scrape) -> Vec<Family> {
    let mut out = vec![
        gauge(
            "up",
            "1: ringway's control thread answered this scrape.",
            GaugeValue::Int(1),
        ),
        Family {
            name: "build",
            help: "ringway build; the version label is the crate version.",
            unit: None,
            samples: Samples::Info(vec![label("version", env!("CARGO_PKG_VERSION"))]),
        },
        seconds(gauge(
            "start_time",
            "Process start, seconds since the Unix epoch.",
            GaugeValue::Float(scrape.start_time_s),
        )),
        seconds(gauge(
            "uptime",
            "Seconds since the process started.",
            GaugeValue::Float(scrape.uptime_s),
        )),
        gauge(
            "shards",
            "Shards (pinned io_uring threads) running.",
            GaugeValue::Int(scrape.shards as u64),
        ),
    ];
    total_families(&scrape.total, &mut out);

    let shard = |i: usize| label("shard", &i.to_string());
    out.extend([
        counter_by(
            "shard_connections_accepted",
            "Client connections accepted by each shard (SO_REUSEPORT spread).",
            scrape
                .per_shard
                .iter()
                .map(|(i, s)| (shard(*i), s.accepted))
                .collect(),
        ),
        gauge_by(
            "shard_connections_active",
            "Client connections open now on each shard.",
            scrape
                .per_shard
                .iter()
                .map(|(i, s)| (shard(*i), GaugeValue::Int(s.active)))
                .collect(),
        ),
        counter_by(
            "shard_http_requests",
            "HTTP requests answered by each shard.",
            scrape
                .per_shard
                .iter()
                .map(|(i, s)| (shard(*i), s.http_requests))
                .collect(),
        ),
    ]);

    let backends = &scrape.backends;
    out.push(gauge_by(
        "backend_queue_requests",
        "HTTP requests waiting in the backend's queues now.",
        backends
            .iter()
            .map(|b| (label("backend", &b.name), GaugeValue::Int(b.queue)))
            .collect(),
    ));
    out.push(gauge_by(
        "backend_servers",
        "Servers of the backend, by state.",
        backends
            .iter()
            .flat_map(|b| {
                let mut states: Vec<&str> = SERVER_STATES.to_vec();
                for s in &b.servers {
                    if !states.contains(&s.state.as_str()) {
                        states.push(&s.state);
                    }
                }
                states.into_iter().map(move |state| {
                    let n = b.servers.iter().filter(|s| s.state == state).count();
                    let mut l = label("backend", &b.name);
                    l.push(("state", state.to_string()));
                    (l, GaugeValue::Int(n as u64))
                })
            })
            .collect(),
    ));
    let backend_sets = || {
        backends
            .iter()
            .filter_map(|b| Some((label("backend", &b.name), b.latency.as_ref()?)))
    };
    out.extend([
        histogram_family(
            "backend_request_duration",
            "Requests routed to the backend: first request byte in to last response byte out.",
            LatencyKind::Request,
            backend_sets(),
        ),
        histogram_family(
            "backend_queue_duration",
            "Time requests waited in the backend's queue (every server at maxconn).",
            LatencyKind::Queue,
            backend_sets(),
        ),
        histogram_family(
            "backend_connect_duration",
            "Server connects of the backend: connect started to connected (with upstream TLS, \
             to handshake done).",
            LatencyKind::Connect,
            backend_sets(),
        ),
        histogram_family(
            "backend_response_head_duration",
            "Request head sent to the server to response head received.",
            LatencyKind::ResponseHead,
            backend_sets(),
        ),
    ]);

    let servers = || {
        backends
            .iter()
            .flat_map(|b| b.servers.iter().map(move |s| (b.name.as_str(), s)))
    };
    out.push(Family {
        name: "server",
        help: "One series per server, 1, carrying its address and whether it is a backup.",
        unit: None,
        samples: Samples::Info(
            servers()
                .map(|(b, s)| {
                    let mut l = server_labels(b, &s.name);
                    l.push(("address", s.address.clone()));
                    l.push(("backup", s.backup.to_string()));
                    l
                })
                .collect(),
        ),
    });
    out.push(gauge_by(
        "server_state",
        "1 for the server's current state, 0 for the others (UP, DOWN, DRAIN, MAINT).",
        servers()
            .flat_map(|(b, s)| {
                let mut states: Vec<&str> = SERVER_STATES.to_vec();
                if !states.contains(&s.state.as_str()) {
                    states.push(&s.state);
                }
                states.into_iter().map(move |state| {
                    let mut l = server_labels(b, &s.name);
                    l.push(("state", state.to_string()));
                    (l, GaugeValue::Int(u64::from(s.state == state)))
                })
            })
            .collect(),
    ));
    out.push(gauge_by(
        "server_weight",
        "Configured balancing weight of the server (0: draining).",
        servers()
            .filter_map(|(b, s)| {
                s.weight
                    .map(|w| (server_labels(b, &s.name), GaugeValue::Int(u64::from(w))))
            })
            .collect(),
    ));
    out.push(gauge_by(
        "server_connections_active",
        "Connections open to the server now.",
        servers()
            .map(|(b, s)| (server_labels(b, &s.name), GaugeValue::Int(s.active)))
            .collect(),
    ));
    out.push(counter_by(
        "server_selected",
        "Times the balancer chose the server.",
        servers()
            .map(|(b, s)| (server_labels(b, &s.name), s.selected))
            .collect(),
    ));
    out.push(counter_by(
        "server_requests",
        "HTTP requests the server answered or failed.",
        servers()
            .map(|(b, s)| (server_labels(b, &s.name), s.requests))
            .collect(),
    ));
    out.push(counter_by(
        "server_http_responses",
        "HTTP responses of the server by status class.",
        servers()
            .flat_map(|(b, s)| codes(&s.status, &server_labels(b, &s.name)))
            .collect(),
    ));
    let checks = |pick: fn(&CheckCounts) -> u64| {
        servers()
            .filter_map(|(b, s)| {
                s.checks
                    .as_ref()
                    .map(|c| (server_labels(b, &s.name), pick(c)))
            })
            .collect::<Vec<_>>()
    };
    out.extend([
        counter_by(
            "server_checks_passed",
            "Health checks of the server that passed.",
            checks(|c| c.passed),
        ),
        counter_by(
            "server_checks_failed",
            "Health checks of the server that failed.",
            checks(|c| c.failed),
        ),
        counter_by(
            "server_check_transitions",
            "Times health checks moved the server between UP and DOWN.",
            checks(|c| c.transitions),
        ),
    ]);

    out.push(counter_by(
        "server_proxied",
        "HTTP: bytes of the server's answered requests, by direction (client_to_server: request \
         bodies, server_to_client: responses as sent to clients).",
        servers()
            .flat_map(|(b, s)| {
                directions(
                    &server_labels(b, &s.name),
                    s.bytes_client_to_server,
                    s.bytes_server_to_client,
                )
            })
            .collect(),
    ));
    if let Some(f) = out.last_mut() {
        f.unit = Some(Unit::Bytes);
    }
    out.push(Family {
        name: "server_request_duration",
        help: "HTTP requests the server answered: first request byte in to last response byte out.",
        unit: Some(Unit::Seconds),
        samples: Samples::Histogram(
            servers()
                .filter_map(|(b, s)| {
                    let l = s.request_latency.as_ref().filter(|l| l.count() > 0)?;
                    Some((server_labels(b, &s.name), histogram_of(l)))
                })
                .collect(),
        ),
    });

    let listeners = &scrape.listeners;
    let by_listener = |pick: fn(&ListenerScrape) -> u64| {
        listeners
            .iter()
            .map(|l| (label("listener", &l.name), pick(l)))
            .collect::<Vec<_>>()
    };
    out.extend([
        counter_by(
            "listener_connections_accepted",
            "Client connections accepted on the listener, including those rejected at once.",
            by_listener(|l| l.accepted),
        ),
        gauge_by(
            "listener_connections_active",
            "Client connections of the listener open now.",
            listeners
                .iter()
                .map(|l| (label("listener", &l.name), GaugeValue::Int(l.active)))
                .collect(),
        ),
        counter_by(
            "listener_http_requests",
            "HTTP requests answered on the listener, by a backend or by ringway itself.",
            by_listener(|l| l.http_requests),
        ),
        counter_by(
            "listener_http_responses",
            "HTTP responses on the listener by status class.",
            listeners
                .iter()
                .flat_map(|l| codes(&l.http_status, &label("listener", &l.name)))
                .collect(),
        ),
        Family {
            name: "listener_proxied",
            help: "HTTP: bytes of the listener's answered requests, by direction (client_to_server: \
                   request bodies, server_to_client: responses).",
            unit: Some(Unit::Bytes),
            samples: Samples::Counter(
                listeners
                    .iter()
                    .flat_map(|l| {
                        directions(
                            &label("listener", &l.name),
                            l.bytes_client_to_server,
                            l.bytes_server_to_client,
                        )
                    })
                    .collect(),
            ),
        },
    ]);

    let listener_sets = || {
        scrape
            .listeners
            .iter()
            .map(|l| (label("listener", &l.name), &l.latency))
    };
    out.extend([
        histogram_family(
            "listener_request_duration",
            "HTTP requests on the listener: first request byte in to last response byte out.",
            LatencyKind::Request,
            listener_sets(),
        ),
        histogram_family(
            "listener_tls_handshake_duration",
            "TLS termination on the listener: ClientHello received to handshake complete.",
            LatencyKind::TlsHandshake,
            listener_sets(),
        ),
        histogram_family(
            "listener_tcp_connection_duration",
            "TCP listeners: accept to close of each connection.",
            LatencyKind::TcpConnection,
            listener_sets(),
        ),
    ]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{BackendStats, CalmCounts, ListenerStats, ServerStats, ShardReport};

    /// A ShardStats with field number i (1-based) set to `i * m`. Written without `..` so that a new
    /// counter fails to compile here until the tests (and `total_families`) know it.
    fn all_fields(m: u64) -> ShardStats {
        ShardStats {
            accepted: m,
            active: 2 * m,
            closed: 3 * m,
            bytes_client_to_server: 4 * m,
            bytes_server_to_client: 5 * m,
            bytes_spliced: 6 * m,
            connect_errors: 7 * m,
            connect_timeouts: 8 * m,
            connect_retries: 9 * m,
            idle_timeouts: 10 * m,
            rejected: 11 * m,
            drain_closed: 12 * m,
            tls_peek_rejected: 13 * m,
            proxy_rejected: 14 * m,
            tls_handshakes: 15 * m,
            tls_resumed: 16 * m,
            tls_handshake_errors: 17 * m,
            tls_handshake_timeouts: 18 * m,
            tls_active: 19 * m,
            tls_upstream_handshakes: 20 * m,
            tls_upstream_errors: 21 * m,
            detect_http: 22 * m,
            detect_tls: 23 * m,
            detect_other: 24 * m,
            detect_rejected: 25 * m,
            http_requests: 26 * m,
            http_status: StatusCounts {
                http_1xx: 27 * m,
                http_2xx: 28 * m,
                http_3xx: 29 * m,
                http_4xx: 30 * m,
                http_5xx: 31 * m,
            },
            http_local_responses: 32 * m,
            http_bad_responses: 33 * m,
            http_request_timeouts: 34 * m,
            http_server_timeouts: 35 * m,
            http_pool_reused: 36 * m,
            http_pool_retries: 37 * m,
            http_tunnels: 38 * m,
            http_queued: 39 * m,
            http_queue_timeouts: 40 * m,
            h2_connections: 41 * m,
            h2_streams: 42 * m,
            h2_resets_received: 43 * m,
            h2_resets_sent: 44 * m,
            h2_goaway_sent: 45 * m,
            h2_calm_closes: CalmCounts {
                rapid_reset: 46 * m,
                local_resets: 47 * m,
                continuation: 48 * m,
                settings_flood: 49 * m,
                ping_flood: 50 * m,
                glitches: 51 * m,
                hpack: 52 * m,
            },
            h2_streams_refused: 53 * m,
            h2_goaway_received: 54 * m,
            h2_glitches: 55 * m,
            h2_window_timeouts: 56 * m,
        }
    }

    const SHARDSTATS_FIELDS: u64 = 56;

    /// Two shards, one backend of two servers (one with health checks), two listeners; every
    /// exported family has at least one series.
    fn sample_scrape() -> Scrape {
        let server = |name: &str, address: &str, state: &str, backup: bool| ServerStats {
            name: name.to_string(),
            address: address.to_string(),
            state: state.to_string(),
            backup,
            ..ServerStats::default()
        };
        let mut a = server("a", "10.0.0.1:80", "UP", false);
        a.active = 2;
        a.selected = 9;
        a.count_status(200);
        a.count_status(200);
        a.count_status(503);
        a.bytes_client_to_server = 70;
        a.bytes_server_to_client = 700;
        let mut server_latency = Latency::new(crate::latency::LatencyRange::Request);
        server_latency.record(2_000);
        a.request_latency = Some(server_latency);
        let b = server("b \"quoted\"", "10.0.0.2:80", "DRAIN", true);
        let shard_report = |shard: usize, m: u64, servers: Vec<ServerStats>| ShardReport {
            shard,
            stats: all_fields(m),
            backends: vec![BackendStats {
                name: "www".to_string(),
                queue: 1,
                servers,
                ..BackendStats::default()
            }],
            listeners: vec![ListenerStats {
                name: "web".to_string(),
                mode: "http".to_string(),
                accepted: 5,
                active: 1,
                http_requests: 3,
                http_status: StatusCounts {
                    http_2xx: 2,
                    http_4xx: 1,
                    ..StatusCounts::default()
                },
                bytes_client_to_server: 11,
                bytes_server_to_client: 22,
                ..ListenerStats::default()
            }],
        };
        let mut report = StatsReport::from_shards(
            vec![
                shard_report(0, 1, vec![a.clone(), b.clone()]),
                shard_report(1, 1000, vec![a, b]),
            ],
            12_345,
        );
        // Check results live on the control thread and join the merged view only.
        if let Some(a) = report
            .backends
            .first_mut()
            .and_then(|b| b.servers.first_mut())
        {
            a.checks = Some(crate::health::CheckStats {
                checks_passed: 12,
                checks_failed: 1,
                transitions: 2,
                up: true,
                ..crate::health::CheckStats::default()
            });
        }

        let mut www = LatencySet::new();
        www.request.record(990); // just under 1 ms
        www.request.record(20_000);
        www.queue.record(300);
        www.connect.record(150);
        www.response_head.record(900);
        let mut web = LatencySet::new();
        web.request.record(1_000);
        web.tls_handshake.record(2_000);
        let mut db = LatencySet::new();
        db.tcp_connection.record(90_000_000); // 90 s
        let mut scrape = Scrape::from_report(
            &report,
            1_700_000_000.5,
            vec![
                (LatencyScope::Backend, "www".to_string(), www.clone()),
                (LatencyScope::Listener, "web".to_string(), web),
                (LatencyScope::Backend, "www".to_string(), www),
                (LatencyScope::Listener, "db".to_string(), db),
            ],
        );
        if let Some(s) = scrape
            .backends
            .first_mut()
            .and_then(|b| b.servers.first_mut())
        {
            s.weight = Some(3);
        }
        scrape
    }

    #[test]
    fn from_report_merges_latency_by_key_and_keeps_counters() {
        let s = sample_scrape();
        assert_eq!(s.shards, 2);
        assert_eq!(s.uptime_s, 12.345);
        assert_eq!(s.total.accepted, 1001);
        assert_eq!(s.per_shard, vec![(0, all_fields(1)), (1, all_fields(1000))]);
        assert_eq!(s.backends.len(), 1);
        let www = &s.backends[0];
        assert_eq!(www.queue, 2);
        assert_eq!(www.latency.as_ref().map(|l| l.request.count()), Some(4));
        assert_eq!(www.servers[0].requests, 6);
        assert_eq!(
            www.servers[0].checks,
            Some(CheckCounts {
                passed: 12,
                failed: 1,
                transitions: 2
            })
        );
        assert_eq!(www.servers[1].checks, None);
        let names: Vec<&str> = s.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
    }

    #[test]
    fn exact_lines_for_a_small_scrape() {
        let text = encode(&sample_scrape(), false);
        let version = env!("CARGO_PKG_VERSION");
        for line in [
            "# HELP ringway_connections_accepted_total Client connections accepted, including \
             those rejected at once.",
            "# TYPE ringway_connections_accepted_total counter",
            "ringway_connections_accepted_total 1001",
            "# TYPE ringway_connections_active gauge",
            "ringway_connections_active 2002",
            "ringway_up 1",
            &format!("ringway_build_info{{version=\"{version}\"}} 1"),
            "ringway_uptime_seconds 12.345",
            "ringway_start_time_seconds 1700000000.5",
            "ringway_shards 2",
            "ringway_proxied_bytes_total{direction=\"client_to_server\"} 4004",
            "ringway_proxied_bytes_total{direction=\"server_to_client\"} 5005",
            "ringway_spliced_bytes_total 6006",
            "ringway_detect_classified_total{protocol=\"tls\"} 23023",
            "ringway_h2_calm_closes_total{reason=\"rapid_reset\"} 46046",
            "ringway_h2_calm_closes_total{reason=\"local_resets\"} 47047",
            "ringway_h2_calm_closes_total{reason=\"continuation\"} 48048",
            "ringway_h2_calm_closes_total{reason=\"settings_flood\"} 49049",
            "ringway_h2_calm_closes_total{reason=\"ping_flood\"} 50050",
            "ringway_h2_calm_closes_total{reason=\"glitches\"} 51051",
            "ringway_h2_calm_closes_total{reason=\"hpack\"} 52052",
            "ringway_h2_streams_refused_total 53053",
            "ringway_h2_goaway_received_total 54054",
            "ringway_h2_glitches_total 55055",
            "ringway_h2_window_timeouts_total 56056",
            "ringway_http_responses_total{code=\"2xx\"} 28028",
            "ringway_shard_connections_active{shard=\"0\"} 2",
            "ringway_shard_connections_active{shard=\"1\"} 2000",
            "ringway_shard_connections_accepted_total{shard=\"1\"} 1000",
            "ringway_backend_queue_requests{backend=\"www\"} 2",
            "ringway_backend_servers{backend=\"www\",state=\"UP\"} 1",
            "ringway_backend_servers{backend=\"www\",state=\"DOWN\"} 0",
            "ringway_backend_servers{backend=\"www\",state=\"DRAIN\"} 1",
            "ringway_server_info{backend=\"www\",server=\"a\",address=\"10.0.0.1:80\",\
             backup=\"false\"} 1",
            "ringway_server_state{backend=\"www\",server=\"a\",state=\"UP\"} 1",
            "ringway_server_state{backend=\"www\",server=\"a\",state=\"DOWN\"} 0",
            "ringway_server_state{backend=\"www\",server=\"b \\\"quoted\\\"\",state=\"DRAIN\"} 1",
            "ringway_server_weight{backend=\"www\",server=\"a\"} 3",
            "ringway_server_connections_active{backend=\"www\",server=\"a\"} 4",
            "ringway_server_selected_total{backend=\"www\",server=\"a\"} 18",
            "ringway_server_requests_total{backend=\"www\",server=\"a\"} 6",
            "ringway_server_http_responses_total{backend=\"www\",server=\"a\",code=\"2xx\"} 4",
            "ringway_server_http_responses_total{backend=\"www\",server=\"a\",code=\"5xx\"} 2",
            "ringway_server_checks_passed_total{backend=\"www\",server=\"a\"} 12",
            "ringway_server_checks_failed_total{backend=\"www\",server=\"a\"} 1",
            "ringway_server_check_transitions_total{backend=\"www\",server=\"a\"} 2",
            "# TYPE ringway_backend_request_duration_seconds histogram",
            "ringway_backend_request_duration_seconds_bucket{backend=\"www\",le=\"0.0005\"} 0",
            "ringway_backend_request_duration_seconds_bucket{backend=\"www\",le=\"0.001\"} 2",
            "ringway_backend_request_duration_seconds_bucket{backend=\"www\",le=\"0.025\"} 4",
            "ringway_backend_request_duration_seconds_bucket{backend=\"www\",le=\"+Inf\"} 4",
            "ringway_backend_request_duration_seconds_sum{backend=\"www\"} 0.04198",
            "ringway_backend_request_duration_seconds_count{backend=\"www\"} 4",
            "ringway_backend_connect_duration_seconds_bucket{backend=\"www\",le=\"0.0005\"} 2",
            "ringway_listener_request_duration_seconds_count{listener=\"web\"} 1",
            "ringway_listener_tls_handshake_duration_seconds_count{listener=\"web\"} 1",
            "ringway_listener_tcp_connection_duration_seconds_bucket{listener=\"db\",le=\"60\"} 0",
            "ringway_listener_tcp_connection_duration_seconds_bucket{listener=\"db\",le=\"300\"} 1",
            "ringway_listener_connections_accepted_total{listener=\"web\"} 10",
            "ringway_listener_connections_active{listener=\"web\"} 2",
            "ringway_listener_http_requests_total{listener=\"web\"} 6",
            "ringway_listener_http_responses_total{listener=\"web\",code=\"4xx\"} 2",
            "ringway_listener_proxied_bytes_total{listener=\"web\",direction=\"server_to_client\"} 44",
            "ringway_server_proxied_bytes_total{backend=\"www\",server=\"a\",direction=\"client_to_server\"} 140",
            "ringway_server_request_duration_seconds_count{backend=\"www\",server=\"a\"} 2",
            "ringway_server_state{backend=\"www\",server=\"a\",state=\"MAINT\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing line {line:?} in:\n{text}"
            );
        }
        // No server without checks gets those series; no listener a backend's timings.
        assert!(!text.contains("ringway_server_checks_passed_total{backend=\"www\",server=\"b"));
        assert!(
            text.contains("ringway_server_weight{backend=\"www\",server=\"b \\\"quoted\\\"\"} 0")
        );
        assert!(!text.contains("tcp_connection_duration_seconds_count{listener=\"web\"}"));
        // The calm closes are only by reason (their sum is the total): an unlabelled series
        // beside them would double every `sum()`.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("ringway_h2_calm_closes_total ")),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_has_units_info_and_eof() {
        let text = encode(&sample_scrape(), true);
        for line in [
            "# TYPE ringway_connections_accepted counter",
            "ringway_connections_accepted_total 1001",
            "# TYPE ringway_build info",
            "# TYPE ringway_backend_request_duration_seconds histogram",
            "# UNIT ringway_backend_request_duration_seconds seconds",
            "# UNIT ringway_proxied_bytes bytes",
            "ringway_backend_request_duration_seconds_count{backend=\"www\"} 4",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing line {line:?} in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn every_shard_counter_has_a_series() {
        let text = encode(&sample_scrape(), false);
        // Shards hold i and 1000 i for field i, so the total 1001 i is no other series' value.
        for i in 1..=SHARDSTATS_FIELDS {
            let value = format!(" {}", 1001 * i);
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.ends_with(&value)),
                "no series carries ShardStats field #{i} (value{value})"
            );
        }
    }

    #[test]
    fn content_negotiation() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(!wants_openmetrics("text/plain"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("application/openmetrics-text; q=0"));
        assert_eq!(
            content_type(false),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(content_type(true).starts_with("application/openmetrics-text"));
    }

    #[test]
    fn docs_list_every_family() {
        let docs = include_str!("../docs/metrics.md");
        for (name, _) in FAMILIES {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/metrics.md does not document `{name}`"
            );
        }
    }

    /// Parses `text` with the Python `prometheus_client` parser (the reference implementation's
    /// sibling) and returns `[[family, type, [[sample, {labels}, value], ...]], ...]`, or `None`
    /// when the module is missing outside CI.
    fn python_parse(text: &str, openmetrics: bool) -> Option<serde_json::Value> {
        let have = std::process::Command::new("python3")
            .args(["-c", "import prometheus_client"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !have {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs python3 with prometheus_client: python3 -m pip install prometheus_client"
            );
            println!("skipped: python3 lacks prometheus_client (pip install prometheus_client)");
            return None;
        }
        let path = std::env::temp_dir().join(format!(
            "ringway-metrics-{}-{}.txt",
            std::process::id(),
            if openmetrics { "om" } else { "prom" }
        ));
        std::fs::write(&path, text).expect("write temp file");
        let parser = if openmetrics {
            "prometheus_client.openmetrics.parser"
        } else {
            "prometheus_client.parser"
        };
        let script = format!(
            "import json, sys\n\
             from {parser} import text_string_to_metric_families\n\
             text = open(sys.argv[1]).read()\n\
             print(json.dumps([[f.name, f.type, [[s.name, s.labels, s.value] for s in f.samples]]\n\
                               for f in text_string_to_metric_families(text)]))\n"
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .arg(&path)
            .output()
            .expect("run python3");
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "python parser rejected the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(serde_json::from_slice(&out.stdout).expect("parser output is JSON"))
    }

    fn check_parsed(parsed: &serde_json::Value, openmetrics: bool) {
        let families = parsed.as_array().expect("list of families");
        let mut sample_names: HashMap<String, String> = HashMap::new(); // sample -> family type
        for f in families {
            let ftype = f[1].as_str().unwrap_or_default().to_string();
            for s in f[2].as_array().into_iter().flatten() {
                sample_names.insert(s[0].as_str().unwrap_or_default().to_string(), ftype.clone());
            }
        }
        for (name, ftype) in FAMILIES {
            let (sample, want_type) = match *ftype {
                "histogram" => (format!("{name}_count"), "histogram"),
                _ if openmetrics && name.ends_with("_info") => (name.to_string(), "info"),
                other => (name.to_string(), other),
            };
            assert_eq!(
                sample_names.get(&sample).map(String::as_str),
                Some(want_type),
                "family {name} ({ftype}) not parsed (openmetrics: {openmetrics})"
            );
        }
        // Histograms: per series, buckets cumulative in `le` order and +Inf == _count.
        for f in families.iter().filter(|f| f[1] == "histogram") {
            let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
            let mut counts: HashMap<String, f64> = HashMap::new();
            for s in f[2].as_array().into_iter().flatten() {
                let name = s[0].as_str().unwrap_or_default();
                let mut labels = s[1].as_object().cloned().unwrap_or_default();
                let le = labels.remove("le");
                let key = serde_json::Value::Object(labels).to_string();
                let value = s[2].as_f64().unwrap_or(f64::NAN);
                if name.ends_with("_bucket") {
                    let le = le
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap_or(f64::NAN)
                    };
                    buckets.entry(key).or_default().push((le, value));
                } else if name.ends_with("_count") {
                    counts.insert(key, value);
                }
            }
            assert!(!buckets.is_empty(), "{} has no series", f[0]);
            for (key, mut b) in buckets {
                b.sort_by(|x, y| x.0.total_cmp(&y.0));
                assert!(
                    b.windows(2).all(|w| w[0].1 <= w[1].1),
                    "{} {key}: buckets not cumulative: {b:?}",
                    f[0]
                );
                let inf = b.last().map(|x| x.1);
                assert_eq!(
                    inf,
                    counts.get(&key).copied(),
                    "{} {key}: +Inf != _count",
                    f[0]
                );
            }
        }
    }

    #[test]
    fn prometheus_text_parses_with_the_python_parser() {
        let text = encode(&sample_scrape(), false);
        if let Some(parsed) = python_parse(&text, false) {
            check_parsed(&parsed, false);
        }
    }

    #[test]
    fn openmetrics_text_parses_with_the_python_parser() {
        let text = encode(&sample_scrape(), true);
        if let Some(parsed) = python_parse(&text, true) {
            check_parsed(&parsed, true);
        }
    }

    #[test]
    fn an_idle_process_still_exposes_every_family() {
        let report = StatsReport::from_shards(Vec::new(), 0);
        let scrape = Scrape::from_report(&report, 0.0, Vec::new());
        for openmetrics in [false, true] {
            let text = encode(&scrape, openmetrics);
            for (name, _) in FAMILIES {
                let base = if openmetrics {
                    name.trim_end_matches("_total").trim_end_matches("_info")
                } else {
                    name
                };
                assert!(
                    text.contains(&format!("# TYPE {base} ")),
                    "no TYPE line for {base} (openmetrics: {openmetrics}):\n{text}"
                );
            }
        }
    }

    #[test]
    fn encode_cost_for_fifty_backends() {
        let mut scrape = sample_scrape();
        let template = scrape.backends[0].clone();
        scrape.backends = (0..50)
            .map(|i| BackendScrape {
                name: format!("b{i}"),
                ..template.clone()
            })
            .collect();
        let t = std::time::Instant::now();
        let text = encode(&scrape, false);
        println!(
            "encode: 50 backends x {} servers, {} lines, {} KiB in {:?}",
            template.servers.len(),
            text.lines().count(),
            text.len() / 1024,
            t.elapsed()
        );
    }
}
