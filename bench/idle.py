#!/usr/bin/env python3
"""ringway bench: memory per idle keep-alive connection (connection scaling).

    python3 bench/idle.py                  # N = 1000, 10000, 50000
    python3 bench/idle.py --quick          # N = 1000, 5000
    python3 bench/idle.py --steps 1000,20000 --out /tmp/idle

For each HTTP proxy (ringway mode http, nginx proxy_pass, HAProxy mode http; one shard / worker /
thread under `taskset -c 0`, in front of the backend nginx on CPU 1) and each step N: start the
proxy configured for N connections, warm it up, read its RSS (VmRSS summed over its process tree),
open N client connections that each send ONE `GET /small` (keep-alive), read the whole response
and then stay open and idle, read the RSS again, and report (after - before) / N in bytes per
connection. The client is this process (non-blocking sockets + selectors), pinned to CPU 1; its
sockets are spread over source addresses 127.0.x.y (bind before connect) so no address runs out of
ephemeral ports. The proxy is restarted for every step so freed-but-kept allocator memory of a
previous step does not hide the cost.

Backend side: every proxy returns the backend connection to its keep-alive pool after a response
(ringway idle_conns_max = 128, nginx `keepalive 128`, HAProxy `http-reuse always` idle list), so
N idle clients should hold only about as many backend connections as were in flight at once; the
number of ESTABLISHED backend connections is counted from /proc/net/tcp after each step.

RSS is user-space memory only: kernel socket memory (about the same for every proxy) is not in it.
"""
import argparse
import errno
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The bench runs as root (pinning, limits); ringway refuses root without this opt-in.
os.environ.setdefault('RINGWAY_ALLOW_ROOT', '1')
ROOT = os.path.dirname(HERE)


# bench/run.py, for its PROXIES table and process helpers (its main() runs only under __main__, so importing is inert).
sys.path.insert(0, HERE)
import run as RUN  # noqa: E402

# The proxies this scenario runs, named as in run.py's PROXIES, and their config templates.
IDLE_PROXIES = {
    'ringway-http': 'idle-ringway.toml',
    'nginx-http': 'idle-nginx.conf',
    'haproxy-http': 'idle-haproxy.cfg',
}
BASELINE = 'nginx-http'                 # the "ratio" column divides by this proxy at the same N
DEFAULT_STEPS = [1000, 10000, 50000]
QUICK_STEPS = [1000, 5000]
WINDOW = 256            # connections connecting / waiting for their response at once
PER_ADDR = 10000        # client connections per source address
WARMUP_CONNS = 32       # opened and closed before "RSS before", so lazy one-time setup is excluded
HEADROOM = 1024         # proxy connection limit = N + HEADROOM (backend pool, admin, slack)
FD_MARGIN = 512         # fds kept free under the fd ceiling: backend pool (128), listeners, epoll...
STALL_S = 15.0          # a step fails when no connection made progress for this long
SETTLE_S = 2.0          # wait after the last response before reading "RSS after" (every proxy has
                        # finished its per-request work and freed what it frees)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, 'IP_BIND_ADDRESS_NO_PORT', 24)


def log(msg):
    sys.stderr.write(msg + '\n')
    sys.stderr.flush()


def nr_open():
    try:
        with open('/proc/sys/fs/nr_open') as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def can_raise_hard_limit():
    """CAP_SYS_RESOURCE (bit 24 of CapEff) lets a process raise its hard RLIMIT_NOFILE."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('CapEff:'):
                    return bool(int(line.split()[1], 16) & (1 << 24))
    except (OSError, ValueError):
        pass
    return False


def fd_ceiling():
    """The most fds a process we start can have: nr_open with CAP_SYS_RESOURCE, else our hard limit."""
    return nr_open() if can_raise_hard_limit() else resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_nofile(want):
    """Raise this process's RLIMIT_NOFILE to `want`, as far as fd_ceiling() allows (both soft and
    hard when above the current hard limit). Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(want, fd_ceiling())
    try:
        if want > hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        elif want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Addrs:
    """Source addresses 127.0.0.2, 127.0.0.3, ... 127.0.1.1, ...; never reused within a run, so a
    step never meets the TIME_WAIT sockets of an earlier one."""

    def __init__(self):
        self.next = 0

    def take(self, count):
        out = []
        for _ in range(count):
            j = self.next + 2                      # skip 127.0.0.0 and 127.0.0.1 (the servers)
            out.append(f'127.0.{j // 256}.{j % 256}')
            self.next += 2 if j % 256 == 255 else 1  # skip .0 of the next /24
        return out


