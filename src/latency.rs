//! Owns: per-shard latency histograms (HdrHistogram, microseconds) for one listener or one
//! backend, their merge across shards, and what they export: quantiles for `/stats` and cumulative
//! bucket counts for Prometheus (`metrics.rs`).
//! Must not: be shared between threads, read the clock, or allocate when recording. A shard
//! records into its own [`LatencySet`]s; when the control thread asks, the shard clones them into
//! the reply message and the control thread merges the copies (`Histogram::add`), exactly as
//! `stats.rs` does for plain counters.
//!
//! Cost of that on the shard: a clone copies 131 KiB per set. Measured in the tests (2 shards ×
//! 50 backends × 6 histograms = 13 MiB, opt-level 2, 2 shared cores): about 2 ms per clone of
//! all of it once the allocator reuses memory (the first clone, paying page faults on fresh
//! memory, took 10-40 ms), and 1-5 ms to merge. Where even that stall matters, the shard can drain
//! instead of copy: swap in an empty set (`std::mem::replace(&mut set, spare)`, O(1)), send the
//! recorded one, and let the control thread merge it into totals it keeps, [`LatencySet::reset`]
//! it and hand it back as the next spare. Both give the same totals (tested).
//!
//! # Range, precision and memory
//!
//! Every histogram counts integer microseconds with 2 significant digits: a value below 256 µs is
//! kept exactly, and above that every value is stored in a sub-bucket at most 1/128 (< 0.8 %) of
//! its size wide. Quantiles come back as the highest value of the sub-bucket, so they are never
//! below the true value and at most 1 % above it. Two ranges:
//!
//! | [`LatencyRange`] | range | counts | bytes per histogram | used by |
//! |---|---|---|---|---|
//! | `Request` | 1 µs .. 60 s | 2 560 | 20 480 (+ 112 inline) | request, connect, response_head, tls_handshake, queue |
//! | `Connection` | 1 µs .. 24 h | 3 968 | 31 744 (+ 112 inline) | tcp_connection |
//!
//! A [`LatencySet`] (all six) is 5 × 20 480 + 31 744 = 134 144 bytes of counts (131 KiB), allocated
//! in [`LatencySet::new`] and never grown. Values above the range are recorded as the top of the
//! range (saturated), not dropped, so a 10-minute request shows up in the slowest bucket.
//!
//! Why 2 digits: 3 significant digits costs 8 times the memory (136 KiB per histogram, 17 408
//! counts) and so 8 times the clone and merge work per scrape, for a third digit nobody reads on a
//! dashboard; 1 digit (2.9 KiB) errs by up to 6 %, which blurs p99 against p999. Why 60 s: every
//! timeout of a request phase is far below it; longer values are timeouts whichever way. Why a
//! day for TCP connections: a database or WebSocket tunnel lives minutes to hours, and a 60 s cap
//! would put all of them in one bucket.
//!
//! # Bucket semantics
//!
//! [`Latency::to_buckets`] counts, for a bound `le`, every HDR sub-bucket whose highest value is
//! `<= le`: a value above a bound is never counted in it, and a value up to 1 % below a bound may
//! count only in the next one (the sub-bucket that holds the bound straddles it). So a bucket
//! never claims a request was faster than it was: "served within 250 ms" errs on the slow side.
//! [`BUCKETS_REQUEST_S`] and [`BUCKETS_CONNECTION_S`] are the fixed Prometheus bucket sets;
//! docs/metrics.md lists them.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Environment variable that turns the histograms off (`off`), for measuring what they cost
/// (bench/README.md, "Stats cost"): shards then record nothing and allocate no histograms, and
/// `/stats` and `/metrics` carry no latency. Read once per shard at start.
pub const HISTOGRAMS_ENV: &str = "RINGWAY_LATENCY_HISTOGRAMS";

/// Whether shards keep latency histograms (on unless [`HISTOGRAMS_ENV`] is `off`).
pub fn histograms_enabled() -> bool {
    std::env::var_os(HISTOGRAMS_ENV).is_none_or(|v| v != "off")
}

