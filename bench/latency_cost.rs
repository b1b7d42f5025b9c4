//! What the latency histograms add to one HTTP request on a shard, measured in process: the
//! records the shard makes per request (listener request time; backend request time and time to
//! response head; server request time, with the lookups that find them), with histograms on and
//! off, on the same `Backend` and `LatencySet` types the shard uses. The end-to-end comparison
//! (bench/run.py, `ringway-http` against `ringway-http-nohist`) is the real measure but its
//! noise on a shared 2-core VM is larger than the 2 % budget; this one bounds the cost from
//! below the noise: ns per request against the CPU-µs per request H1 measures.
//!
//! `cargo run --release --example latency_cost` (pin it: `taskset -c 0 target/release/examples/latency_cost`).

use std::net::SocketAddr;
use std::time::Instant;

use ringway::config::{Balance, HashKey};
use ringway::ids::{BackendId, IdMap, ListenerId, ServerId};
use ringway::latency::{LatencyKind, LatencySet};
use ringway::upstream::{Backend, BackendCfg, ServerCfg};

fn backend(histograms: bool) -> Backend {
    let servers = (0..4)
        .map(|i| ServerCfg {
            id: ServerId(10 + i),
            name: format!("s{i}"),
            address: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
            weight: 1,
            backup: false,
            maxconn: 0,
            send_proxy: None,
            admin: ringway::config::AdminState::Ready,
        })
        .collect();
    let cfg = BackendCfg {
        id: BackendId(1),
        name: "app".to_string(),
        servers,
        balance: Balance::RoundRobin,
        hash_key: HashKey::Source,
        retries: 2,
        redispatch: true,
        sticky_cookie: None,
        queue_max: 0,
        queue_timeout_ms: 5_000,
        idle_conns_max: 32,
        idle_timeout_ms: 15_000,
        passive_failures: 0,
        tls: None,
        tls_generation: 0,
    };
    Backend::with_histograms(cfg, 0, 1, histograms)
}

/// Request times spread like a real mix (50 µs .. 50 ms, log-uniform; xorshift).
fn values(n: usize) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (50.0 * 1000f64.powf(u)) as u64
        })
        .collect()
}

fn run(histograms: bool, vs: &[u64]) -> f64 {
    let mut backends: IdMap<BackendId, Backend> = IdMap::default();
    backends.insert(BackendId(1), backend(histograms));
    let mut listeners: IdMap<ListenerId, Option<LatencySet>> = IdMap::default();
    listeners.insert(ListenerId(0), histograms.then(LatencySet::new));
    let t = Instant::now();
    for (i, &v) in vs.iter().enumerate() {
        let v = std::hint::black_box(v);
        // What World::exchange_done and the session's record calls do for one request.
        if let Some(Some(set)) = listeners.get_mut(&ListenerId(0)) {
            set.record(LatencyKind::Request, v);
        }
        if let Some(b) = backends.get_mut(&BackendId(1)) {
            if let Some(set) = &mut b.latency {
                set.record(LatencyKind::ResponseHead, v / 2);
            }
            b.exchange_done(Some(ServerId(10 + (i % 4) as u32)), Some(v), 0, 120);
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / vs.len() as f64;
    std::hint::black_box(&backends);
    ns
}

fn main() {
    let vs = values(4_000_000);
    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..5 {
        on.push(run(true, &vs));
        off.push(run(false, &vs));
    }
    on.sort_by(f64::total_cmp);
    off.sort_by(f64::total_cmp);
    let (on, off) = (on[2], off[2]);
    println!(
        "per request: histograms on {on:.1} ns, off {off:.1} ns, cost {:.1} ns (median of 5 runs of {} requests)",
        on - off,
        vs.len()
    );
}
