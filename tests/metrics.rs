//! `GET /metrics` and the latency in `/stats` through the real binary: the exposition parsed by
//! the Python `prometheus_client` parser (installed by .ci/run), every metric docs/metrics.md
//! documents present with its documented labels, counters and histogram counts moving by exactly
//! the requests sent, and a backend slowed by 200 ms read back as such.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::httpd::{Httpd, Reply, ok};
use common::*;

/// Reads an exposition on stdin, prints `[[family, type, [[sample, {labels}, value], ...]], ...]`.
const PARSE_PY: &str = r#"
import json, sys
mode = sys.argv[1]
if mode == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
out = []
for f in text_string_to_metric_families(text):
    out.append([f.name, f.type, [[s.name, s.labels, s.value] for s in f.samples]])
print(json.dumps(out))
"#;

/// One parsed exposition: family name -> (type, samples).
type Families = BTreeMap<String, (String, Vec<Sample>)>;

#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// True when python3 has `prometheus_client`. Under CI (the `CI` variable) a missing module is a
/// failure: .ci/run installs it, so its absence is a broken setup, not a reason to skip.
fn have_parser() -> bool {
    let have = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 with prometheus_client (.ci/run: python3 -m pip install prometheus_client)"
        );
        eprintln!(
            "skipped: python3 lacks prometheus_client (python3 -m pip install prometheus_client)"
        );
    }
    have
}

fn parse(text: &str, openmetrics: bool) -> Families {
    let mut child = std::process::Command::new("python3")
        .args(["-c", PARSE_PY])
        .arg(if openmetrics { "openmetrics" } else { "text" })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write exposition");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "the Python parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parser JSON");
    let mut families = Families::new();
    for f in v.as_array().expect("families") {
        let samples = f[2]
            .as_array()
            .expect("samples")
            .iter()
            .map(|s| Sample {
                name: s[0].as_str().unwrap_or_default().to_string(),
                labels: s[1]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                value: s[2].as_f64().unwrap_or(f64::NAN),
            })
            .collect();
        families.insert(
            f[0].as_str().unwrap_or_default().to_string(),
            (f[1].as_str().unwrap_or_default().to_string(), samples),
        );
    }
    families
}

/// `GET path` on the admin listener with `Accept`; returns (content type, body).
fn get(addr: SocketAddr, path: &str, accept: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect admin");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (ctype, body.to_string())
}

/// The metrics docs/metrics.md documents (first column of its Prometheus tables), with their
/// type and label column.
fn documented() -> Vec<(String, String, BTreeSet<String>)> {
    let docs = std::fs::read_to_string(manifest_dir().join("docs/metrics.md")).expect("docs");
    let prometheus = docs
        .split("## Prometheus")
        .nth(1)
        .expect("a Prometheus section");
    let mut out = Vec::new();
    for line in prometheus.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | type | labels | ...
        let Some(name) = cells
            .get(1)
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        if !name.starts_with("ringway_") {
            continue;
        }
        let kind = cells.get(2).copied().unwrap_or_default();
        let kind = kind
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        // Labels: `a`, `b`; `c` = `v1`, `v2` lists values after `=`.
        let mut labels = BTreeSet::new();
        let mut values = false;
        for item in cells.get(3).copied().unwrap_or_default().split(',') {
            let (name, has_values) = match item.split_once('=') {
                Some((n, _)) => (n, true),
                None => (item, false),
            };
            if values && !has_values {
                continue;
            }
            values |= has_values;
            let name = name.trim().trim_matches('`');
            if !name.is_empty() {
                labels.insert(name.to_string());
            }
        }
        out.push((name.to_string(), kind, labels));
    }
    assert!(out.len() > 50, "docs/metrics.md tables not found: {out:?}");
    out
}

/// The family a documented sample name lives in (the Python parser names counters without
/// `_total`).
fn family_of(name: &str, kind: &str) -> String {
    match kind {
        "counter" => name.trim_end_matches("_total").to_string(),
        _ => name.to_string(),
    }
}

