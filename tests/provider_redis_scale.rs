//! 10,000 hosts in Redis: how long the provider's initial sync takes, how much heap one snapshot
//! holds, what publishing and diffing cost, and a write's latency at that size. The numbers are
//! printed (docs/fleet.md quotes them); only correctness is asserted, never timing. A binary of
//! its own, so that its allocation counter sees no other test.

mod redis_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use redis_support::*;
use ringway::provider::{self, RouteSnapshot, diff};

/// Counts live heap bytes, to measure a snapshot exactly (RSS also holds freed pages and the
/// client's buffers).
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator with the caller's layout unchanged; the counter
// is only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours, passed through.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc`/`realloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours, passed through.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Hosts loaded (below ROUTES_MAX, so the late write still fits); `RINGWAY_REDIS_SCALE_HOSTS=99999 cargo test --test provider_redis_scale --
/// --nocapture` measures other sizes by hand (docs/fleet.md quotes 10,000 and 99,999).
fn hosts() -> usize {
    std::env::var("RINGWAY_REDIS_SCALE_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| (1..ringway::provider::schema::ROUTES_MAX).contains(&n))
        .unwrap_or(10_000)
}

#[tokio::test]
async fn ten_thousand_hosts_initial_sync_time_and_snapshot_memory() {
    if !redis_available("ten_thousand_hosts_initial_sync_time_and_snapshot_memory") {
        return;
    }
    let hosts = hosts();
    let server = RedisServer::start(NOTIFY, &[]).await;
    let mut w = server.client().await;
    let started = Instant::now();
    for chunk in (0..hosts).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            // Addresses repeat past 65,536 hosts; each host is still its own route.
            pipe.cmd("RPUSH")
                .arg(format!("frontend:site{i}.example.com"))
                .arg(format!("site{i}"))
                .arg(format!("http://10.{}.{}.1:8080", (i >> 8) & 255, i & 255))
                .arg(format!("http://10.{}.{}.2:8080", (i >> 8) & 255, i & 255))
                .ignore();
        }
        pipe.exec_async(&mut w).await.unwrap();
    }
    eprintln!(
        "loaded {hosts} hosts (2 servers each) into Redis in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );

    let rss_before = rss_bytes();
    let started = Instant::now();
    let (mut rx, handle) = provider::spawn(server.cfg(), None).unwrap();
    assert!(handle.wait_synced(Duration::from_secs(300)).await);
    let sync = started.elapsed();
    let rss_after = rss_bytes();
    let snap = rx.borrow_and_update().clone();
    assert_eq!(snap.routes.len(), hosts);
    assert!(snap.skipped.is_empty());

    let before = live_bytes();
    let t = Instant::now();
    let mut copy: RouteSnapshot = (*snap).clone();
    let clone_time = t.elapsed();
    let snapshot_bytes = live_bytes() - before;

    let route = copy.routes.values_mut().nth(hosts / 2).unwrap();
    route.servers.pop();
    let t = Instant::now();
    let changes = diff(&snap, &copy);
    let diff_time = t.elapsed();
    assert_eq!(changes.len(), 1);

    let t = Instant::now();
    run(
        &mut w,
        &[
            b"RPUSH",
            b"frontend:late.example.com",
            b"late",
            b"http://10.99.0.1:8080",
        ],
    )
    .await;
    wait_snapshot(
        &mut rx,
        Duration::from_secs(30),
        "write at full size",
        |s| has_host(s, "late.example.com"),
    )
    .await;
    let write_latency = t.elapsed();

    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut w)
        .await
        .unwrap();
    let redis_used = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);

    eprintln!(
        "{hosts} hosts: initial sync {:.0} ms; one snapshot {:.2} MiB heap ({:.0} bytes/route); \
         process RSS +{:.1} MiB over the sync; clone (publish) {:.2} ms; diff {:.2} ms; \
         write -> snapshot at that size {:.1} ms; Redis used_memory {:.1} MiB",
        sync.as_secs_f64() * 1000.0,
        mib(snapshot_bytes as f64),
        snapshot_bytes as f64 / hosts as f64,
        mib(rss_after.saturating_sub(rss_before) as f64),
        clone_time.as_secs_f64() * 1000.0,
        diff_time.as_secs_f64() * 1000.0,
        write_latency.as_secs_f64() * 1000.0,
        mib(redis_used),
    );
    handle.shutdown().await;
}
