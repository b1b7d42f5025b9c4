#!/usr/bin/env python3
"""Reload under load: ringway, HAProxy and nginx, each with no reloads and with one reload a second.

    python3 bench/reload.py            # full: every proxy and reload method, 3 rounds x 10 s (~8 min)
    python3 bench/reload.py --quick    # smoke: 1 x 2 s, one method per proxy, bench configs (~20 s)

The H1 load of bench/run.py (wrk, one thread, 64 keep-alive connections, `GET /small`) through
an HTTP proxy to the backend nginx, with run.py's pinning (proxy alone on CPU 0; wrk, the backend
and this harness on CPU 1) and run.py's config templates. Per proxy one run with no reload, then
per reload method one run with a reload every second for the whole run; each reload is a real
change (the one server's weight goes 1 -> 2 -> 1 ...: the file is rewritten before each reload).

Measured per run: req/s, p50/p99/max (wrk --latency), wrk's errors (connect, read, write,
timeout) and non-2xx, the client connections wrk opened and the ones the proxy ended (FIN or RST
seen by the client socket; kernel tracepoints counted by `perf stat`, when tracefs is mounted),
proxy CPU-µs per request over the proxy's whole process tree including the workers that exited
during the run, the processes seen, and RSS when wrk ends. See bench/README.md "Reload under load".
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as RUN  # noqa: E402  (backend, templates, process helpers, RINGWAY_ALLOW_ROOT)
import kops  # noqa: E402  (Perf: perf stat through its --control pipe)

TCK = os.sysconf('SC_CLK_TCK')
CONNS = 64
PATH = '/small'
HARNESS_CPU = 1             # with wrk and the backend: CPU 0 is the proxy's alone
WEIGHTS = (1, 2)            # the change every reload makes
OTHER_CPU_SHARE_MAX = 0.05  # other processes' CPU-s per second of run above which a run is repeated
RETRY_PAUSE_S = 10          # before repeating a disturbed run
WRK_PROBES = 1              # wrk.resolve() test-connects the address once before its 64 connections

# A proxy: which run.py template, how to point its one server's weight, which reload methods.
PROXIES = {
    'ringway-http': dict(kind='ringway', template='ringway-http.toml', methods=('sighup', 'cli'),
                         label='ringway mode http (1 shard)'),
    'haproxy-http': dict(kind='haproxy', template='haproxy-http.cfg', methods=('usr2', 'sf'),
                         label='HAProxy, bench config (nbthread 1)'),
    'haproxy-http-min': dict(kind='haproxy', template='haproxy-http-min.cfg', methods=('usr2', 'sf'),
                             label='HAProxy, minimal config (nbthread 1)'),
    'nginx-http': dict(kind='nginx', template='nginx-http.conf', methods=('reload',),
                       label='nginx, bench config (1 worker)'),
    'nginx-http-min': dict(kind='nginx', template='nginx-http-min.conf', methods=('reload',),
                           label='nginx, minimal config (1 worker)'),
}
METHODS = {
    'none': 'no reload',
    'sighup': '`kill -HUP <ringway>`',
    'cli': '`ringway reload --admin unix:<socket>` (waits until applied)',
    'usr2': 'master-worker `kill -USR2 <master>` (master re-execs with `-sf <old worker> -x sockpair@`)',
    'sf': '`haproxy -W -db -f CFG -sf <old master>`: a new master per reload, the old one soft-stops',
    'reload': '`nginx -c CFG -s reload` (SIGHUP to the master: new worker, old one shuts down gracefully)',
}
QUICK_METHODS = {'ringway-http': 'cli', 'haproxy-http': 'usr2', 'nginx-http': 'reload'}


def progress(msg):
    sys.stderr.write(msg + '\n')
    sys.stderr.flush()


def write_atomic(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def foreign_cpu_s():
    """CPU time of every process that is not this harness or below it (other users of the
    machine): utime+stime+cutime+cstime summed over them, so the short-lived ones a parent reaps
    during a run count too. The difference over a run is what else competed for the 2 CPUs."""
    mine = set(RUN.proc_tree(os.getpid()))
    total = 0
    for d in os.listdir('/proc'):
        if not d.isdigit() or int(d) in mine:
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                st = f.read()
            total += sum(int(x) for x in st[st.rindex(')') + 2:].split()[11:15])
        except (OSError, ValueError):
            pass
    return total / TCK


class Tree:
    """The processes of one proxy: the roots this harness started (one, or one master per `-sf`
    reload) and everything below them. CPU = utime+stime+cutime+cstime summed over the live tree
    (a worker its master has reaped is in the master's cutime/cstime) plus the rusage of the roots
    this harness reaped itself (wait4: the root and all it reaped). So exited workers count."""

    def __init__(self):
        self.roots = []
        self.reaped_s = 0.0

    def add(self, proc):
        self.roots.append(proc)

    def live_roots(self):
        return [p for p in self.roots if p.returncode is None]

    def reap(self):
        for p in self.live_roots():
            try:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if pid:
                # Set returncode so Popen never waits for this pid again (it is gone).
                p.returncode = os.waitstatus_to_exitcode(status)
                self.reaped_s += ru.ru_utime + ru.ru_stime

    def pids(self):
        self.reap()     # an exited root left unreaped would show up as a zombie
        seen = []
        for p in self.live_roots():
            seen += [q for q in RUN.proc_tree(p.pid) if q not in seen]
        return seen

    def cpu_s(self):
        # A worker reaped between reading its master and reading it would be lost (or, read
        # first, counted twice): retry until the set of pids is the same before and after.
        for _ in range(20):
            self.reap()
            before = self.pids()
            total, ok = 0, True
            for pid in before:
                try:
                    with open(f'/proc/{pid}/stat') as f:
                        s = f.read()
                    fields = s[s.rindex(')') + 2:].split()
                    total += sum(int(x) for x in fields[11:15])
                except (OSError, ValueError):
                    ok = False
                    break
            if ok and self.pids() == before:
                return total / TCK + self.reaped_s
        raise RuntimeError('process tree kept changing while reading its CPU time')

    def stop(self):
        for p in self.roots:
            RUN.stop(p)
        self.reap()


class Case:
    """One proxy started for one run: its config file (rewritten with a new weight before each
    reload), its process tree, and how to reload it."""

    def __init__(self, h, name, method, tag):
        self.h, self.name, self.method = h, name, method
        self.spec = PROXIES[name]
        self.kind = self.spec['kind']
        self.port = RUN.free_port()
        w = h.work
        self.cfg = os.path.join(w, f'{tag}.{"toml" if self.kind == "ringway" else "conf"}')
        self.log_path = os.path.join(w, f'{tag}.log')
        self.sock = os.path.join(w, f'{tag}.sock')
        self.weight_i = 0
        self.tree = Tree()
        self.logs = []
        # The template as run.py renders it, to a string; the server line gets `weight` below.
        tmp = os.path.join(w, f'{tag}.template')
        RUN.render(self.spec['template'], tmp, port=self.port, admin_port=RUN.free_port(),
                   backend_port=h.backend_port, ws_port=h.ws_port, splice='auto', extra='', work=w)
        with open(tmp) as f:
            self.base = f.read()
        os.remove(tmp)
        if self.kind == 'ringway':
            # The admin unix socket for `ringway reload` (docs/admin.md); writes need no token.
            self.base += f'\n[admin]\nsocket = "{self.sock}"\n'

    def text(self, weight):
        bp = self.h.backend_port
        old, new = {
            'ringway': (f'{{ address = "127.0.0.1:{bp}" }}', f'{{ address = "127.0.0.1:{bp}", weight = {weight} }}'),
            'haproxy': (f'server s1 127.0.0.1:{bp}\n', f'server s1 127.0.0.1:{bp} weight {weight}\n'),
            'nginx': (f'server 127.0.0.1:{bp};', f'server 127.0.0.1:{bp} weight={weight};'),
        }[self.kind]
        if self.base.count(old) != 1:
            raise RuntimeError(f'{self.spec["template"]}: expected one `{old}` to set the weight on')
        return self.base.replace(old, new)

    def write_config(self):
        write_atomic(self.cfg, self.text(WEIGHTS[self.weight_i % len(WEIGHTS)]))
        self.weight_i += 1

    def cmd(self, sf=None):
        t0 = ['taskset', '-c', '0']
        if self.kind == 'ringway':
            return t0 + [self.h.args.ringway_bin, 'run', '-c', self.cfg]
        if self.kind == 'haproxy':
            # Master-worker (-W), in the foreground (-db) so this harness is the master's parent.
            return t0 + ['haproxy', '-W', '-db', '-f', self.cfg] + (['-sf', str(sf)] if sf else [])
        return t0 + ['nginx', '-c', self.cfg, '-g', 'daemon off;']

    def spawn(self, cmd):
        log = open(self.log_path, 'a')
        try:
            proc = subprocess.Popen(cmd, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.tree.add(proc)
        return proc

    def start(self):
        self.write_config()
        self.spawn(self.cmd())
        if not RUN.wait_port(self.port):
            raise RuntimeError(f'{self.name} did not start; see {self.log_path}')

    def master(self):
        live = self.tree.live_roots()
        return live[-1] if live else None

    def alive(self):
        self.tree.reap()
        return self.master() is not None

    def client(self, cmd):
        """A reload command (on CPU 1, the harness's): its output, exit code, wall and CPU time.
        CPU = the change in this harness's RUSAGE_CHILDREN, which only the command's own reaping
        moves (the harness is single-threaded and reaps nothing else meanwhile)."""
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.time()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
            rc, out = p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            rc, out = None, f'timed out after 30 s: {e.output or ""}'
        wall_ms = (time.time() - t0) * 1e3
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_ms = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) * 1e3
        return dict(rc=rc, out=(out or '').strip()[-300:], wall_ms=wall_ms, cpu_ms=cpu_ms)

    def reload(self):
        self.write_config()
        m = self.master()
        if m is None:
            return dict(rc=None, out='proxy is not running')
        if self.method == 'sighup':
            os.kill(m.pid, signal.SIGHUP)
            return dict(rc=0)
        if self.method == 'usr2':
            os.kill(m.pid, signal.SIGUSR2)
            return dict(rc=0)
        if self.method == 'sf':
            p = self.spawn(self.cmd(sf=m.pid))
            return dict(rc=0, new_master=p.pid)
        if self.method == 'cli':
            return self.client([self.h.args.ringway_bin, 'reload', '--admin', f'unix:{self.sock}'])
        if self.method == 'reload':
            return self.client(['nginx', '-c', self.cfg, '-g', 'daemon off;', '-s', 'reload'])
        raise ValueError(self.method)

    def applied(self, reloads):
        """Reloads the proxy reports as applied with a change: ringway logs `reload done ...
        changes=N` (SIGHUP), its CLI prints `reloaded: version V, N change(s)`. HAProxy and nginx
        log no such line at the bench's log levels: their evidence is the new workers seen."""
        if self.kind != 'ringway':
            return None
        if self.method == 'cli':
            text = '\n'.join(r.get('out', '') for r in reloads if r.get('rc') == 0)
            return len(re.findall(r'^reloaded: version \d+, [1-9]\d* change', text, re.M))
        with open(self.log_path, errors='replace') as f:
            return len(re.findall(r'reload done version=\d+ changes=[1-9]', f.read()))


class Harness:
    def __init__(self, args):
        self.args = args
        self.raw = []
        self.disturbed = []     # runs repeated because other processes competed for the CPUs
        self.perf_ok = (shutil.which('perf') is not None and
                        os.path.isdir(os.path.join(kops.TRACEFS, 'events', 'sock', 'inet_sock_set_state')))
        # run.Bench for the backend only (its nginx on CPU 1, run.py's backend.conf).
        self.bench = RUN.Bench(SimpleNamespace(work=None, scenarios=['H1']))
        self.work = self.bench.work
        self.backend_port = self.bench.backend_port
        self.ws_port = self.bench.ws_port   # nothing listens there: no WebSocket in this scenario

    def conn_perf(self, port, tag):
        """perf stat -a over the client side of wrk's sockets (dport = the proxy's port)."""
        if not self.perf_ok:
            return None
        ev = 'sock:inet_sock_set_state'
        specs = [('connects', ev, f'dport == {port} && oldstate == 2 && newstate == 1'),       # SYN_SENT -> ESTABLISHED
                 ('connect_refused', ev, f'dport == {port} && oldstate == 2 && newstate == 7'),  # SYN_SENT -> CLOSE
                 ('fin_from_proxy', ev, f'dport == {port} && oldstate == 1 && newstate == 8'),   # ESTABLISHED -> CLOSE_WAIT
                 ('rst_from_proxy', 'tcp:tcp_receive_reset', f'dport == {port}')]
        p = kops.Perf(specs, ['-a'], os.path.join(self.work, f'{tag}.perf'))
        p.start()
        return p

    def wrk_run(self, case, duration, reloading, tag):
        """One wrk run; with `reloading`, a reload at 0.5 s and then every second until wrk ends."""
        tree = case.tree
        perf = self.conn_perf(case.port, tag)
        try:
            if perf is not None:
                perf.command('enable')
            c0 = tree.cpu_s()
            f0 = foreign_cpu_s()
            seen = set(tree.pids())
            cmd = ['taskset', '-c', '1', 'wrk', '-t1', f'-c{CONNS}', f'-d{duration}s', '--latency',
                   '-s', os.path.join(RUN.CONF, 'stats.lua'), f'http://127.0.0.1:{case.port}{PATH}']
            t0 = time.time()
            wrk = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            reloads = []
            try:
                k = 0
                while wrk.poll() is None:
                    due = t0 + 0.5 + k
                    time.sleep(max(0.0, min(due - time.time(), 0.1)))
                    if time.time() < due:
                        continue
                    k += 1
                    seen.update(tree.pids())
                    if reloading and time.time() < t0 + duration and wrk.poll() is None:
                        r = case.reload()
                        r['at_s'] = round(time.time() - t0, 3)
                        reloads.append(r)
                out, _ = wrk.communicate(timeout=duration + 30)
            finally:
                if wrk.poll() is None:
                    wrk.kill()
                    wrk.wait()
            wall = time.time() - t0
            pids = tree.pids()
            seen.update(pids)
            c1 = tree.cpu_s()
            f1 = foreign_cpu_s()
            rss = RUN.rss_kib(pids)
            conns = perf.finish() if perf is not None else None
        finally:
            if perf is not None:
                perf.close()
        self.raw.append(f'### {tag}\n{out}')
        m = re.search(r'^JSON (.*)$', out, re.M)
        if m is None:
            return dict(error='wrk printed no result: ' + out[-300:])
        js = json.loads(m.group(1))
        dur = js['duration_us'] / 1e6
        cpu = c1 - c0
        r = dict(requests=js['requests'], rps=js['requests'] / dur, p50_ms=js['p50_us'] / 1e3,
                 p99_ms=js['p99_us'] / 1e3, max_ms=js['max_us'] / 1e3, err_connect=js['err_connect'],
                 err_read=js['err_read'], err_write=js['err_write'], err_timeout=js['err_timeout'],
                 non2xx=js['non2xx'], cpu_s=cpu, util=cpu / wall,
                 other_cpu_s=f1 - f0,
                 us_per_req=cpu * 1e6 / max(js['requests'], 1), rss_kib=rss, procs_end=len(pids),
                 procs_seen=len(seen), reloads=len(reloads), reload_log=reloads)
        r['failed'] = r['err_connect'] + r['err_read'] + r['err_write'] + r['err_timeout'] + r['non2xx']
        if conns is not None:
            r.update(conns)
            if conns.get('connects') is not None:
                r['reconnects'] = conns['connects'] - CONNS - WRK_PROBES
        walls = [x['wall_ms'] for x in reloads if 'wall_ms' in x]
        cpus = [x['cpu_ms'] for x in reloads if x.get('cpu_ms') is not None]
        r['reload_cmd_wall_ms'] = statistics.median(walls) if walls else None
        r['reload_cmd_cpu_ms'] = statistics.median(cpus) if cpus else None
        r['reload_failed'] = sum(1 for x in reloads if x.get('rc') != 0)
        r['applied'] = case.applied(reloads)
        return r

    def run(self, plan):
        a = self.args
        results = []
        self.bench.start_backend()
        try:
            for step, (name, method, rep) in enumerate(plan, 1):
                for attempt in range(a.retries + 1):
                    progress(f'[{step}/{len(plan)}] {name} {METHODS[method] if method == "none" else method} '
                             f'rep {rep + 1}/{a.reps} ({a.duration}s)' + (f', again ({attempt + 1})' if attempt else ''))
                    r = self.one(name, method, f'{name}-{method}-{rep}-{attempt}')
                    r.update(proxy=name, method=method, rep=rep, attempt=attempt)
                    if 'error' in r:
                        progress(f'  error: {r["error"]}')
                        break
                    r['disturbed'] = r['other_cpu_s'] > OTHER_CPU_SHARE_MAX * a.duration
                    busy = (f'; other processes used {r["other_cpu_s"]:.2f} CPU-s: disturbed'
                            if r['disturbed'] else '')
                    progress(f'  {r["rps"]:.0f} req/s, p99 {r["p99_ms"]:.2f} ms, failed {r["failed"]}, '
                             f'{r["us_per_req"]:.1f} CPU-µs/req, {r["reloads"]} reload(s){busy}')
                    if not r['disturbed']:
                        break
                    if attempt < a.retries:
                        self.disturbed.append(r)
                        time.sleep(RETRY_PAUSE_S)
                results.append(r)
        finally:
            RUN.stop(self.bench.backend)
        return results

    def one(self, name, method, tag):
        """A fresh proxy, the warm-up, one measured run; the proxy stopped on every path."""
        case = Case(self, name, method, tag)
        r = {}
        try:
            case.start()
            if self.args.warmup:
                self.warmup(case)
            r = self.wrk_run(case, self.args.duration, method != 'none', tag)
            if not case.alive():
                r['error'] = f'{name} exited during the run; see its log'
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            r['error'] = str(e)
        finally:
            case.tree.stop()
            try:
                with open(case.log_path, errors='replace') as f:
                    r['log_tail'] = f.read()[-2000:]
            except OSError:
                pass
        return r

    def warmup(self, case):
        cmd = ['taskset', '-c', '1', 'wrk', '-t1', f'-c{CONNS}', f'-d{self.args.warmup}s',
               f'http://127.0.0.1:{case.port}{PATH}']
        subprocess.run(cmd, capture_output=True, timeout=self.args.warmup + 30)


# Per-run values the tables show (median over the runs of a row).
KEYS = ('rps', 'p50_ms', 'p99_ms', 'max_ms', 'us_per_req', 'util', 'rss_kib', 'reconnects', 'fin_from_proxy',
        'rst_from_proxy', 'reload_cmd_wall_ms', 'reload_cmd_cpu_ms', 'failed', 'err_connect', 'err_read',
        'err_write', 'err_timeout', 'non2xx', 'reloads', 'applied', 'other_cpu_s')


def num(v, digits=0):
    return '–' if v is None else f'{v:.{digits}f}'


def median_of(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def report(results, args, meta, perf_ok, repeated):
    lines = [f'# Reload under load — {meta["date"]}', '',
             f'Machine: {meta["cpus"]} CPUs, kernel {meta["kernel"]}, HAProxy {meta["haproxy"]}, nginx '
             f'{meta["nginx"]}' + (f', ringway binary sha256 {meta["ringway_binary"]["sha256"][:12]} (built '
                                   f'{meta["ringway_binary"]["mtime"]})' if meta.get('ringway_binary') else '') +
             f'. Proxy alone on CPU 0 (one shard / worker / thread), wrk (1 thread, {CONNS} '
             f'keep-alive connections, `GET {PATH}`), the nginx backend and this harness on CPU 1. '
             f'{args.reps} round(s) of {args.duration} s runs (every proxy and method once per round), '
             f'median [min–max] per row; {args.warmup} s warm-up per run, every run on a freshly started '
             'proxy. A reload at 0.5 s and then every second while wrk runs; each rewrites the file with '
             'the server\'s weight flipped (1 <-> 2) first. Columns without a range are medians.', '',
             '- **failed** = wrk connect + read + write + timeout errors + non-2xx responses. A keep-alive '
             'connection the proxy closes after a response without saying `Connection: close` reaches wrk '
             'with its next request already sent: a read error (and wrk reconnects). One closed with '
             '`Connection: close` is a silent reconnect, not an error: the **reconnects** column counts those '
             f'too (client connects seen by the kernel minus wrk\'s first {CONNS} and its one address probe; '
             + ('`perf stat -a` on `sock:inet_sock_set_state`, `dport` = the proxy\'s port' if perf_ok
                else 'not measured: needs perf and tracefs mounted at /sys/kernel/tracing') + '). '
             '**FIN/RST** = client sockets the proxy ended with a FIN (ESTABLISHED -> CLOSE_WAIT) / a RST '
             '(`tcp:tcp_receive_reset`).',
             '- **CPU-µs/req** = proxy CPU over its whole process tree / requests: utime+stime+cutime+cstime '
             'of every live process in the tree (an exited worker is in its master\'s cutime once reaped) '
             'plus the wait4 rusage of the masters the harness reaped (the old masters of `-sf`). So the '
             'workers that exited during the run count; CPU an old worker spends after wrk ends does not. '
             'Not counted: the reload command itself (`nginx -s reload`, `ringway reload`), run on CPU 1 '
             'and shown as "reload cmd".',
             '- **util** = proxy CPU-s / wall-s (below ~0.9: CPU 1, wrk + backend, was the bottleneck). '
             '**other CPU-s** = CPU time of every process outside this bench during the run (the machine '
             'is shared): a run with more than ' f'{OTHER_CPU_SHARE_MAX * args.duration:.1f}' ' CPU-s is repeated up to '
             f'{args.retries} time(s) after a {RETRY_PAUSE_S} s pause; † marks a row that kept a disturbed run.',
             '- **RSS** = VmRSS summed over the tree when wrk ends (old workers still draining included); '
             '**procs** = processes in the tree seen during the run (sampled every second) / at the end.',
             '']
    names = list(dict.fromkeys(r['proxy'] for r in results))
    summary = []
    for name in names:
        methods = list(dict.fromkeys(r['method'] for r in results if r['proxy'] == name))
        lines += [f'## {PROXIES[name]["label"]}', '',
                  '| reloads per run | req/s | p50 ms | p99 ms | max ms | failed | connect/read/write/timeout '
                  '| non-2xx | reconnects | FIN/RST | CPU-µs/req | util | other CPU-s | RSS MiB '
                  '| procs seen/end | reload cmd ms (wall/CPU) |',
                  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
        for method in methods:
            rs = [r for r in results if r['proxy'] == name and r['method'] == method]
            ok = [r for r in rs if 'error' not in r]
            title = 'none' if method == 'none' else f'1/s `{method}`'
            if not ok:
                lines.append(f'| {title} | failed: {rs[0].get("error", "")[:80]} |' + ' |' * 14)
                continue
            med = {k: median_of(ok, k) for k in KEYS}

            def cell(key, digits=0, scale=1.0):
                vals = [r[key] * scale for r in ok if r.get(key) is not None]
                if not vals:
                    return '–'
                m = statistics.median(vals)
                if len(vals) == 1 or min(vals) == max(vals):
                    return f'{m:.{digits}f}'
                return f'{m:.{digits}f} [{min(vals):.{digits}f}–{max(vals):.{digits}f}]'

            errs = '/'.join(num(med[k]) for k in ('err_connect', 'err_read', 'err_write', 'err_timeout'))
            rl = '' if method == 'none' else f': {num(med["reloads"])}'
            if method != 'none' and med['applied'] is not None:
                rl += f' ({num(med["applied"])} applied)'
            cmd = (f'{num(med["reload_cmd_wall_ms"], 1)} / {num(med["reload_cmd_cpu_ms"], 1)}'
                   if med['reload_cmd_wall_ms'] is not None else '–')
            fr = (f'{num(med["fin_from_proxy"])}/{num(med["rst_from_proxy"])}'
                  if med['fin_from_proxy'] is not None else '–')
            lines.append(f'| {title}{rl} | {cell("rps")} | {cell("p50_ms", 2)} | {cell("p99_ms", 2)} | '
                         f'{cell("max_ms", 1)} | **{cell("failed")}** | {errs} | {num(med["non2xx"])} | '
                         f'{cell("reconnects")} | {fr} | {cell("us_per_req", 2)} | {num(med["util"], 2)} | '
                         f'{cell("other_cpu_s", 2)}{" †" if any(r.get("disturbed") for r in ok) else ""} | {cell("rss_kib", 1, 1 / 1024)} | '
                         f'{max(r["procs_seen"] for r in ok)}/{max(r["procs_end"] for r in ok)} | {cmd} |')
            summary.append((name, method, med))
        lines.append('')
    lines += ['## Methods', ''] + [f'- `{m}`: {d}' for m, d in METHODS.items()
                                   if any(r['method'] == m for r in results)] + ['']
    # One line per proxy/method: the change from its own no-reload run.
    lines += ['## Reloading vs not, same proxy', '', '| proxy | method | req/s change | p99 none -> 1/s | failed (1/s run) |',
              '|---|---|---|---|---|']
    base = {n: med for n, m, med in summary if m == 'none'}
    for name, method, med in summary:
        b = base.get(name)
        if method == 'none' or b is None or not b['rps']:
            continue
        lines.append(f'| {PROXIES[name]["label"]} | {method} | {(med["rps"] / b["rps"] - 1) * 100:+.1f} % | '
                     f'{num(b["p99_ms"], 2)} -> {num(med["p99_ms"], 2)} ms | {num(med["failed"])} |')
    lines.append('')
    if repeated:
        lines += [f'{len(repeated)} run(s) were repeated because other processes used the CPUs meanwhile '
                  '(in results.json under `repeated`): ' +
                  ', '.join(f'{r["proxy"]} {r["method"]} round {r["rep"] + 1} ({r["other_cpu_s"]:.1f} CPU-s)'
                            for r in repeated) + '.', '']
    errs = [r for r in results if 'error' in r]
    if errs:
        lines += ['## Errors', ''] + [f'- {e["proxy"]} {e["method"]} rep {e["rep"]}: {e["error"]}' for e in errs] + ['']
    return '\n'.join(lines)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def version(cmd, pattern):
    out = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(pattern, out.stdout + out.stderr)
    return m.group(1) if m else '?'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true',
                    help='smoke run: 2 s per run, no warm-up, one method per proxy, bench configs only')
    ap.add_argument('--proxies', default=None, help='comma list of ' + ','.join(PROXIES))
    ap.add_argument('--methods', default=None,
                    help='comma list of reload methods to run where they apply (' +
                    ','.join(m for m in METHODS if m != 'none') + '); default all')
    ap.add_argument('--duration', type=int, default=None, help='seconds per run (default 10; 2 with --quick)')
    ap.add_argument('--warmup', type=int, default=None, help='seconds of warm-up per run (default 1; 0 with --quick)')
    ap.add_argument('--reps', type=int, default=None, help='rounds: runs per proxy and method (default 3; 1 with --quick)')
    ap.add_argument('--retries', type=int, default=None,
                    help='repeats of a run during which other processes used the CPUs (default 2; 0 with --quick)')
    ap.add_argument('--ringway-bin', default=os.path.join(RUN.ROOT, 'target', 'release', 'ringway'))
    ap.add_argument('--out', default=None, help='results directory (default bench/results/<UTC date-time>-reload)')
    args = ap.parse_args()
    names = [p for p in (args.proxies or (','.join(QUICK_METHODS) if args.quick else ','.join(PROXIES))).split(',') if p]
    for p in names:
        if p not in PROXIES:
            ap.error(f'unknown proxy {p}')
    wanted = set(args.methods.split(',')) if args.methods else None
    for m in wanted or ():
        if m not in METHODS or m == 'none':
            ap.error(f'unknown method {m}')
    args.duration = args.duration or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    args.reps = args.reps or (1 if args.quick else 3)
    args.retries = args.retries if args.retries is not None else (0 if args.quick else 2)
    for tool in ('nginx', 'haproxy', 'wrk', 'taskset'):
        if shutil.which(tool) is None:
            raise SystemExit(f'{tool} not found: apt-get install nginx haproxy wrk util-linux')
    if any(PROXIES[p]['kind'] == 'ringway' for p in names) and not os.path.exists(args.ringway_bin):
        raise SystemExit(f'{args.ringway_bin} not found: cargo build --release')
    # Rounds: every proxy and method once per round, so drift (the VM's neighbours) spreads over all.
    plan = []
    for rep in range(args.reps):
        for name in names:
            methods = PROXIES[name]['methods']
            if args.quick and not wanted:
                methods = (QUICK_METHODS.get(name, methods[0]),)
            methods = [m for m in methods if wanted is None or m in wanted]
            plan += [(name, m, rep) for m in ['none'] + methods]
    now = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or os.path.join(HERE, 'results', now.strftime('%Y-%m-%dT%H%M%SZ') + '-reload')
    os.makedirs(out, exist_ok=True)
    # The harness itself (the reload loop, /proc scans, reload commands) stays off the proxy's CPU.
    os.sched_setaffinity(0, {HARNESS_CPU})
    h = Harness(args)
    binary = None
    if any(PROXIES[p]['kind'] == 'ringway' for p in names):
        # A copy: a rebuild while the bench runs must not mix two binaries in one report.
        binary = dict(path=args.ringway_bin, sha256=sha256_of(args.ringway_bin),
                      mtime=datetime.datetime.fromtimestamp(os.path.getmtime(args.ringway_bin),
                                                            datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC'))
        args.ringway_bin = shutil.copy2(args.ringway_bin, os.path.join(h.work, 'ringway'))
    try:
        results = h.run(plan)
    finally:
        shutil.rmtree(h.work, ignore_errors=True)
    meta = dict(date=now.strftime('%Y-%m-%d %H:%M UTC'), kernel=os.uname().release, cpus=os.cpu_count(),
                haproxy=version(['haproxy', '-v'], r'version (\S+)'), nginx=version(['nginx', '-v'], r'nginx/(\S+)'),
                args=dict(proxies=names, methods=args.methods, duration=args.duration, warmup=args.warmup,
                          reps=args.reps, retries=args.retries, quick=args.quick),
                connections_counted=h.perf_ok, ringway_binary=binary)
    text = report(results, args, meta, h.perf_ok, h.disturbed)
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(dict(meta=meta, results=results, repeated=h.disturbed), f, indent=1)
    with open(os.path.join(out, 'report.md'), 'w') as f:
        f.write(text + '\n')
    with open(os.path.join(out, 'raw-wrk.txt'), 'w') as f:
        f.write('\n'.join(h.raw))
    print(text)
    print(f'\nsaved: {out}/report.md, results.json, raw-wrk.txt')
    bad = [r for r in results if PROXIES[r['proxy']]['kind'] == 'ringway' and ('error' in r or r.get('failed'))]
    if bad:
        raise SystemExit(f'ringway failed requests or errors in {len(bad)} run(s): see {out}/report.md')


if __name__ == '__main__':
    main()