/// Significant decimal digits kept by every histogram.
pub const SIGFIG: u8 = 2;
/// Smallest value told apart from 0 (the unit of the histograms is 1 µs).
pub const LOWEST_US: u64 = 1;
/// Top of [`LatencyRange::Request`]: 60 s.
pub const REQUEST_HIGHEST_US: u64 = 60_000_000;
/// Top of [`LatencyRange::Connection`]: 24 h.
pub const CONNECTION_HIGHEST_US: u64 = 86_400_000_000;

/// Prometheus bucket bounds (seconds) for request phases: 100 µs (a connect on the same rack) to
/// 30 s (past every default timeout), 1-2-2.5-5 per decade, so `histogram_quantile` interpolates
/// within at most a factor 2 (a 200 ms backend reads 200-250 ms, not 100-250 ms). `+Inf` ends
/// the set.
pub const BUCKETS_REQUEST_S: &[f64] = &[
    0.0001,
    0.0002,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.025,
    0.05,
    0.1,
    0.2,
    0.25,
    0.5,
    1.0,
    2.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    f64::INFINITY,
];

/// Prometheus bucket bounds (seconds) for TCP connection durations: 10 ms to a day.
pub const BUCKETS_CONNECTION_S: &[f64] = &[
    0.01,
    0.1,
    1.0,
    10.0,
    60.0,
    300.0,
    1800.0,
    3600.0,
    21600.0,
    86400.0,
    f64::INFINITY,
];

/// Which range (and so which memory size and bucket set) a histogram has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyRange {
    /// 1 µs .. 60 s: one phase of a request or connection.
    Request,
    /// 1 µs .. 24 h: a whole TCP connection.
    Connection,
}

impl LatencyRange {
    pub fn highest_us(self) -> u64 {
        match self {
            LatencyRange::Request => REQUEST_HIGHEST_US,
            LatencyRange::Connection => CONNECTION_HIGHEST_US,
        }
    }

    /// The Prometheus buckets exported for this range.
    pub fn buckets_s(self) -> &'static [f64] {
        match self {
            LatencyRange::Request => BUCKETS_REQUEST_S,
            LatencyRange::Connection => BUCKETS_CONNECTION_S,
        }
    }
}

/// One latency distribution: a fixed-size HdrHistogram of microseconds plus the exact sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    hist: Histogram<u64>,
    range: LatencyRange,
    /// Exact sum of the recorded (saturated) values, for Prometheus `_sum`: the histogram alone
    /// could only give a sum approximated from bucket midpoints.
    sum_us: u64,
}

impl Latency {
    /// Allocates the whole histogram now (see the module doc for bytes per range); recording
    /// never allocates.
    pub fn new(range: LatencyRange) -> Latency {
        let hist = Histogram::new_with_bounds(LOWEST_US, range.highest_us(), SIGFIG)
            // Not reachable by a peer or the config: constant bounds, checked by the tests.
            .expect("constant histogram bounds are valid");
        Latency {
            hist,
            range,
            sum_us: 0,
        }
    }

    pub fn range(&self) -> LatencyRange {
        self.range
    }

    /// Records one duration in microseconds. Values above the range count as the top of the
    /// range; 0 is a valid value (a cached answer, a clock that did not tick).
    pub fn record(&mut self, value_us: u64) {
        let value_us = value_us.min(self.range.highest_us());
        self.hist.saturating_record(value_us);
        self.sum_us = self.sum_us.saturating_add(value_us);
    }