/// Sum of the samples named `sample` whose labels include `want`.
fn value(f: &Families, family: &str, sample: &str, want: &[(&str, &str)]) -> f64 {
    let Some((_, samples)) = f.get(family) else {
        panic!("no family {family}");
    };
    samples
        .iter()
        .filter(|s| s.name == sample)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// `n` keep-alive GETs on one connection; every response must be a 200 with its body read.
fn send_requests(addr: SocketAddr, n: usize, path: &str) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut pending = Vec::new();
    for _ in 0..n {
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
        let head = read_response(&mut s, &mut pending);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
}

fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if pending.len() >= end + 4 + len {
                pending.drain(..end + 4 + len);
                return head;
            }
        }
        let n = s.read(&mut tmp).expect("read response");
        assert!(n > 0, "connection closed mid-response");
        pending.extend_from_slice(&tmp[..n]);
    }
}

fn config(listen: u16, admin: u16, web: &[SocketAddr], slow: SocketAddr) -> String {
    let servers: Vec<String> = web
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{{ name = \"s{i}\", address = \"{a}\" }}"))
        .collect();
    let raw = free_port();
    format!(
        "[global]\nshards = 2\nadmin = \"127.0.0.1:{admin}\"\n\
         [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{listen}\"\nmode = \"http\"\nbackend = \"app\"\n\
         [[listener.route]]\npath_prefix = \"/slow\"\nbackend = \"slow\"\n\
         [[listener]]\nname = \"raw\"\nbind = \"127.0.0.1:{raw}\"\nmode = \"tcp\"\nbackend = \"app\"\n\
         [[backend]]\nname = \"app\"\n\
         health_check = {{ type = \"tcp\", interval = \"200ms\", timeout = \"1s\", rise = 1, fall = 1 }}\n\
         servers = [ {} ]\n\
         [[backend]]\nname = \"slow\"\nservers = [ {{ name = \"tortoise\", address = \"{slow}\" }} ]\n",
        servers.join(", ")
    )
}

fn start() -> (Ringway, Vec<Httpd>, Httpd) {
    let web = vec![Httpd::named("a"), Httpd::named("b")];
    let slow = Httpd::spawn(|_| {
        std::thread::sleep(Duration::from_millis(200));
        Reply::Bytes(ok("slow"))
    });
    let addrs: Vec<SocketAddr> = web.iter().map(|h| h.addr).collect();
    let slow_addr = slow.addr;
    let rw = Ringway::start_text(|l, a| config(l, a, &addrs, slow_addr));
    (rw, web, slow)
}

fn scrape(rw: &Ringway, openmetrics: bool) -> Families {
    let accept = if openmetrics {
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    } else {
        "text/plain"
    };
    let (ctype, body) = get(rw.admin, "/metrics", accept);
    if openmetrics {
        assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
        assert!(body.ends_with("# EOF\n"));
    } else {
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    }
    parse(&body, openmetrics)
}

