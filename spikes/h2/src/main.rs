//! h2-spike: CPU time, allocations and memory per HTTP/2 request for each way docs/design/h2.md
//! weighs. Every case runs the same h2 client (100 concurrent GETs per round) against a
//! different server on one thread; the harness times the server's and the client's polls
//! separately, so "server ns/request" is the codec cost the shard would pay.
//!
//! Usage: h2-spike CASE [--conns N] [--rounds N] [--reps N]
//!   CASE: h2-manual | h2-tokio | own-loona | own-shiguredo | own-httlib | shiguredo-conn | mem

mod count;
mod h2case;
mod hpacks;
mod huffman_table;
mod own;
mod ownhpack;
mod pipe;
mod shig;
mod work;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Wake, Waker};

use count::{CLIENT, OTHER, SERVER};
use pipe::{End, TO_CLIENT, TO_SERVER};

#[global_allocator]
static ALLOC: count::Counting = count::Counting;

static NS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static CALLS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// What one `thread_cpu_ns` pair costs (calibrated at start), taken off each timed call.
static CLOCK_NS: AtomicU64 = AtomicU64::new(0);

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `f` charged to `side`: its thread CPU time (not wall time: the machine is shared, and a
/// preempted poll must not count) and its allocations.
fn timed<R>(side: usize, f: impl FnOnce() -> R) -> R {
    let prev = count::enter(side);
    let t = thread_cpu_ns();
    let r = f();
    NS[side].fetch_add(thread_cpu_ns() - t, Relaxed);
    CALLS[side].fetch_add(1, Relaxed);
    count::enter(prev);
    r
}

fn calibrate_clock() {
    let n = 20_000;
    let t = thread_cpu_ns();
    for _ in 0..n {
        std::hint::black_box(thread_cpu_ns());
    }
    let per = (thread_cpu_ns() - t) / n;
    CLOCK_NS.store(per, Relaxed);
    eprintln!("clock_gettime(CLOCK_THREAD_CPUTIME_ID): {per} ns per call");
}

/// Time charged to `side` since `ns0`/`calls0`, less the clock's own cost.
fn side_ns(side: usize, ns0: u64, calls0: u64) -> f64 {
    let calls = CALLS[side].load(Relaxed) - calls0;
    (NS[side].load(Relaxed) - ns0) as f64 - (calls * CLOCK_NS.load(Relaxed)) as f64
}

/// The waker a shard would give: it only marks the connection for the next drive.
struct Flag(AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Relaxed);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Relaxed);
    }
}
fn flag() -> (Arc<Flag>, Waker) {
    let f = Arc::new(Flag(AtomicBool::new(true)));
    (f.clone(), Waker::from(f))
}

trait SansIo {
    fn step(&mut self, rx: &[u8], tx: &mut Vec<u8>) -> Result<usize, String>;
    fn requests(&self) -> u64;
    fn held_live_bytes(&self) -> Option<i64>;
    fn set_hold(&mut self, n: usize);
}
impl<H: hpacks::Hpack> SansIo for own::Own<H> {
    fn step(&mut self, rx: &[u8], tx: &mut Vec<u8>) -> Result<usize, String> {
        own::Own::step(self, rx, tx).map_err(|e| format!("{e:?}"))
    }
    fn requests(&self) -> u64 {
        self.requests
    }
    fn held_live_bytes(&self) -> Option<i64> {
        self.held_live_bytes
    }
    fn set_hold(&mut self, n: usize) {
        self.hold = Some(n);
    }
}
impl SansIo for shig::Shig {
    fn step(&mut self, rx: &[u8], tx: &mut Vec<u8>) -> Result<usize, String> {
        shig::Shig::step(self, rx, tx)
    }
    fn requests(&self) -> u64 {
        self.requests
    }
    fn held_live_bytes(&self) -> Option<i64> {
        self.held_live_bytes
    }
    fn set_hold(&mut self, n: usize) {
        self.hold = Some(n);
    }
}