    /// Adds `other` into `self` (totals across shards). Both sides of the same key have the same
    /// range, so this is the counts-array add; a mismatched range falls back to re-recording
    /// `other`'s values, saturated, instead of failing.
    pub fn merge(&mut self, other: &Latency) {
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist.saturating_record_n(
                    v.value_iterated_to().min(self.range.highest_us()),
                    v.count_at_value(),
                );
            }
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Exact sum of the recorded values (after saturation), in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Sum in seconds (Prometheus `_sum`).
    pub fn sum_s(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// Value at quantile `q` (0..=1) in microseconds: the highest value equivalent to the true
    /// one, so at most 1 % above it. 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            return 0;
        }
        self.hist.value_at_quantile(q)
    }

    pub fn p50_ms(&self) -> f64 {
        us_to_ms(self.quantile_us(0.5))
    }

    pub fn p90_ms(&self) -> f64 {
        us_to_ms(self.quantile_us(0.9))
    }

    pub fn p99_ms(&self) -> f64 {
        us_to_ms(self.quantile_us(0.99))
    }

    pub fn p999_ms(&self) -> f64 {
        us_to_ms(self.quantile_us(0.999))
    }

    /// Largest recorded value (to the histogram's precision), in milliseconds; 0 when empty.
    pub fn max_ms(&self) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        us_to_ms(self.hist.highest_equivalent(self.hist.max()))
    }

    /// Cumulative Prometheus bucket counts for `bounds_s` (seconds, ascending): one
    /// `(bound, values <= bound)` per bound, always ending with `(+Inf, count)` (appended when
    /// `bounds_s` does not end with it). See the module doc for the 1 % fuzz at a bound.
    pub fn to_buckets(&self, bounds_s: &[f64]) -> Vec<(f64, u64)> {
        // (highest value of an occupied sub-bucket, count up to and including it), ascending.
        let mut running = 0u64;
        let steps: Vec<(u64, u64)> = self
            .hist
            .iter_recorded()
            .map(|v| {
                running = running.saturating_add(v.count_at_value());
                (self.hist.highest_equivalent(v.value_iterated_to()), running)
            })
            .collect();
        let total = self.count();
        let mut out = Vec::with_capacity(bounds_s.len() + 1);
        for &bound in bounds_s {
            let cumulative = if bound.is_nan() {
                continue;
            } else if bound == f64::INFINITY {
                total
            } else if bound < 0.0 {
                0
            } else {
                let bound_us = (bound * 1e6).round() as u64;
                let within = steps.partition_point(|&(high_us, _)| high_us <= bound_us);
                match within.checked_sub(1).and_then(|i| steps.get(i)) {
                    Some(&(_, c)) => c,
                    None => 0,
                }
            };
            out.push((bound, cumulative));
        }
        if out.last().is_none_or(|&(b, _)| b != f64::INFINITY) {
            out.push((f64::INFINITY, total));
        }
        out
    }

    /// [`Latency::to_buckets`] over this range's fixed bucket set.
    pub fn default_buckets(&self) -> Vec<(f64, u64)> {
        self.to_buckets(self.range.buckets_s())
    }

    /// Heap bytes of the counts array (fixed at construction).
    pub fn heap_bytes(&self) -> usize {
        self.hist.distinct_values() * std::mem::size_of::<u64>()
    }

    /// Forgets every value and keeps the allocation (to reuse a drained copy as a spare).
    pub fn reset(&mut self) {
        self.hist.reset();
        self.sum_us = 0;
    }

    /// The `/stats` JSON shape.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            count: self.count(),
            p50_ms: self.p50_ms(),
            p90_ms: self.p90_ms(),
            p99_ms: self.p99_ms(),
            p999_ms: self.p999_ms(),
            max_ms: self.max_ms(),
            sum_ms: self.sum_us as f64 / 1000.0,
            buckets: self
                .default_buckets()
                .into_iter()
                .filter(|(le, _)| le.is_finite())
                .collect(),
        }
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One latency in `GET /stats`: quantiles in milliseconds (to the histogram's 1 % precision).
/// Field names are documented API (docs/metrics.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySnapshot {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Exact sum of the values (ms).
    pub sum_ms: f64,
    /// The Prometheus buckets as `[le_seconds, cumulative count]`, without `+Inf` (that is
    /// `count`): two snapshots give the distribution between them (the stats page's chart).
    pub buckets: Vec<(f64, u64)>,
}