#[test]
fn every_documented_metric_is_exposed_with_its_labels_and_counts_move_by_the_requests_sent() {
    if !have_parser() {
        return;
    }
    let (rw, _web, _slow) = start();
    // Health checks have run at least once (their counters exist from then on).
    let checked = poll(Duration::from_secs(10), || {
        let s = rw.stats();
        let servers = stat(&s, "/backends/0/servers").as_array()?.clone();
        servers
            .iter()
            .all(|s| s["checks"]["checks_passed"].as_u64().unwrap_or(0) > 0)
            .then_some(())
    });
    assert!(
        checked.is_some(),
        "health checks did not run: {}",
        rw.stats()
    );
    let before = scrape(&rw, false);
    const N: usize = 40;
    send_requests(rw.listen, N, "/x");
    let after = scrape(&rw, false);

    // Every documented metric is a family of the documented type.
    let docs = documented();
    for (name, kind, _) in &docs {
        let family = family_of(name, kind);
        let Some((ftype, _)) = after.get(&family) else {
            panic!("documented metric {name} is not exposed (family {family})");
        };
        assert_eq!(ftype, kind, "{name}: type");
    }
    // Every family exposed is documented.
    for family in after.keys() {
        assert!(
            docs.iter().any(|(n, k, _)| family_of(n, k) == *family),
            "{family} is exposed but not documented in docs/metrics.md"
        );
    }
    // Labels as documented (`le` is the histogram's own).
    for (name, kind, labels) in &docs {
        let (_, samples) = &after[&family_of(name, kind)];
        for s in samples {
            let got: BTreeSet<String> = s.labels.keys().filter(|k| *k != "le").cloned().collect();
            assert_eq!(&got, labels, "{name}: labels of {s:?}");
            if let Some(code) = s.labels.get("code") {
                assert!(["1xx", "2xx", "3xx", "4xx", "5xx"].contains(&code.as_str()));
            }
        }
    }

    // Counters move by exactly the requests sent.
    let delta = |family: &str, sample: &str, labels: &[(&str, &str)]| {
        value(&after, family, sample, labels) - value(&before, family, sample, labels)
    };
    let n = N as f64;
    let web = [("listener", "web")];
    let app = [("backend", "app")];
    for (family, sample, labels) in [
        (
            "ringway_http_requests",
            "ringway_http_requests_total",
            &[][..],
        ),
        (
            "ringway_http_responses",
            "ringway_http_responses_total",
            &[("code", "2xx")][..],
        ),
        (
            "ringway_shard_http_requests",
            "ringway_shard_http_requests_total",
            &[][..],
        ),
        (
            "ringway_listener_http_requests",
            "ringway_listener_http_requests_total",
            &web[..],
        ),
        (
            "ringway_listener_http_responses",
            "ringway_listener_http_responses_total",
            &[("listener", "web"), ("code", "2xx")][..],
        ),
        (
            "ringway_server_requests",
            "ringway_server_requests_total",
            &app[..],
        ),
        (
            "ringway_server_http_responses",
            "ringway_server_http_responses_total",
            &[("backend", "app"), ("code", "2xx")][..],
        ),
        (
            "ringway_server_selected",
            "ringway_server_selected_total",
            &app[..],
        ),
        // Histogram counts equal request counts: listener, backend, and summed over servers.
        (
            "ringway_listener_request_duration_seconds",
            "ringway_listener_request_duration_seconds_count",
            &web[..],
        ),
        (
            "ringway_backend_request_duration_seconds",
            "ringway_backend_request_duration_seconds_count",
            &app[..],
        ),
        (
            "ringway_backend_response_head_duration_seconds",
            "ringway_backend_response_head_duration_seconds_count",
            &app[..],
        ),
        (
            "ringway_server_request_duration_seconds",
            "ringway_server_request_duration_seconds_count",
            &app[..],
        ),
    ] {
        assert_eq!(
            delta(family, sample, labels),
            n,
            "{sample}{labels:?} moved by {} for {N} requests",
            delta(family, sample, labels)
        );
    }
    // One client connection carried them all.
    assert_eq!(
        delta(
            "ringway_listener_connections_accepted",
            "ringway_listener_connections_accepted_total",
            &web
        ),
        1.0
    );
    // Each response is the same size: bytes move by N times one response.
    let one = ok("a /x").len() as f64;
    let sent = delta(
        "ringway_listener_proxied_bytes",
        "ringway_listener_proxied_bytes_total",
        &[("listener", "web"), ("direction", "server_to_client")],
    );
    assert!(
        (sent - n * one).abs() < n * 8.0,
        "response bytes {sent} for {N} responses of about {one}"
    );
    // Histograms: +Inf equals _count, buckets cumulative, per series.
    for (family, (ftype, samples)) in &after {
        if ftype != "histogram" {
            continue;
        }
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for s in samples {
            let mut l = s.labels.clone();
            let le = l.remove("le");
            let key = format!("{l:?}");
            if s.name.ends_with("_bucket") {
                let le = le.unwrap_or_default();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                series.entry(key).or_default().push((le, s.value));
            } else if s.name.ends_with("_count") {
                counts.insert(key, s.value);
            }
        }
        for (key, mut b) in series {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            assert!(b.windows(2).all(|w| w[0].1 <= w[1].1), "{family} {key}");
            assert_eq!(
                b.last().map(|x| x.1),
                counts.get(&key).copied(),
                "{family} {key}"
            );
        }
    }

    // The same metrics in OpenMetrics, parsed by the OpenMetrics parser.
    let om = scrape(&rw, true);
    for (name, kind, _) in &docs {
        let family = match kind.as_str() {
            "counter" => name.trim_end_matches("_total").to_string(),
            _ if name.ends_with("_info") => name.trim_end_matches("_info").to_string(),
            _ => name.clone(),
        };
        assert!(om.contains_key(&family), "OpenMetrics lacks {family}");
    }
}