enum Server {
    /// h2's server future, polled when its waker fired (as the shard would).
    H2(Pin<Box<dyn Future<Output = ()>>>),
    /// A sans-IO server stepped when bytes arrived.
    Sans(Box<dyn SansIo>),
}

fn new_server(case: &str, p: &pipe::Pipe, hold: Option<usize>) -> Server {
    let end = End {
        pipe: p.clone(),
        rd: TO_SERVER,
    };
    let mut s: Box<dyn SansIo> = match case {
        "h2-manual" => return Server::H2(Box::pin(h2case::server(end, hold))),
        "own-loona" => Box::new(own::Own::<hpacks::Loona>::new()),
        "own-shiguredo" => Box::new(own::Own::<hpacks::Shiguredo>::new()),
        "own-httlib" => Box::new(own::Own::<hpacks::Httlib>::new()),
        "own-ownhpack" => Box::new(own::Own::<hpacks::Own>::new()),
        "own-null" => Box::new(own::Own::<hpacks::Null>::new()),
        "shiguredo-conn" => Box::new(shig::Shig::new()),
        _ => panic!("unknown case {case}"),
    };
    if let Some(n) = hold {
        s.set_hold(n);
    }
    Server::Sans(s)
}

/// One connection: the h2 client against `case`'s server, both polled by a hand loop (no
/// runtime) over the in-memory pipe. Returns (requests served, held-probe bytes).
fn run_manual(
    case: &str,
    rounds: &[usize],
    hold: Option<usize>,
    between: h2case::Between<'_>,
) -> (u64, Option<i64>) {
    let p = pipe::pipe();
    let mut server = timed(SERVER, || new_server(case, &p, hold));
    let (sflag, swaker) = flag();
    let (cflag, cwaker) = flag();
    let mut client: Pin<Box<dyn Future<Output = ()> + '_>> = Box::pin(h2case::client(
        End {
            pipe: p.clone(),
            rd: TO_CLIENT,
        },
        rounds,
        between,
    ));
    let mut done = false;
    let mut idle_turns = 0;
    while !done {
        let mut polled = false;
        if cflag.0.swap(false, Relaxed) {
            polled = true;
            let mut cx = Context::from_waker(&cwaker);
            done = timed(CLIENT, || client.as_mut().poll(&mut cx).is_ready());
        }
        if sflag.0.swap(false, Relaxed) {
            polled = true;
            match &mut server {
                Server::H2(f) => {
                    let mut cx = Context::from_waker(&swaker);
                    let _ = timed(SERVER, || f.as_mut().poll(&mut cx));
                }
                Server::Sans(s) => timed(SERVER, || {
                    let mut q = p.borrow_mut();
                    let (to_server, to_client) = q.split_at_mut(1);
                    let (rx, tx) = (&mut to_server[0], &mut to_client[0]);
                    let n = s.step(rx.pending(), &mut tx.buf).expect("server step");
                    rx.consume(n);
                    rx.reader = Some(swaker.clone());
                    tx.wake_reader();
                }),
            }
        }
        if !polled {
            idle_turns += 1;
            assert!(
                idle_turns < 3,
                "{case}: nothing to poll and the client is not done"
            );
        } else {
            idle_turns = 0;
        }
    }
    let (requests, held) = match &server {
        Server::H2(_) => (
            h2case::SERVER_REQUESTS.with(|c| c.replace(0)),
            h2case::HELD_LIVE_BYTES.with(|c| c.take()),
        ),
        Server::Sans(s) => (s.requests(), s.held_live_bytes()),
    };
    timed(SERVER, || drop(server));
    (requests, held)
}