/// What a [`LatencySet`] is kept for; decides which of its timings are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyScope {
    Listener,
    Backend,
}

impl LatencyScope {
    /// The timings that mean something for this scope (the others stay empty and are not
    /// exported): a listener sees whole requests, TLS handshakes and TCP connections; a backend
    /// sees whole requests and the phases spent on it (queue, connect, response head).
    pub fn kinds(self) -> &'static [LatencyKind] {
        match self {
            LatencyScope::Listener => &[
                LatencyKind::Request,
                LatencyKind::TlsHandshake,
                LatencyKind::TcpConnection,
            ],
            LatencyScope::Backend => &[
                LatencyKind::Request,
                LatencyKind::Queue,
                LatencyKind::Connect,
                LatencyKind::ResponseHead,
            ],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LatencyScope::Listener => "listener",
            LatencyScope::Backend => "backend",
        }
    }
}

/// The timings of a [`LatencySet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyKind {
    /// First byte of the request in to last byte of the response out.
    Request,
    /// Backend connect: socket created to connected (TCP, plus the TLS handshake with upstream
    /// TLS).
    Connect,
    /// Request head sent to the backend to response head received.
    ResponseHead,
    /// TLS termination: ClientHello received to handshake complete.
    TlsHandshake,
    /// Time a request waited in a backend queue (every server at maxconn).
    Queue,
    /// TCP listeners: accept to close of a connection.
    TcpConnection,
}

impl LatencyKind {
    pub const ALL: [LatencyKind; 6] = [
        LatencyKind::Request,
        LatencyKind::Connect,
        LatencyKind::ResponseHead,
        LatencyKind::TlsHandshake,
        LatencyKind::Queue,
        LatencyKind::TcpConnection,
    ];

    /// Position in [`LatencyKind::ALL`].
    pub const fn index(self) -> usize {
        match self {
            LatencyKind::Request => 0,
            LatencyKind::Connect => 1,
            LatencyKind::ResponseHead => 2,
            LatencyKind::TlsHandshake => 3,
            LatencyKind::Queue => 4,
            LatencyKind::TcpConnection => 5,
        }
    }

    /// The name used in `/stats` JSON and in the Prometheus metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            LatencyKind::Request => "request",
            LatencyKind::Connect => "connect",
            LatencyKind::ResponseHead => "response_head",
            LatencyKind::TlsHandshake => "tls_handshake",
            LatencyKind::Queue => "queue",
            LatencyKind::TcpConnection => "tcp_connection",
        }
    }

    pub fn range(self) -> LatencyRange {
        match self {
            LatencyKind::TcpConnection => LatencyRange::Connection,
            LatencyKind::Request
            | LatencyKind::Connect
            | LatencyKind::ResponseHead
            | LatencyKind::TlsHandshake
            | LatencyKind::Queue => LatencyRange::Request,
        }
    }
}

/// The timings of one listener or one backend on one shard (or, after [`LatencySet::merge`],
/// over all shards). The caller keys them, e.g. `Vec<(LatencyScope, name, LatencySet)>`.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySet {
    pub request: Latency,
    pub connect: Latency,
    pub response_head: Latency,
    pub tls_handshake: Latency,
    pub queue: Latency,
    pub tcp_connection: Latency,
}

impl Default for LatencySet {
    fn default() -> LatencySet {
        LatencySet::new()
    }
}

impl LatencySet {
    /// Allocates all six histograms (131 KiB, see the module doc).
    pub fn new() -> LatencySet {
        LatencySet {
            request: Latency::new(LatencyKind::Request.range()),
            connect: Latency::new(LatencyKind::Connect.range()),
            response_head: Latency::new(LatencyKind::ResponseHead.range()),
            tls_handshake: Latency::new(LatencyKind::TlsHandshake.range()),
            queue: Latency::new(LatencyKind::Queue.range()),
            tcp_connection: Latency::new(LatencyKind::TcpConnection.range()),
        }
    }