#[test]
fn a_backend_slowed_by_200_ms_shows_p50_between_200_and_260_ms_in_stats_and_metrics() {
    if !have_parser() {
        return;
    }
    let (rw, _web, _slow) = start();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = rw.listen;
            std::thread::spawn(move || send_requests(addr, 5, "/slow/z"))
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let stats = rw.stats();
    let slow = stat(&stats, "/backends")
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "slow"))
        .cloned()
        .expect("backend slow in /stats");
    let request = &slow["latency"]["request"];
    assert_eq!(request["count"], 20, "{request}");
    for timing in ["request", "response_head"] {
        let p50 = slow["latency"][timing]["p50_ms"].as_f64().unwrap_or(0.0);
        assert!(
            (200.0..=260.0).contains(&p50),
            "{timing} p50 {p50} ms: {slow}"
        );
    }
    let server_p50 = slow["servers"][0]["latency"]["request"]["p50_ms"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(
        (200.0..=260.0).contains(&server_p50),
        "server p50 {server_p50}"
    );
    // The fast backend's requests are not slow.
    send_requests(rw.listen, 10, "/fast");
    let stats = rw.stats();
    let app_p50 = stat(&stats, "/backends/0/latency/request/p50_ms")
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(app_p50 < 100.0, "app p50 {app_p50}");

    // /metrics: histogram_quantile(0.5) over the slow backend's buckets, as Prometheus computes
    // it (linear within the bucket holding the rank).
    let m = scrape(&rw, false);
    let (_, samples) = &m["ringway_backend_request_duration_seconds"];
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| {
            s.name.ends_with("_bucket")
                && s.labels.get("backend").map(String::as_str) == Some("slow")
        })
        .map(|s| {
            let le = s.labels.get("le").cloned().unwrap_or_default();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            (le, s.value)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    assert_eq!(total, 20.0, "{buckets:?}");
    let rank = 0.5 * total;
    let mut lower = (0.0, 0.0);
    let mut p50_s = f64::NAN;
    for &(le, c) in &buckets {
        if c >= rank {
            p50_s = lower.0 + (le - lower.0) * (rank - lower.1) / (c - lower.1);
            break;
        }
        lower = (le, c);
    }
    let p50_ms = p50_s * 1000.0;
    assert!(
        (200.0..=260.0).contains(&p50_ms),
        "histogram_quantile(0.5) = {p50_ms} ms from {buckets:?}"
    );
    let sum = value(
        &m,
        "ringway_backend_request_duration_seconds",
        "ringway_backend_request_duration_seconds_sum",
        &[("backend", "slow")],
    );
    let mean_ms = sum / total * 1000.0;
    assert!((200.0..=260.0).contains(&mean_ms), "mean {mean_ms} ms");
}

#[test]
fn tls_handshakes_and_tcp_connections_are_timed_and_the_access_log_carries_the_timings() {
    let ca = common::certs::TestCa::new();
    let (cert, key) = ca.leaf("secure", "secure.test", &["secure.test"]);
    let web = [Httpd::named("a"), Httpd::named("b")];
    let servers: Vec<String> = web
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{{ name = \"s{i}\", address = \"{}\" }}", h.addr))
        .collect();
    let raw = free_port();
    let logs = TempDir::new("rw-access");
    let log_file = logs.0.join("access.log");
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\n\
             [[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:{l}\"\nmode = \"http\"\nbackend = \"app\"\n\
             access_log = \"{}\"\naccess_log_format = \"json\"\n\
             [listener.tls]\n[[listener.tls.certificate]]\ncert = \"{}\"\nkey = \"{}\"\n\
             [[listener]]\nname = \"raw\"\nbind = \"127.0.0.1:{raw}\"\nmode = \"tcp\"\nbackend = \"app\"\n\
             [[backend]]\nname = \"app\"\nservers = [ {} ]\n",
            log_file.display(),
            cert.display(),
            key.display(),
            servers.join(", ")
        )
    });
    let port = rw.listen.port();
    for _ in 0..2 {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert"])
            .arg(&ca.ca_file)
            .arg("--resolve")
            .arg(format!("secure.test:{port}:127.0.0.1"))
            .arg(format!("https://secure.test:{port}/x"))
            .output()
            .expect("curl");
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            body.ends_with(" /x"),
            "curl: {body} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A TCP connection through the raw listener: opened, closed.
    let raw_addr: SocketAddr = format!("127.0.0.1:{raw}").parse().expect("addr");
    drop(TcpStream::connect(raw_addr).expect("connect raw"));

    let listener = |stats: &serde_json::Value, name: &str| {
        stats["listeners"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == name))
            .cloned()
            .unwrap_or_default()
    };
    let stats = poll(Duration::from_secs(10), || {
        let s = rw.stats();
        (listener(&s, "raw")["latency"]["tcp_connection"]["count"] == 1).then_some(s)
    })
    .unwrap_or_else(|| panic!("no TCP connection recorded: {}", rw.stats()));
    let secure = listener(&stats, "secure");
    assert_eq!(secure["mode"], "http");
    assert_eq!(secure["accepted"], 2, "{secure}");
    assert_eq!(secure["http_requests"], 2, "{secure}");
    assert_eq!(secure["latency"]["tls_handshake"]["count"], 2, "{secure}");
    assert_eq!(secure["latency"]["request"]["count"], 2, "{secure}");
    let raw_stats = listener(&stats, "raw");
    assert_eq!(
        (raw_stats["mode"].as_str(), raw_stats["accepted"].as_u64()),
        (Some("tcp"), Some(1))
    );
    assert_eq!(raw_stats["active"], 0, "{raw_stats}");
    let (_, text) = get(rw.admin, "/metrics", "text/plain");
    for line in [
        "ringway_listener_tls_handshake_duration_seconds_count{listener=\"secure\"} 2",
        "ringway_listener_tcp_connection_duration_seconds_count{listener=\"raw\"} 1",
        "ringway_listener_connections_accepted_total{listener=\"raw\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }

    // The access log: both requests, with their timings, TLS version and SNI.
    let lines = poll(Duration::from_secs(5), || {
        let t = std::fs::read_to_string(&log_file).ok()?;
        let v: Vec<serde_json::Value> = t
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (v.len() == 2).then_some(v)
    })
    .expect("two access log lines");
    for l in &lines {
        assert_eq!(l["tls_version"], "TLSv1.3", "{l}");
        assert_eq!(l["sni"], "secure.test", "{l}");
        assert_eq!(l["retries"], 0, "{l}");
        assert!(l["request_us"].as_u64().is_some_and(|us| us > 0), "{l}");
        assert!(l["response_us"].as_u64().is_some(), "{l}");
        assert!(l["queue_us"].is_null(), "{l}");
        assert!(
            ["s0", "s1"].contains(&l["server_name"].as_str().unwrap_or_default()),
            "{l}"
        );
        assert!(
            l["request_us"].as_u64() >= l["response_us"].as_u64(),
            "the whole request outlasts its wait for the head: {l}"
        );
    }
    assert!(
        lines.iter().any(|l| l["connect_us"].as_u64().is_some()),
        "a new server connection has its connect time: {lines:?}"
    );
}