/// tokio's current-thread runtime over `tokio::io::duplex`, as hyper/pingora run h2: the server
/// and the client connection as tasks, each poll timed to its side.
fn run_tokio(conns: usize, rounds: &[usize]) -> u64 {
    struct Timed<F> {
        side: usize,
        f: Pin<Box<F>>,
    }
    impl<F: Future> Future for Timed<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            let side = self.side;
            timed(side, || self.f.as_mut().poll(cx))
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        for _ in 0..conns {
            let (a, b) = tokio::io::duplex(pipe::QUEUE_BYTES_MAX);
            let server = tokio::task::spawn_local(Timed {
                side: SERVER,
                f: Box::pin(h2case::server(b, None)),
            });
            Timed {
                side: CLIENT,
                f: Box::pin(h2case::client(a, rounds, &|_| {})),
            }
            .await;
            server.abort();
        }
    });
    h2case::SERVER_REQUESTS.with(|c| c.replace(0))
}

struct Sample {
    total_ns: f64,
    server_ns: f64,
    client_ns: f64,
    server_allocs: f64,
    client_allocs: f64,
    server_polls: f64,
}

fn measure(case: &str, conns: usize, rounds_per_conn: usize) -> Sample {
    let rounds = h2case::rounds(rounds_per_conn);
    let ns0 = [0, 1, 2].map(|i| NS[i].load(Relaxed));
    let calls0 = [0, 1, 2].map(|i| CALLS[i].load(Relaxed));
    let a0 = [count::allocs(CLIENT), count::allocs(SERVER)];
    let cpu0 = thread_cpu_ns();
    let requests = if case == "h2-tokio" {
        run_tokio(conns, &rounds)
    } else {
        (0..conns)
            .map(|_| run_manual(case, &rounds, None, &|_| {}).0)
            .sum()
    };
    let cpu = thread_cpu_ns() - cpu0;
    let expect = (conns * rounds_per_conn * work::STREAMS) as u64;
    assert_eq!(
        requests, expect,
        "{case}: server saw {requests} of {expect} requests"
    );
    let r = requests as f64;
    Sample {
        total_ns: cpu as f64 / r,
        server_ns: side_ns(SERVER, ns0[SERVER], calls0[SERVER]) / r,
        client_ns: side_ns(CLIENT, ns0[CLIENT], calls0[CLIENT]) / r,
        server_polls: (CALLS[SERVER].load(Relaxed) - calls0[SERVER]) as f64 / r,
        server_allocs: (count::allocs(SERVER) - a0[1]) as f64 / r,
        client_allocs: (count::allocs(CLIENT) - a0[0]) as f64 / r,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Server-side live heap of one connection: after a single request (idle, buffers warm), with
/// 100 requests held open (streams accepted, responses not sent yet), and idle again after.
fn mem(case: &str) {
    // A throwaway connection first, so process-wide tables built once (the Huffman DFA) and
    // thread-locals are not charged to the measured connection.
    run_manual(case, &[1], None, &|_| {});
    let base = count::live(SERVER);
    let idle = std::cell::Cell::new(0i64);
    let after = std::cell::Cell::new(0i64);
    let between = |round: usize| match round {
        0 => idle.set(count::live(SERVER) - base),
        _ => after.set(count::live(SERVER) - base),
    };
    // Round 0: one request (answered); round 1: 100 requests the server holds open until it
    // has all of them, then answers.
    let (_, held) = run_manual(case, &[1, work::STREAMS], Some(work::STREAMS), &between);
    let held = held.map(|h| h - base);
    println!(
        "{case:16} server live bytes: idle conn {:>7}  with 100 open streams {:>8}  per open stream {:>6}  idle after burst {:>7}",
        idle.get(),
        held.unwrap_or(-1),
        held.map_or(-1, |h| (h - idle.get()) / work::STREAMS as i64),
        after.get()
    );
}

/// HPACK alone, per crate: decode the header blocks h2's client sent on one connection (1000
/// requests, so the dynamic table is in use as with a browser) with a fresh decoder per pass,
/// and encode 1000 responses with a fresh encoder per pass.
fn hpack_only(reps: usize) {
    own::CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    run_manual("own-httlib", &h2case::rounds(10), None, &|_| {});
    let blocks = own::CAPTURE
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default();
    let bytes: usize = blocks.iter().map(Vec::len).sum();
    println!(
        "captured {} request header blocks from h2's client: first {} bytes, mean {:.1} bytes (decoded: {} bytes of fields)",
        blocks.len(),
        blocks[0].len(),
        bytes as f64 / blocks.len() as f64,
        work::REQUEST_FIELDS
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()
            + 60
    );
    fn one<H: hpacks::Hpack>(name: &str, blocks: &[Vec<u8>], reps: usize) {
        let mut resp: Vec<(&[u8], &[u8])> = vec![(b":status", b"200")];
        resp.extend(
            work::RESPONSE_FIELDS
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        let (mut dec, mut enc, mut da, mut ea) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut out = Vec::with_capacity(4096);
        let mut first_len = 0;
        let mut steady_len = 0;
        for _ in 0..reps + 1 {
            let mut h = H::new(4096);
            let mut sum = 0usize;
            let a = count::allocs(OTHER);
            let t = thread_cpu_ns();
            for b in blocks {
                h.decode(b, &mut |n, v| sum += n.len() + v.len())
                    .expect("decode");
            }
            dec.push((thread_cpu_ns() - t) as f64 / blocks.len() as f64);
            da.push((count::allocs(OTHER) - a) as f64 / blocks.len() as f64);
            std::hint::black_box(sum);
            let mut h = H::new(4096);
            let a = count::allocs(OTHER);
            let t = thread_cpu_ns();
            for i in 0..1000 {
                out.clear();
                h.encode(&resp, &mut out);
                if i == 0 {
                    first_len = out.len();
                }
                steady_len = out.len();
            }
            enc.push((thread_cpu_ns() - t) as f64 / 1000.0);
            ea.push((count::allocs(OTHER) - a) as f64 / 1000.0);
        }
        for v in [&mut dec, &mut enc, &mut da, &mut ea] {
            v.remove(0); // warm-up pass
        }
        println!(
            "{name:16} decode {:>6.0} ns/block {:>5.1} allocs/block   encode {:>5.0} ns/response {:>5.1} allocs/response  response block {first_len} then {steady_len} bytes",
            median(dec),
            median(da),
            median(enc),
            median(ea)
        );
    }
    one::<hpacks::Loona>("loona-hpack", &blocks, reps);
    one::<hpacks::Shiguredo>("shiguredo-hpack", &blocks, reps);
    one::<hpacks::Httlib>("httlib-hpack", &blocks, reps);
    one::<hpacks::Own>("own hpack", &blocks, reps);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).cloned().unwrap_or_else(|| "h2-manual".into());
    let opt = |name: &str, def: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(def)
    };
    let conns = opt("--conns", 20);
    let rounds = opt("--rounds", 10);
    let reps = opt("--reps", 7);
    calibrate_clock();
    if case == "hpack" {
        hpack_only(reps);
        return;
    }
    if case == "mem" {
        for c in [
            "h2-manual",
            "own-ownhpack",
            "own-loona",
            "own-shiguredo",
            "own-httlib",
            "shiguredo-conn",
        ] {
            mem(c);
        }
        return;
    }
    let _ = count::enter(OTHER);
    measure(&case, conns.min(2), rounds); // warm-up
    let mut s = Vec::new();
    for _ in 0..reps {
        let x = measure(&case, conns, rounds);
        eprintln!(
            "  {case}: total {:.0} server {:.0} client {:.0} ns/req; allocs/req server {:.1} client {:.1}; server polls/req {:.3}",
            x.total_ns, x.server_ns, x.client_ns, x.server_allocs, x.client_allocs, x.server_polls
        );
        s.push(x);
    }
    let m = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
    println!(
        "{case:16} requests/rep {:>6}  median of {reps}: total {:>6.0} ns/req  server {:>6.0} ns/req  client {:>6.0} ns/req  other {:>5.0}  server allocs/req {:>5.1}  client allocs/req {:>5.1}",
        conns * rounds * work::STREAMS,
        m(|x| x.total_ns),
        m(|x| x.server_ns),
        m(|x| x.client_ns),
        m(|x| x.total_ns - x.server_ns - x.client_ns),
        m(|x| x.server_allocs),
        m(|x| x.client_allocs),
    );
}