    pub fn get(&self, kind: LatencyKind) -> &Latency {
        match kind {
            LatencyKind::Request => &self.request,
            LatencyKind::Connect => &self.connect,
            LatencyKind::ResponseHead => &self.response_head,
            LatencyKind::TlsHandshake => &self.tls_handshake,
            LatencyKind::Queue => &self.queue,
            LatencyKind::TcpConnection => &self.tcp_connection,
        }
    }

    pub fn get_mut(&mut self, kind: LatencyKind) -> &mut Latency {
        match kind {
            LatencyKind::Request => &mut self.request,
            LatencyKind::Connect => &mut self.connect,
            LatencyKind::ResponseHead => &mut self.response_head,
            LatencyKind::TlsHandshake => &mut self.tls_handshake,
            LatencyKind::Queue => &mut self.queue,
            LatencyKind::TcpConnection => &mut self.tcp_connection,
        }
    }

    /// Records `value_us` as `kind`.
    pub fn record(&mut self, kind: LatencyKind, value_us: u64) {
        self.get_mut(kind).record(value_us);
    }

    /// Adds every histogram of `other` into `self`.
    pub fn merge(&mut self, other: &LatencySet) {
        for kind in LatencyKind::ALL {
            self.get_mut(kind).merge(other.get(kind));
        }
    }

    /// Heap bytes of all six histograms.
    pub fn heap_bytes(&self) -> usize {
        LatencyKind::ALL
            .iter()
            .map(|&k| self.get(k).heap_bytes())
            .sum()
    }

    /// Forgets every value of all six histograms, keeping their memory.
    pub fn reset(&mut self) {
        for kind in LatencyKind::ALL {
            self.get_mut(kind).reset();
        }
    }

    /// The `/stats` JSON shape: the timings of `scope` (others are left out).
    pub fn snapshot(&self, scope: LatencyScope) -> LatencySetSnapshot {
        let pick = |kind: LatencyKind| {
            scope
                .kinds()
                .contains(&kind)
                .then(|| self.get(kind).snapshot())
        };
        LatencySetSnapshot {
            request: pick(LatencyKind::Request),
            queue: pick(LatencyKind::Queue),
            connect: pick(LatencyKind::Connect),
            response_head: pick(LatencyKind::ResponseHead),
            tls_handshake: pick(LatencyKind::TlsHandshake),
            tcp_connection: pick(LatencyKind::TcpConnection),
        }
    }
}