def response_complete(buf):
    """(done, status) for one HTTP/1.1 response in buf: Content-Length or chunked body."""
    end = buf.find(b'\r\n\r\n')
    if end < 0:
        return False, None
    head = buf[:end].decode('latin-1').lower().split('\r\n')
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return True, None
    body = len(buf) - end - 4
    for line in head[1:]:
        name, _, value = line.partition(':')
        if name.strip() == 'content-length':
            return body >= int(value.strip()), status
        if name.strip() == 'transfer-encoding' and 'chunked' in value:
            return buf.endswith(b'0\r\n\r\n'), status
    return True, status                                # no body (e.g. 204/304)


class Conn:
    __slots__ = ('sock', 'state', 'buf')

    def __init__(self, sock):
        self.sock, self.state, self.buf = sock, 'connect', b''


def close_all(conns):
    """Close with SO_LINGER 0 (RST): no TIME_WAIT left behind, the proxy frees the slot at once."""
    for c in conns:
        try:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
            c.sock.close()
        except OSError:
            pass


def open_idle(port, n, addrs):
    """Open n connections to 127.0.0.1:port, one request each, leave them open and idle.
    Returns (conns that completed, selector, error or None). Stops at the first failure."""
    req = f'GET /small HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n'.encode()
    srcs = addrs.take(max(1, -(-n // PER_ADDR)))
    sel = selectors.DefaultSelector()
    done, started, inflight = [], 0, 0
    error = None
    last_progress = time.time()
    while len(done) < n and error is None:
        # Keep WINDOW connections in the handshake/request phase; more would overflow the listen
        # backlog and cost 1 s SYN retries.
        while inflight < WINDOW and started < n:
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as e:
                error = f'client socket(): {e}'
                break
            try:
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((srcs[started % len(srcs)], 0))
                s.setblocking(False)
                rc = s.connect_ex(('127.0.0.1', port))
                if rc not in (0, errno.EINPROGRESS):
                    raise OSError(rc, os.strerror(rc))
            except OSError as e:
                s.close()
                error = f'client connect: {e}'
                break
            sel.register(s, selectors.EVENT_WRITE, Conn(s))
            started += 1
            inflight += 1
        if error:
            break
        for key, _ in sel.select(timeout=1.0):
            c = key.data
            try:
                if c.state == 'connect':
                    rc = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if rc:
                        raise OSError(rc, os.strerror(rc))
                    c.sock.send(req)                      # tiny: fits the empty send buffer
                    c.state = 'read'
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                elif c.state == 'read':
                    data = c.sock.recv(65536)
                    if not data:
                        raise OSError('proxy closed before a full response')
                    c.buf += data
                    complete, status = response_complete(c.buf)
                    if complete:
                        if status != 200:
                            raise OSError(f'status {status}')
                        # Idle from here on; stays registered so a close by the proxy shows up.
                        c.state, c.buf = 'idle', b''
                        done.append(c)
                        inflight -= 1
                        last_progress = time.time()
                else:                                     # an idle connection became readable
                    raise OSError('proxy closed an idle connection')
            except OSError as e:
                error = f'{e} (with {len(done)} idle open)'
                break
        if time.time() - last_progress > STALL_S:
            error = f'no progress for {STALL_S:.0f} s ({len(done)} done, {inflight} in flight)'
    if error:
        # Leave only the completed idle connections open; drop the half-open ones.
        busy = [k.data for k in list(sel.get_map().values()) if k.data.state != 'idle']
        for c in busy:
            sel.unregister(c.sock)
        close_all(busy)
    return done, sel, error


def still_open(sel, conns):
    """How many of the idle connections the proxy has not closed (an idle socket never reads)."""
    closed = 0
    for _ in sel.select(timeout=0):
        closed += 1
    return len(conns) - closed


def established(port):
    """ESTABLISHED TCP sockets whose local port is `port` (the backend's side of its connections)."""
    want = f':{port:04X}'
    count = 0
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            parts = line.split(None, 4)
            if parts[1].endswith(want) and parts[3] == '01':
                count += 1
    return count


class Idle:
    def __init__(self, out_dir, steps, ringway_bin):
        self.out_dir, self.steps, self.ringway_bin = out_dir, steps, ringway_bin
        self.work = tempfile.mkdtemp(prefix='ringway-idle-')
        os.makedirs(os.path.join(self.work, 'www'), exist_ok=True)
        os.chmod(self.work, 0o755)          # the backend nginx worker runs unprivileged under root
        self.backend_port = RUN.free_port()
        self.backend = None
        self.addrs = Addrs()

    def start_backend(self):
        # run.py's backend.conf: one nginx worker on CPU 1; /small is a `return 200 "hello"`.
        ports = [self.backend_port] + [RUN.free_port() for _ in range(3)]
        cfg = RUN.render('backend.conf', os.path.join(self.work, 'backend.conf'), work=self.work,
                         backend_port=ports[0], backend_port2=ports[1], backend_port3=ports[2],
                         backend_port4=ports[3])
        self.backend = subprocess.Popen(['taskset', '-c', '1', 'nginx', '-c', cfg, '-g', 'daemon off;'],
                                        start_new_session=True, stderr=subprocess.DEVNULL)
        if not RUN.wait_port(self.backend_port):
            raise SystemExit('backend nginx did not start')

    def start_proxy(self, name, n):
        """Start `name` configured for n client connections; returns (proc, port)."""
        port = RUN.free_port()
        maxconn = n + HEADROOM
        # Each proxied connection needs a client fd, plus backend fds and pipes for ringway splice;
        # without CAP_SYS_RESOURCE nothing we start can go above our own hard limit.
        nofile = min(2 * maxconn + 4096, fd_ceiling())
        cfg = RUN.render(IDLE_PROXIES[name], os.path.join(self.work, IDLE_PROXIES[name]), port=port,
                         backend_port=self.backend_port, work=self.work, maxconn=maxconn, nofile=nofile,
                         worker_connections=maxconn * 16 // 15 + 16)   # nginx: see idle-nginx.conf
        t0 = ['taskset', '-c', '0']
        kind = RUN.PROXIES[name]['kind']
        if kind == 'ringway':
            cmd = t0 + [self.ringway_bin, 'run', '-c', cfg]      # raises its soft limit to hard
        elif kind == 'nginx-http':
            cmd = t0 + ['nginx', '-c', cfg, '-g', 'daemon off;']  # worker_rlimit_nofile
        else:
            cmd = t0 + ['haproxy', '-db', '-f', cfg]              # sizes its fd limit from maxconn

        def limits():
            # The child's soft and hard limit (the hard one can only go up with CAP_SYS_RESOURCE).
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            except (ValueError, OSError):
                pass

        errlog = open(os.path.join(self.work, f'{name}.log'), 'w')
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=errlog, stderr=subprocess.STDOUT,
                                preexec_fn=limits)
        if not RUN.wait_port(port):
            RUN.stop(proc)
            with open(errlog.name) as f:
                tail = f.read()[-300:]
            raise RuntimeError(f'{name} did not start: {tail}')
        return proc, port

    def rss(self, proc):
        return RUN.rss_kib(RUN.proc_tree(proc.pid))

    def step(self, name, n):
        proc, port = self.start_proxy(name, n)
        conns, sel = [], None
        try:
            warm, wsel, err = open_idle(port, WARMUP_CONNS, self.addrs)
            close_all(warm)
            wsel.close()
            if err:
                raise RuntimeError(f'warm-up failed: {err}')
            time.sleep(0.5)
            before = self.rss(proc)
            t0 = time.time()
            conns, sel, err = open_idle(port, n, self.addrs)
            secs = time.time() - t0
            time.sleep(SETTLE_S)
            after = self.rss(proc)
            live = still_open(sel, conns)
            backend = established(self.backend_port)
            reached = len(conns)
            row = dict(proxy=name, n=n, reached=reached, still_open=live, rss_before_kib=before,
                       rss_after_kib=after, open_s=round(secs, 2), backend_conns=backend,
                       bytes_per_conn=(after - before) * 1024 / reached if reached else None)
            if err or proc.poll() is not None:
                row['error'] = err or f'{name} exited (rc={proc.returncode})'
            elif live < n:
                row['error'] = f'{n - live} of {n} idle connections were closed by the proxy'
            return row
        finally:
            close_all(conns)
            if sel is not None:
                sel.close()
            RUN.stop(proc)

    def run(self):
        results = []
        # "RSS before" of each proxy's smallest step: the base for bytes/conn incl. the memory a
        # proxy preallocates for its connection limit (which "before" of a larger step contains).
        first_before = {}
        self.start_backend()
        try:
            for name in IDLE_PROXIES:
                for n in self.steps:
                    log(f'idle: {name} N={n}...')
                    try:
                        row = self.step(name, n)
                    except RuntimeError as e:
                        row = dict(proxy=name, n=n, reached=0, error=str(e))
                    if row.get('reached'):
                        base = first_before.setdefault(name, row['rss_before_kib'])
                        row['bytes_per_conn_incl_prealloc'] = (row['rss_after_kib'] - base) * 1024 / row['reached']
                    results.append(row)
                    if row.get('bytes_per_conn') is not None:
                        log(f'  {row["reached"]} open in {row["open_s"]} s, RSS {row["rss_before_kib"]} -> '
                            f'{row["rss_after_kib"]} KiB, {row["bytes_per_conn"]:.0f} B/conn, '
                            f'{row["backend_conns"]} backend conns')
                    if 'error' in row:
                        # The machine or the proxy ran out at this N: larger steps would fail too.
                        log(f'  {name} N={n}: {row["error"]} (reached {row["reached"]}); skipping larger N')
                        break
                    time.sleep(0.5)
        finally:
            RUN.stop(self.backend)
        return results


def table(results, meta, heading='#'):
    ok = [r for r in results if 'error' not in r and r.get('bytes_per_conn')]
    base = {r['n']: r for r in ok if r['proxy'] == BASELINE}
    capped = meta.get('requested_steps', meta['steps']) != meta['steps']
    lines = [f'{heading} ringway bench — idle keep-alive connections — {meta["date"]}', '',
             f'Machine: {meta["cpus"]} CPUs, kernel {meta["kernel"]}, RLIMIT_NOFILE ceiling {meta.get("fd_ceiling")}'
             + (f' (steps {meta["requested_steps"]} capped to {meta["steps"]})' if capped else '') + '. '
             'Proxy on CPU 0 (one shard/worker/thread), configured per step for N + '
             f'{HEADROOM} connections; client (Python, selectors) and backend nginx on CPU 1. Each client '
             'connection sent one `GET /small` (keep-alive), read the response and stayed open. '
             'RSS = VmRSS summed over the proxy\'s processes: user-space memory only, kernel socket '
             'buffers are not in it.', '',
             f'- **bytes/conn** = (RSS after − RSS before) / N; RSS before is read after a {WARMUP_CONNS}-connection '
             'warm-up, so it holds what a proxy preallocates for its connection limit (nginx touches its whole '
             'worker_connections array at start).',
             '- **incl. prealloc** = (RSS after − RSS before of the same proxy\'s smallest step) / N: counts that '
             'preallocation too.',
             f'- **ratio** = to {RUN.PROXIES[BASELINE]["label"]} at the same N (bytes/conn; incl. prealloc in '
             'parentheses).',
             '- **backend conns** = ESTABLISHED connections at the backend after the step (what the proxy keeps '
             'in its pool; not one per idle client).', '',
             '| proxy | N | RSS before MiB | RSS after MiB | bytes/conn | incl. prealloc | ratio to nginx | '
             'backend conns | open s | note |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in results:
        label = RUN.PROXIES[r['proxy']]['label']
        if r.get('bytes_per_conn') is None:
            lines.append(f'| {label} | {r["n"]} | | | | | | | | failed: {r.get("error", "")} |')
            continue
        b, bi = r['bytes_per_conn'], r.get('bytes_per_conn_incl_prealloc')
        peer = base.get(r['n'])
        ratio = '–'
        if peer and 'error' not in r:
            ratio = f'{b / peer["bytes_per_conn"]:.2f}×'
            if bi and peer.get('bytes_per_conn_incl_prealloc'):
                ratio += f' ({bi / peer["bytes_per_conn_incl_prealloc"]:.2f}×)'
        note = f'reached {r["reached"]}: {r["error"]}' if 'error' in r else ''
        lines.append(f'| {label} | {r["n"]} | {r["rss_before_kib"] / 1024:.1f} | {r["rss_after_kib"] / 1024:.1f} | '
                     f'{b:.0f} | {"" if bi is None else f"{bi:.0f}"} | {ratio} | {r["backend_conns"]} | '
                     f'{r["open_s"]} | {note} |')
    return '\n'.join(lines) + '\n'


def plot(results, path):
    """idle.png; returns False (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        log('idle: no idle.png: python3 -m pip install matplotlib')
        return False
    colours = {'ringway-http': '#1f77b4', 'nginx-http': '#2ca02c', 'haproxy-http': '#d62728'}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in IDLE_PROXIES:
        rows = [r for r in results if r['proxy'] == name and r.get('bytes_per_conn') is not None]
        ok = [r for r in rows if 'error' not in r]
        if ok:
            ax.plot([r['n'] for r in ok], [r['bytes_per_conn'] for r in ok], marker='o',
                    color=colours.get(name), label=RUN.PROXIES[name]['label'])
            for r in ok:
                ax.annotate(f'{r["bytes_per_conn"]:.0f}', (r['n'], r['bytes_per_conn']), fontsize=7,
                            textcoords='offset points', xytext=(4, 4))
            # Dashed: the same including what the proxy preallocated for its connection limit.
            incl = [r for r in ok if r.get('bytes_per_conn_incl_prealloc') is not None]
            if any(abs(r['bytes_per_conn_incl_prealloc'] - r['bytes_per_conn']) > 0.05 * r['bytes_per_conn']
                   for r in incl):
                ax.plot([r['n'] for r in incl], [r['bytes_per_conn_incl_prealloc'] for r in incl], marker='.',
                        linestyle='--', color=colours.get(name), alpha=0.6,
                        label=RUN.PROXIES[name]['label'] + ', incl. prealloc')
        # A failed step: plotted at the N it reached, as a cross.
        for r in rows:
            if 'error' in r and r['reached']:
                ax.plot([r['reached']], [r['bytes_per_conn']], marker='x', markersize=9, color=colours.get(name))
    ax.set_xscale('log')
    ns = sorted({r['n'] for r in results} | {r['reached'] for r in results if r.get('reached')})
    ax.set_xticks(ns, [f'{n:,}' for n in ns], fontsize=8)   # the step values, not 10^k
    ax.minorticks_off()
    ax.set_xlabel('idle keep-alive client connections N (log scale)')
    ax.set_ylabel('proxy RSS growth per connection (bytes)')
    ax.set_title('Memory per idle connection (lower is better; x = step failed)', fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def section(doc):
    """The idle results as a `##` section for run.py's report.md (idle.png next to it)."""
    return table(doc['results'], doc['meta'], heading='##') + '\n![idle](idle.png)\n'


def run(out_dir, steps, ringway_bin):
    """Run the idle-connection scenario; write idle.json, idle.md, idle.png into out_dir.
    Returns {'meta':..., 'results': [{proxy, n, reached, rss_before_kib, rss_after_kib,
    bytes_per_conn, backend_conns, still_open, open_s[, error]}]}."""
    for tool in ('nginx', 'haproxy', 'taskset'):
        if shutil.which(tool) is None:
            raise SystemExit(f'{tool} not found: apt-get install nginx haproxy util-linux')
    if not os.path.exists(ringway_bin):
        log(f'{ringway_bin} not found: cargo build --release')
        subprocess.run(['cargo', 'build', '--release'], cwd=ROOT, check=True)
    os.makedirs(out_dir, exist_ok=True)
    requested = sorted(steps)
    client_nofile = raise_nofile(max(requested) + 4096)
    # Client and proxy each need one fd per connection: a step above what the fd ceiling allows
    # (RLIMIT_NOFILE hard limit without CAP_SYS_RESOURCE) runs at the ceiling instead.
    cap = min(client_nofile, fd_ceiling()) - FD_MARGIN
    steps = sorted({min(n, cap) for n in requested})
    if steps != requested:
        log(f'idle: steps {requested} capped to {steps}: RLIMIT_NOFILE ceiling {fd_ceiling()}')
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1} if os.cpu_count() > 1 else affinity)  # the client shares CPU 1
    idle = Idle(out_dir, steps, ringway_bin)
    try:
        results = idle.run()
    finally:
        os.sched_setaffinity(0, affinity)
        shutil.rmtree(idle.work, ignore_errors=True)
    now = time.gmtime()
    meta = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', now), kernel=os.uname().release, cpus=os.cpu_count(),
                steps=steps, requested_steps=requested, fd_ceiling=fd_ceiling(), client_nofile=client_nofile,
                window=WINDOW)
    doc = dict(meta=meta, results=results)
    with open(os.path.join(out_dir, 'idle.json'), 'w') as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(out_dir, 'idle.md'), 'w') as f:
        f.write(table(results, meta))
    plot(results, os.path.join(out_dir, 'idle.png'))
    return doc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='N = ' + ','.join(map(str, QUICK_STEPS)))
    ap.add_argument('--steps', default=None, help='comma list of N (default ' + ','.join(map(str, DEFAULT_STEPS)) + ')')
    ap.add_argument('--out', default=None, help='output directory (default bench/results/<UTC date-time>-idle)')
    ap.add_argument('--ringway-bin', default=os.path.join(ROOT, 'target', 'release', 'ringway'))
    args = ap.parse_args()
    if args.steps:
        steps = [int(s) for s in args.steps.split(',') if s]
    else:
        steps = QUICK_STEPS if args.quick else DEFAULT_STEPS
    out = args.out or os.path.join(HERE, 'results', time.strftime('%Y-%m-%dT%H%M%SZ', time.gmtime()) + '-idle')
    run(out, steps, args.ringway_bin)
    with open(os.path.join(out, 'idle.md')) as f:
        print(f.read())
    print(f'saved: {out}/idle.md, idle.json, idle.png')


if __name__ == '__main__':
    main()