/// `latency` object of a listener or backend in `GET /stats`; a timing absent for the scope is
/// left out of the JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySetSnapshot {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<LatencySnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<LatencySnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<LatencySnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_head: Option<LatencySnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_handshake: Option<LatencySnapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_connection: Option<LatencySnapshot>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values spread log-uniformly over 1 µs .. `top_us` (xorshift64*).
    fn values(n: usize, top_us: u64, mut seed: u64) -> Vec<u64> {
        let decades = (top_us as f64).log10();
        (0..n)
            .map(|_| {
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
                let unit = r as f64 / (1u64 << 53) as f64;
                10f64.powf(unit * decades) as u64
            })
            .collect()
    }

    /// The value at rank ceil(q * n) of the sorted values, which is what HdrHistogram reports
    /// (to its precision).
    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    #[test]
    fn quantiles_are_within_one_percent_above_the_true_value() {
        for range in [LatencyRange::Request, LatencyRange::Connection] {
            let mut l = Latency::new(range);
            let mut vs = values(20_000, range.highest_us(), 0x9E37_79B9_7F4A_7C15);
            for &v in &vs {
                l.record(v);
            }
            vs.sort_unstable();
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                let exact = exact_quantile(&vs, q);
                let got = l.quantile_us(q);
                assert!(got >= exact, "{range:?} q{q}: {got} < exact {exact}");
                let slack = (exact as f64 * 0.01).max(1.0);
                assert!(
                    got as f64 <= exact as f64 + slack,
                    "{range:?} q{q}: {got} more than 1% above exact {exact}"
                );
            }
            assert_eq!(l.count(), 20_000);
            assert_eq!(l.sum_us(), vs.iter().sum::<u64>());
        }
    }

    #[test]
    fn quantiles_in_milliseconds_for_known_values() {
        let mut l = Latency::new(LatencyRange::Request);
        for v in 1..=10_000u64 {
            l.record(v * 100); // 0.1 ms .. 1000 ms
        }
        let within = |got: f64, want: f64| got >= want && got <= want * 1.01;
        assert!(within(l.p50_ms(), 500.0), "p50 {}", l.p50_ms());
        assert!(within(l.p90_ms(), 900.0), "p90 {}", l.p90_ms());
        assert!(within(l.p99_ms(), 990.0), "p99 {}", l.p99_ms());
        assert!(within(l.p999_ms(), 999.0), "p999 {}", l.p999_ms());
        assert!(within(l.max_ms(), 1000.0), "max {}", l.max_ms());
        let s = l.snapshot();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.p99_ms, l.p99_ms());
    }

    #[test]
    fn small_values_are_exact() {
        let mut l = Latency::new(LatencyRange::Request);
        for v in [1, 7, 100, 255] {
            l.record(v);
        }
        assert_eq!(l.quantile_us(0.25), 1);
        assert_eq!(l.quantile_us(0.5), 7);
        assert_eq!(l.quantile_us(0.75), 100);
        assert_eq!(l.quantile_us(1.0), 255);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let l = Latency::new(LatencyRange::Request);
        assert_eq!(
            l.snapshot(),
            LatencySnapshot {
                buckets: BUCKETS_REQUEST_S
                    .iter()
                    .filter(|b| b.is_finite())
                    .map(|&b| (b, 0))
                    .collect(),
                ..LatencySnapshot::default()
            }
        );
        assert_eq!(
            l.to_buckets(&[0.001, f64::INFINITY]),
            [(0.001, 0), (f64::INFINITY, 0)]
        );
    }

    #[test]
    fn zero_is_accepted_and_values_over_the_range_saturate() {
        let mut l = Latency::new(LatencyRange::Request);
        l.record(0);
        assert_eq!(l.count(), 1);
        assert_eq!(l.quantile_us(1.0), 0);
        l.record(REQUEST_HIGHEST_US * 10);
        l.record(u64::MAX);
        assert_eq!(l.count(), 3);
        assert_eq!(l.sum_us(), 2 * REQUEST_HIGHEST_US);
        let top = l.quantile_us(1.0);
        assert!((REQUEST_HIGHEST_US..=REQUEST_HIGHEST_US * 101 / 100).contains(&top));
        // Saturated values are above every finite bound of the range (the sub-bucket holding
        // its top reaches past 60 s): they are only in +Inf.
        let b = l.to_buckets(&[30.0, 60.0, f64::INFINITY]);
        assert_eq!(b, [(30.0, 1), (60.0, 1), (f64::INFINITY, 3)]);

        let mut c = Latency::new(LatencyRange::Connection);
        c.record(u64::MAX);
        c.record(3_600_000_000); // 1 h, inside the connection range
        assert_eq!(c.count(), 2);
        assert!(c.quantile_us(0.5) >= 3_600_000_000);
        assert!(c.max_ms() >= 86_400_000.0);
    }

    #[test]
    fn buckets_are_cumulative_monotone_and_end_at_the_count() {
        let mut l = Latency::new(LatencyRange::Request);
        for v in values(5_000, REQUEST_HIGHEST_US, 42) {
            l.record(v);
        }
        let b = l.default_buckets();
        assert_eq!(b.len(), BUCKETS_REQUEST_S.len());
        for (got, want) in b.iter().zip(BUCKETS_REQUEST_S) {
            assert_eq!(got.0, *want);
        }
        assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "{b:?}");
        assert_eq!(b.last(), Some(&(f64::INFINITY, l.count())));
        // Without +Inf in the bounds it is appended.
        let b = l.to_buckets(&[0.001, 0.01]);
        assert_eq!(b.len(), 3);
        assert_eq!(b[2], (f64::INFINITY, 5_000));
    }

    #[test]
    fn buckets_never_count_a_value_below_a_bound_it_exceeds() {
        let mut l = Latency::new(LatencyRange::Request);
        // Below 256 µs values are exact: on a bound counts in it.
        for v in [200, 201] {
            l.record(v);
        }
        // 990 µs is well below 1 ms; 1 000 µs shares its sub-bucket (1000..1003) with values
        // above 1 ms, so it counts from the next bound on; 200 100 µs (just over 200 ms) never
        // counts as <= 200 ms.
        for v in [990, 1_000, 200_100, 2_600_000] {
            l.record(v);
        }
        let b = l.to_buckets(&[0.0002, 0.001, 0.002, 0.2, 0.25, 2.5, 5.0]);
        assert_eq!(
            b,
            [
                (0.0002, 1),
                (0.001, 3),
                (0.002, 4),
                (0.2, 4),
                (0.25, 5),
                (2.5, 5),
                (5.0, 6),
                (f64::INFINITY, 6)
            ]
        );
    }

    #[test]
    fn merging_two_sets_equals_recording_everything_in_one() {
        let mut a = LatencySet::new();
        let mut b = LatencySet::new();
        let mut all = LatencySet::new();
        for (i, kind) in LatencyKind::ALL.into_iter().enumerate() {
            let top = kind.range().highest_us() * 2; // some saturate
            for v in values(3_000, top, i as u64 + 1) {
                a.record(kind, v);
                all.record(kind, v);
            }
            for v in values(1_000, top / 1000, i as u64 + 100) {
                b.record(kind, v);
                all.record(kind, v);
            }
        }
        a.merge(&b);
        for kind in LatencyKind::ALL {
            let (m, w) = (a.get(kind), all.get(kind));
            assert_eq!(m.hist, w.hist, "{kind:?}");
            assert_eq!(m.count(), 4_000);
            assert_eq!(m.sum_us(), w.sum_us());
            assert_eq!(m.snapshot(), w.snapshot());
            assert_eq!(m.default_buckets(), w.default_buckets());
        }
    }

    #[test]
    fn merging_mismatched_ranges_saturates_instead_of_failing() {
        let mut short = Latency::new(LatencyRange::Request);
        let mut long = Latency::new(LatencyRange::Connection);
        long.record(3_600_000_000);
        long.record(10);
        short.merge(&long);
        assert_eq!(short.count(), 2);
        assert!(short.quantile_us(1.0) >= REQUEST_HIGHEST_US);
    }

    #[test]
    fn memory_per_histogram_and_set_is_as_documented() {
        let r = Latency::new(LatencyRange::Request);
        let c = Latency::new(LatencyRange::Connection);
        assert_eq!(r.heap_bytes(), 20_480);
        assert_eq!(c.heap_bytes(), 31_744);
        assert_eq!(LatencySet::new().heap_bytes(), 5 * 20_480 + 31_744);
        println!(
            "Latency: {} B (request range), {} B (connection range), inline {} B; LatencySet {} B",
            r.heap_bytes(),
            c.heap_bytes(),
            std::mem::size_of::<Latency>(),
            LatencySet::new().heap_bytes()
        );
    }

    #[test]
    fn snapshot_json_has_the_documented_fields_for_each_scope() {
        let mut s = LatencySet::new();
        s.request.record(200);
        let json = serde_json::to_string(&s.snapshot(LatencyScope::Backend)).unwrap_or_default();
        assert!(
            json.starts_with(
                "{\"request\":{\"count\":1,\"p50_ms\":0.2,\"p90_ms\":0.2,\"p99_ms\":0.2,\
                 \"p999_ms\":0.2,\"max_ms\":0.2,\"sum_ms\":0.2,\"buckets\":[[0.0001,0],[0.0002,1],"
            ),
            "{json}"
        );
        assert!(
            json.contains("[30.0,1]]},\"queue\":{\"count\":0,"),
            "{json}"
        );
        assert!(json.contains("\"connect\":") && json.contains("\"response_head\":"));
        assert!(!json.contains("tls_handshake") && !json.contains("tcp_connection"));
        let json = serde_json::to_string(&s.snapshot(LatencyScope::Listener)).unwrap_or_default();
        assert!(json.contains("\"tls_handshake\":") && json.contains("\"tcp_connection\":"));
        assert!(!json.contains("\"queue\"") && !json.contains("\"connect\""));
    }

    /// What a scrape costs the shards and the control thread: each shard clones its sets into the
    /// reply, the control thread merges them. Printed, never asserted (tests do not time).
    #[test]
    fn clone_and_merge_cost_for_two_shards_of_fifty_backends() {
        const SHARDS: usize = 2;
        const BACKENDS: usize = 50;
        let shards: Vec<Vec<LatencySet>> = (0..SHARDS)
            .map(|s| {
                (0..BACKENDS)
                    .map(|b| {
                        let mut set = LatencySet::new();
                        for kind in LatencyKind::ALL {
                            for v in values(200, 5_000_000, (s * 1000 + b) as u64 + 1) {
                                set.record(kind, v);
                            }
                        }
                        set
                    })
                    .collect()
            })
            .collect();

        // Clone: the shard copies 131 KiB per set into its reply; the control thread adds the
        // counts arrays. Twice, since the first clone also pays the page faults of fresh memory.
        let mut clone_times = Vec::new();
        let mut replies: Vec<Vec<LatencySet>> = Vec::new();
        for _ in 0..2 {
            drop(replies);
            let t = std::time::Instant::now();
            replies = shards.to_vec();
            clone_times.push(t.elapsed());
        }
        let t = std::time::Instant::now();
        let mut replies = replies.into_iter();
        let mut total = replies.next().unwrap_or_default();
        for reply in replies {
            for (sum, set) in total.iter_mut().zip(&reply) {
                sum.merge(set);
            }
        }
        let merge_time = t.elapsed();

        // Drain: the shard swaps in spares (O(1)); the control thread merges what was recorded
        // into totals it keeps and resets the drained sets to be the next spares.
        let mut shards = shards;
        let mut spares: Vec<Vec<LatencySet>> = (0..SHARDS)
            .map(|_| (0..BACKENDS).map(|_| LatencySet::new()).collect())
            .collect();
        let t = std::time::Instant::now();
        for (sets, spare) in shards.iter_mut().zip(spares.iter_mut()) {
            std::mem::swap(sets, spare);
        }
        let swap_time = t.elapsed();
        let t = std::time::Instant::now();
        let mut kept: Vec<LatencySet> = (0..BACKENDS).map(|_| LatencySet::new()).collect();
        for drained in &mut spares {
            for (sum, set) in kept.iter_mut().zip(drained.iter_mut()) {
                sum.merge(set);
                set.reset();
            }
        }
        let drain_merge_time = t.elapsed();

        assert_eq!(total.len(), BACKENDS);
        assert_eq!(total[0].request.count(), 400);
        assert_eq!(kept[0].request.hist, total[0].request.hist);
        assert_eq!(spares[1][7].request.count(), 0);
        println!(
            "{SHARDS} shards x {BACKENDS} backends x 6 histograms ({} KiB): clone {:?} (first) \
             {:?} (again), merge {merge_time:?}; drain: swap {swap_time:?}, merge into fresh \
             totals + reset {drain_merge_time:?}",
            SHARDS * BACKENDS * LatencySet::new().heap_bytes() / 1024,
            clone_times[0],
            clone_times[1],
        );
    }
}
