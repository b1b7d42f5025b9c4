#!/usr/bin/env python3
"""ringway bench: one command, every proxy, same run.

    python3 bench/run.py                 # full run (3 reps x 5 s per scenario and proxy)
    python3 bench/run.py --quick         # smoke: 1 rep x 2 s, ringway + nginx + haproxy (L4 and L7)

Scenarios S1-S3 run against the L4 proxies (ringway mode tcp, nginx stream, HAProxy mode tcp),
H1-H4 against the L7 ones (ringway mode http, nginx proxy_pass, HAProxy mode http; nginx and HAProxy
both as bench/conf configures them and with a new user's minimal config, which skip H4).

Pinning (2-core machine): the proxy under test runs alone on CPU 0 (one shard / one worker / one
thread); wrk and the nginx backend share CPU 1. Proxy CPU time = delta of utime+stime from
/proc/PID/stat over the proxy's whole process tree (all threads included), during each wrk run.
See bench/README.md.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The bench runs as root (pinning, limits); ringway refuses root without this opt-in.
os.environ.setdefault('RINGWAY_ALLOW_ROOT', '1')
ROOT = os.path.dirname(HERE)
CONF = os.path.join(HERE, 'conf')
TCK = os.sysconf('SC_CLK_TCK')

# A scenario is a data entry: (layer, path, connections, load tool script, unit of cost)
SCENARIOS = {
    'S1': dict(layer='l4', path='/small', conns=64, lua='stats.lua', cost='us_per_req',
               what='L4: small response, 64 keep-alive connections'),
    'S2': dict(layer='l4', path='/1m.bin', conns=8, lua='stats.lua', cost='s_per_gb',
               what='L4: 1 MiB responses, 8 keep-alive connections'),
    'S3': dict(layer='l4', path='/small', conns=64, lua='close.lua', cost='us_per_req',
               what='L4: one new connection per request (Connection: close), 64 connections'),
    'H1': dict(layer='l7', path='/small', conns=64, lua='stats.lua', cost='us_per_req',
               what='HTTP: small response, 64 keep-alive client connections'),
    'H2': dict(layer='l7', path='/1m.bin', conns=8, lua='stats.lua', cost='s_per_gb',
               what='HTTP: 1 MiB responses, 8 keep-alive client connections'),
    'H3': dict(layer='l7', path='/small', conns=64, lua='close.lua', cost='us_per_req',
               what='HTTP: a new client connection per request, backend kept alive, 64 connections'),
    'B1': dict(layer='lb', path='/small', conns=64, lua='users.lua', cost='us_per_req',
               what='balancing over 4 servers: small response, 64 keep-alive connections, random X-User per request'),
    'H4': dict(layer='l7', path='/ws', conns=256, lua=None, cost='us_per_req',
               what='WebSocket echo of 64-byte messages over 256 connections (request = one message round trip)'),
    # TLS: openssl s_time (sequential, 2 client processes on CPU 1) for handshakes, wrk for HTTPS.
    'T1': dict(layer='tls', path='/small', conns=2, lua='s_time:-new', cost='us_per_req',
               what='TLS 1.3 full handshake + one small request per connection (openssl s_time -new)'),
    'T2': dict(layer='tls', path='/small', conns=2, lua='s_time:-reuse', cost='us_per_req',
               what='TLS 1.3 resumed handshake (ticket) + one small request per connection (openssl s_time -reuse)'),
    'T2b': dict(layer='tls', path='/small', conns=2, lua='s_time:-reuse:-tls1_2', cost='us_per_req',
                what='TLS 1.2 resumed handshake (abbreviated: no key exchange) + one small request per connection'),
    'T3': dict(layer='tls', path='/small', conns=64, lua='stats.lua', https=True, cost='us_per_req',
               what='HTTPS keep-alive: small response, 64 client connections (wrk)'),
}

# A proxy is a data entry: how to render its config and start it. {port}, {backend_port}, {work},
# {admin_port} are filled in; every proxy is started under `taskset -c 0`.
PROXIES = {
    'ringway': dict(kind='ringway', layer='l4', splice='auto', label='ringway (1 shard)'),
    'ringway-copy': dict(kind='ringway', layer='l4', splice='off', label='ringway splice=off'),
    'nginx': dict(kind='nginx', layer='l4', label='nginx stream (1 worker)'),
    'haproxy': dict(kind='haproxy', layer='l4', label='HAProxy mode tcp (nbthread 1)'),
    'tokio': dict(kind='ref', layer='l4', bin='ref-tokio', label='ref: tokio current_thread 64K'),
    'glommio': dict(kind='ref', layer='l4', bin='ref-glommio', label='ref: glommio 0.9 64K'),
    'ringway-http': dict(kind='ringway', layer='l7', splice='auto', label='ringway mode http (1 shard)'),
    # The same binary and config with its latency histograms off: what they cost per request
    # (README "Stats cost"). Interleave the two in one run: --proxies ringway-http,ringway-http-nohist,...
    'ringway-http-nohist': dict(kind='ringway', layer='l7', splice='auto', skip=('H2', 'H3', 'H4'),
                                env={'RINGWAY_LATENCY_HISTOGRAMS': 'off'},
                                label='ringway mode http, latency histograms off'),
    'nginx-http': dict(kind='nginx-http', layer='l7', label='nginx proxy_pass + keepalive (1 worker)'),
    'haproxy-http': dict(kind='haproxy-http', layer='l7', label='HAProxy mode http, http-reuse always (nbthread 1)'),
    # The same two proxies configured as a new user would (conf/*-min.*): no X-Forwarded-For, no
    # WebSocket route (so no H4), defaults for everything but upstream keep-alive.
    'nginx-http-min': dict(kind='nginx-http-min', layer='l7', skip=('H4',),
                           label='nginx proxy_pass, minimal config (1 worker)'),
    'haproxy-http-min': dict(kind='haproxy-http-min', layer='l7', skip=('H4',),
                             label='HAProxy mode http, minimal config (nbthread 1)'),
    'lb-rr': dict(kind='ringway-lb', layer='lb', balance='round_robin', label='ringway round_robin x4'),
    'lb-lc': dict(kind='ringway-lb', layer='lb', balance='least_conn', label='ringway least_conn x4'),
    'lb-p2c': dict(kind='ringway-lb', layer='lb', balance='p2c', label='ringway p2c x4'),
    'lb-maglev': dict(kind='ringway-lb', layer='lb', balance='maglev', label='ringway maglev (X-User) x4'),
    'ringway-tls': dict(kind='ringway-tls', layer='tls', label='ringway tls (rustls, 1 shard)'),
    'nginx-tls': dict(kind='nginx-tls', layer='tls', label='nginx ssl (OpenSSL, 1 worker)'),
    'haproxy-tls': dict(kind='haproxy-tls', layer='tls', label='HAProxy ssl (OpenSSL, nbthread 1)'),
}
# The "ratio" columns' baselines per layer: one column per config set, each dividing by the
# cheaper peer of that set in the same scenario (L4, L7, TLS), or by round robin (balancing).
# L7 has two sets: nginx and HAProxy as bench/conf configures them (X-Forwarded-For, WebSocket
# route, bigger pools), and as a new user would (conf/*-min.*).
PEERS = {'l4': {'best peer': ('nginx', 'haproxy')},
         'l7': {'better bench-config peer': ('nginx-http', 'haproxy-http'),
                'better minimal peer': ('nginx-http-min', 'haproxy-http-min')},
         'lb': {'round robin': ('lb-rr',)},
         'tls': {'best peer': ('nginx-tls', 'haproxy-tls')}}


def runs(name, scen):
    """Whether proxy `name` runs scenario `scen`: same layer, and not in the proxy's `skip`."""
    spec = PROXIES[name]
    return spec['layer'] == SCENARIOS[scen]['layer'] and scen not in spec.get('skip', ())


def log(msg):
    sys.stderr.write(msg + '\n')
    sys.stderr.flush()


def progress(msg):
    sys.stderr.write('\r\033[K' + msg if sys.stderr.isatty() else msg + '\n')
    sys.stderr.flush()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def render(name, dest, **kw):
    with open(os.path.join(CONF, name)) as f:
        text = f.read()
    for k, v in kw.items():
        text = text.replace('{' + k + '}', str(v))
    with open(dest, 'w') as f:
        f.write(text)
    return dest


def proc_tree(root):
    kids = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                s = f.read()
            ppid = int(s[s.rindex(')') + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError):
            pass
    pids, i = [root], 0
    while i < len(pids):
        pids += kids.get(pids[i], [])
        i += 1
    return pids


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f'/proc/{p}/stat') as f:
                s = f.read()
            fields = s[s.rindex(')') + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
        except (OSError, ValueError):
            pass
    return total


def rss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f'/proc/{p}/status') as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work or tempfile.mkdtemp(prefix='ringway-bench-')
        os.makedirs(os.path.join(self.work, 'www'), exist_ok=True)
        # The backend nginx's worker runs as an unprivileged user when started as root.
        os.chmod(self.work, 0o755)
        self.backend_port = free_port()
        self.backend_ports = [self.backend_port, free_port(), free_port(), free_port()]
        self.ws_port = free_port()
        self.admin_ports = {}
        self.backend = None
        self.ws_backend = None
        self.raw = []

    def make_cert(self):
        """One ECDSA P-256 certificate for every TLS proxy (HAProxy wants chain and key in one file)."""
        cert, key = os.path.join(self.work, 'tls.pem'), os.path.join(self.work, 'tls.key')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                        '-nodes', '-days', '2', '-keyout', key, '-out', cert, '-subj', '/CN=bench.test',
                        '-addext', 'subjectAltName=DNS:bench.test'], check=True, capture_output=True)
        with open(os.path.join(self.work, 'tls-haproxy.pem'), 'w') as f:
            f.write(open(cert).read() + open(key).read())
        for p in (cert, key, os.path.join(self.work, 'tls-haproxy.pem')):
            os.chmod(p, 0o644)

    def start_backend(self):
        if any(SCENARIOS[sc]['layer'] == 'tls' for sc in self.args.scenarios):
            self.make_cert()
        with open(os.path.join(self.work, 'www', '1m.bin'), 'wb') as f:
            f.write(os.urandom(1 << 20))
        os.chmod(os.path.join(self.work, 'www', '1m.bin'), 0o644)
        cfg = render('backend.conf', os.path.join(self.work, 'backend.conf'), work=self.work,
                     backend_port=self.backend_ports[0], backend_port2=self.backend_ports[1],
                     backend_port3=self.backend_ports[2], backend_port4=self.backend_ports[3])
        self.backend = subprocess.Popen(['taskset', '-c', '1', 'nginx', '-c', cfg, '-g', 'daemon off;'],
                                        start_new_session=True, stderr=subprocess.DEVNULL)
        if not wait_port(self.backend_port):
            raise SystemExit('backend nginx did not start')
        if any(SCENARIOS[sc]['lua'] is None for sc in self.args.scenarios):
            self.ws_backend = subprocess.Popen(['taskset', '-c', '1', os.path.join(self.ref_dir(), 'ws-echo'),
                                                f'127.0.0.1:{self.ws_port}'], start_new_session=True)
            if not wait_port(self.ws_port):
                raise SystemExit('WebSocket echo backend did not start')

    def start_proxy(self, name):
        spec = PROXIES[name]
        port = free_port()
        kind = spec['kind']
        t0 = ['taskset', '-c', '0']
        if kind == 'ringway':
            admin = free_port()
            extra = '\n'.join(self.args.ringway_config_extra or [])
            template = 'ringway-http.toml' if spec['layer'] == 'l7' else 'ringway.toml'
            cfg = render(template, os.path.join(self.work, f'{name}.toml'), port=port, admin_port=admin,
                         backend_port=self.backend_port, ws_port=self.ws_port, splice=spec['splice'], extra=extra)
            cmd = t0 + [self.args.ringway_bin, 'run', '-c', cfg]
        elif kind == 'nginx':
            cfg = render('nginx-stream.conf', os.path.join(self.work, 'nginx-stream.conf'), port=port,
                         backend_port=self.backend_port, work=self.work)
            cmd = t0 + ['nginx', '-c', cfg, '-g', 'daemon off;']
        elif kind == 'haproxy':
            cfg = render('haproxy-tcp.cfg', os.path.join(self.work, 'haproxy.cfg'), port=port,
                         backend_port=self.backend_port, work=self.work)
            cmd = t0 + ['haproxy', '-db', '-f', cfg]
        elif kind == 'ringway-lb':
            admin = free_port()
            self.admin_ports[name] = admin
            extra = '\n'.join(self.args.ringway_config_extra or [])
            hash_key = 'hash_key = "header:X-User"' if spec['balance'] == 'maglev' else ''
            cfg = render('ringway-lb.toml', os.path.join(self.work, f'{name}.toml'), port=port, admin_port=admin,
                         backend_port=self.backend_ports[0], backend_port2=self.backend_ports[1],
                         backend_port3=self.backend_ports[2], backend_port4=self.backend_ports[3],
                         balance=spec['balance'], hash_key=hash_key, extra=extra)
            cmd = t0 + [self.args.ringway_bin, 'run', '-c', cfg]
        elif kind == 'ringway-tls':
            admin = free_port()
            extra = '\n'.join(self.args.ringway_config_extra or [])
            cfg = render('ringway-tls.toml', os.path.join(self.work, f'{name}.toml'), port=port, admin_port=admin,
                         backend_port=self.backend_port, work=self.work, extra=extra)
            cmd = t0 + [self.args.ringway_bin, 'run', '-c', cfg]
        elif kind == 'nginx-tls':
            cfg = render('nginx-tls.conf', os.path.join(self.work, 'nginx-tls.conf'), port=port,
                         backend_port=self.backend_port, work=self.work)
            cmd = t0 + ['nginx', '-c', cfg, '-g', 'daemon off;']
        elif kind == 'haproxy-tls':
            cfg = render('haproxy-tls.cfg', os.path.join(self.work, 'haproxy-tls.cfg'), port=port,
                         backend_port=self.backend_port, work=self.work)
            cmd = t0 + ['haproxy', '-db', '-f', cfg]
        elif kind == 'nginx-http':
            cfg = render('nginx-http.conf', os.path.join(self.work, 'nginx-http.conf'), port=port,
                         backend_port=self.backend_port, ws_port=self.ws_port, work=self.work)
            cmd = t0 + ['nginx', '-c', cfg, '-g', 'daemon off;']
        elif kind == 'haproxy-http':
            cfg = render('haproxy-http.cfg', os.path.join(self.work, 'haproxy-http.cfg'), port=port,
                         backend_port=self.backend_port, ws_port=self.ws_port, work=self.work)
            cmd = t0 + ['haproxy', '-db', '-f', cfg]
        elif kind == 'nginx-http-min':
            cfg = render('nginx-http-min.conf', os.path.join(self.work, 'nginx-http-min.conf'), port=port,
                         backend_port=self.backend_port, work=self.work)
            cmd = t0 + ['nginx', '-c', cfg, '-g', 'daemon off;']
        elif kind == 'haproxy-http-min':
            cfg = render('haproxy-http-min.cfg', os.path.join(self.work, 'haproxy-http-min.cfg'), port=port,
                         backend_port=self.backend_port, work=self.work)
            cmd = t0 + ['haproxy', '-db', '-f', cfg]
        else:
            cmd = t0 + [os.path.join(self.ref_dir(), spec['bin']), f'127.0.0.1:{port}',
                        f'127.0.0.1:{self.backend_port}']
        errlog = open(os.path.join(self.work, f'{name}.log'), 'w')
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=errlog, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **spec.get('env', {})))
        if not wait_port(port):
            stop(proc)
            raise RuntimeError(f'{name} did not start; see {errlog.name}')
        return proc, port

    def ref_dir(self):
        return os.path.join(HERE, 'ref', 'target', 'release')

    def build_refs(self, names):
        needs_ws = any(SCENARIOS[sc]['lua'] is None for sc in self.args.scenarios)
        if not any(PROXIES[n]['kind'] == 'ref' for n in names) and not needs_ws:
            return
        log('building reference forwarders (bench/ref)...')
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(HERE, 'ref', 'target'))
        subprocess.run(['cargo', 'build', '--release', '--manifest-path', os.path.join(HERE, 'ref', 'Cargo.toml')],
                       check=True, env=env, stdout=subprocess.DEVNULL)

    def s_time(self, port, scen, duration):
        """openssl s_time: `conns` sequential clients on CPU 1, summed; same JSON shape as wrk's."""
        s = SCENARIOS[scen]
        parts = s['lua'].split(':')
        mode = parts[1]
        version = parts[2] if len(parts) > 2 else '-tls1_3'
        cmd = ['taskset', '-c', '1', 'openssl', 's_time', '-connect', f'127.0.0.1:{port}', mode, version,
               '-www', s['path'], '-time', str(max(1, round(duration)))]
        t0 = time.time()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(s['conns'])]
        outs = [p.communicate(timeout=duration + 30)[0] for p in procs]
        wall = time.time() - t0
        total = 0
        for out in outs:
            m = re.search(r'^(\d+) connections in [\d.]+ real seconds', out, re.M)
            if m is None:
                return None, '\n'.join(outs)
            total += int(m.group(1))
        js = dict(requests=total, duration_us=wall * 1e6, bytes=0, p50_us=0, p99_us=0, err_connect=0,
                  err_read=0, err_write=0, err_timeout=0, non2xx=0)
        return js, '\n'.join(outs)

    def wrk(self, port, scen, duration):
        s = SCENARIOS[scen]
        if s['lua'] is not None and s['lua'].startswith('s_time:'):
            return self.s_time(port, scen, duration)
        if s['lua'] is None:
            # WebSocket load: bench/ref ws-load prints the same JSON line as the wrk scripts.
            cmd = ['taskset', '-c', '1', os.path.join(self.ref_dir(), 'ws-load'),
                   f'ws://127.0.0.1:{port}{s["path"]}', str(s['conns']), str(max(1, round(duration)))]
        else:
            # wrk takes whole seconds only: given -d0.5s or -d1.0s it prints its usage and runs nothing.
            cmd = ['taskset', '-c', '1', 'wrk', '-t1', f'-c{s["conns"]}', f'-d{max(1, round(duration))}s', '--latency',
                   '-s', os.path.join(CONF, s['lua']),
                   f'{"https" if s.get("https") else "http"}://127.0.0.1:{port}{s["path"]}']
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
        m = re.search(r'^JSON (.*)$', out, re.M)
        return (json.loads(m.group(1)) if m else None), out

    def server_requests(self, name):
        """Per-server request counts from ringway's /stats (balancing scenarios)."""
        port = self.admin_ports.get(name)
        if port is None:
            return None
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
                s.sendall(b'GET /stats HTTP/1.0\r\n\r\n')
                data = b''
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            doc = json.loads(data.split(b'\r\n\r\n', 1)[1])
            return [srv['requests'] for srv in doc['backends'][0]['servers']]
        except (OSError, ValueError, KeyError, IndexError):
            return None

    def measure(self, name, proc, port, scen, rep, duration):
        pids = proc_tree(proc.pid)
        before = self.server_requests(name)
        c0 = cpu_ticks(pids)
        t0 = time.time()
        js, out = self.wrk(port, scen, duration)
        pids = proc_tree(proc.pid)
        c1 = cpu_ticks(pids)
        wall = time.time() - t0
        after = self.server_requests(name)
        spread = None
        if before is not None and after is not None:
            per = [a - b for a, b in zip(after, before)]
            spread = max(per) / max(min(per), 1)
        self.raw.append(f'### {name} {scen} rep{rep}\n{out}')
        if js is None:
            return dict(proxy=name, scen=scen, rep=rep, error='wrk printed no result: ' + out[-300:])
        dur = js['duration_us'] / 1e6
        cpu_s = (c1 - c0) / TCK
        errors = js['err_connect'] + js['err_read'] + js['err_write'] + js['err_timeout']
        return dict(proxy=name, scen=scen, rep=rep, requests=js['requests'], rps=js['requests'] / dur,
                    gbps=js['bytes'] / dur / 1e9, bytes=js['bytes'], p50_ms=js['p50_us'] / 1e3,
                    p99_ms=js['p99_us'] / 1e3, cpu_s=cpu_s, util=cpu_s / wall,
                    us_per_req=cpu_s * 1e6 / max(js['requests'], 1),
                    s_per_gb=cpu_s / max(js['bytes'] / 1e9, 1e-9), errors=errors, non2xx=js['non2xx'],
                    threads=sum(len(os.listdir(f'/proc/{p}/task')) for p in pids if os.path.isdir(f'/proc/{p}')),
                    rss_kib=rss_kib(pids), spread=spread)

    def run(self):
        a = self.args
        names = a.proxies
        self.build_refs(names)
        self.start_backend()
        results = []
        cells = [(n, sc) for n in names for sc in a.scenarios if runs(n, sc)]
        total_steps = len(cells) * a.reps
        step = 0
        try:
            for name in names:
                scens = [sc for sc in a.scenarios if runs(name, sc)]
                if not scens:
                    continue
                try:
                    proc, port = self.start_proxy(name)
                except RuntimeError as e:
                    log(str(e))
                    results += [dict(proxy=name, scen=sc, rep=0, error=str(e)) for sc in scens]
                    step += len(scens) * a.reps
                    continue
                try:
                    for scen in scens:
                        if a.warmup > 0:
                            self.wrk(port, scen, a.warmup)
                        for rep in range(a.reps):
                            step += 1
                            progress(f'[{step}/{total_steps}] {name} {scen} rep {rep + 1}/{a.reps} ({a.duration}s)')
                            r = self.measure(name, proc, port, scen, rep, a.duration)
                            results.append(r)
                            if proc.poll() is not None:
                                raise RuntimeError(f'{name} exited during {scen} (rc={proc.returncode})')
                finally:
                    stop(proc)
        finally:
            stop(self.backend)
            if self.ws_backend is not None:
                stop(self.ws_backend)
        progress('done\n')
        return results


def median_range(values):
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def fmt(mr, digits):
    if mr is None:
        return '–'
    m, lo, hi = mr
    return f'{m:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}]'


def summarize(results, scenarios, names):
    rows = {}
    for name in names:
        for scen in scenarios:
            rs = [r for r in results if r['proxy'] == name and r['scen'] == scen and 'error' not in r]
            if not rs:
                continue
            cost_key = SCENARIOS[scen]['cost']
            rows[(name, scen)] = dict(
                rps=median_range([r['rps'] for r in rs]), gbps=median_range([r['gbps'] for r in rs]),
                p50=median_range([r['p50_ms'] for r in rs]), p99=median_range([r['p99_ms'] for r in rs]),
                cost=median_range([r[cost_key] for r in rs]), util=median_range([r['util'] for r in rs]),
                errors=sum(r['errors'] for r in rs), non2xx=sum(r['non2xx'] for r in rs),
                threads=max(r['threads'] for r in rs), n=len(rs),
                spread=median_range([r['spread'] for r in rs if r.get('spread') is not None]))
    return rows


def report(results, rows, args, meta):
    lines = [f'# ringway bench — {meta["date"]}', '',
             f'Machine: {meta["cpus"]} CPUs, kernel {meta["kernel"]}. Proxy on CPU 0 (one shard/worker/thread); '
             f'wrk + nginx backend on CPU 1. {args.reps} rep(s) x {args.duration} s per cell, median [min–max]. '
             'CPU from /proc/PID/stat (10 ms ticks). util = proxy CPU-s / wall-s: below ~0.9 the proxy was not '
             'the bottleneck (CPU 1 was), so compare the cost columns, not req/s.', '']
    for scen in args.scenarios:
        s = SCENARIOS[scen]
        # A proxy named twice in --proxies ran twice (interleaved rounds): one row, all its reps.
        names = [n for n in dict.fromkeys(args.proxies) if runs(n, scen)]
        if not names:
            continue
        unit = 'CPU-µs/request' if s['cost'] == 'us_per_req' else 'CPU-s/GB'
        # One ratio column per config set with a peer measured in this run (a set whose peers were
        # not run, or skip this scenario, gets no column).
        bases = []
        for title, peers in PEERS[s['layer']].items():
            costs = [rows[(p, scen)]['cost'][0] for p in peers if (p, scen) in rows]
            if costs:
                bases.append((title, min(costs)))
        if not bases:
            bases = [('best peer', None)]
        ratio_heads = ''.join(f' ratio to {t} |' for t, _ in bases)
        lines += [f'## {scen}: {s["what"]}', '',
                  f'| proxy | req/s | GB/s | p50 ms | p99 ms | {unit} |{ratio_heads} util | threads | errors |',
                  '|---|---|---|---|---|---|' + '---|' * len(bases) + '---|---|---|']
        digits = 2 if s['cost'] == 'us_per_req' else 3
        for name in names:
            r = rows.get((name, scen))
            if r is None:
                lines.append(f'| {PROXIES[name]["label"]} | failed |' + ' |' * (7 + len(bases)))
                continue
            ratios = ''.join(f' {r["cost"][0] / b:.2f}× |' if b else ' – |' for _, b in bases)
            spread = f' (max/min per server {r["spread"][0]:.2f})' if r.get('spread') else ''
            lines.append(f'| {PROXIES[name]["label"]}{spread} | {r["rps"][0]:.0f} | {r["gbps"][0]:.3f} | {fmt(r["p50"], 2)} | '
                         f'{fmt(r["p99"], 2)} | {fmt(r["cost"], digits)} |{ratios} {r["util"][0]:.2f} | '
                         f'{r["threads"]} | {r["errors"]}+{r["non2xx"]} |')
        lines.append('')
    errs = [r for r in results if 'error' in r]
    if errs:
        lines += ['## Errors', ''] + [f'- {e["proxy"]} {e["scen"]}: {e["error"]}' for e in errs] + ['']
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quick', action='store_true', help='smoke run: 1 rep x 2 s, ringway+nginx+haproxy')
    ap.add_argument('--proxies', default=None, help='comma list of ' + ','.join(PROXIES))
    ap.add_argument('--scenarios', default=','.join(SCENARIOS), help='comma list of ' + ','.join(SCENARIOS))
    ap.add_argument('--reps', type=int, default=None)
    ap.add_argument('--duration', type=int, default=None, help='seconds per measured run')
    ap.add_argument('--warmup', type=float, default=None,
                    help='seconds of warm-up per scenario (default 1; 0 with --quick; wrk rounds to whole seconds)')
    ap.add_argument('--ringway-bin', default=os.path.join(ROOT, 'target', 'release', 'ringway'))
    ap.add_argument('--ringway-config-extra', action='append',
                    help='TOML line added to ringway\'s [global] (repeatable), e.g. recv_buffer_size = "64KiB"')
    ap.add_argument('--out', default=None, help='results directory (default bench/results/<UTC date-time>)')
    ap.add_argument('--work', default=None, help='scratch directory (default: a new temp dir)')
    ap.add_argument('--no-idle', dest='idle', action='store_false',
                    help='skip the idle-connection scaling scenario (bench/idle.py): proxy memory per idle keep-alive connection')
    ap.add_argument('--idle-steps', default=None,
                    help='comma list of N for --idle (default 1000,10000,50000; with --quick 1000,5000)')
    ap.add_argument('--no-charts', action='store_true', help='skip the PNG charts (bench/report.py, needs matplotlib)')
    args = ap.parse_args()
    default_proxies = ('ringway,nginx,haproxy,ringway-http,nginx-http,haproxy-http,lb-rr,lb-maglev,ringway-tls,nginx-tls,haproxy-tls' if args.quick
                       else ','.join(PROXIES))
    args.proxies = [p for p in (args.proxies or default_proxies).split(',') if p]
    args.scenarios = [s for s in args.scenarios.split(',') if s]
    for p in args.proxies:
        if p not in PROXIES:
            ap.error(f'unknown proxy {p}')
    for s in args.scenarios:
        if s not in SCENARIOS:
            ap.error(f'unknown scenario {s}')
    args.reps = args.reps or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 5)
    # --quick: no warm-up. Its 0.5 s never ran under wrk (whole seconds only), and 1 s per cell would
    # add half a minute to the CI smoke.
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    for tool in ('nginx', 'haproxy', 'wrk', 'taskset'):
        if shutil.which(tool) is None:
            raise SystemExit(f'{tool} not found: apt-get install nginx libnginx-mod-stream haproxy wrk util-linux')
    if any(PROXIES[p]['kind'] in ('ringway', 'ringway-lb', 'ringway-tls') for p in args.proxies) and not os.path.exists(args.ringway_bin):
        raise SystemExit(f'{args.ringway_bin} not found: cargo build --release')
    now = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or os.path.join(HERE, 'results', now.strftime('%Y-%m-%dT%H%M%SZ'))
    os.makedirs(out, exist_ok=True)
    bench = Bench(args)
    results = bench.run()
    meta = dict(date=now.strftime('%Y-%m-%d %H:%M UTC'), kernel=os.uname().release, cpus=os.cpu_count(),
                args=dict(proxies=args.proxies, scenarios=args.scenarios, reps=args.reps, duration=args.duration))
    rows = summarize(results, args.scenarios, list(dict.fromkeys(args.proxies)))
    text = report(results, rows, args, meta)
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(dict(meta=meta, results=results), f, indent=1)
    sys.path.insert(0, HERE)
    if not args.no_charts:
        # bench/report.py, imported under another name: this module has its own report().
        try:
            import report as charts
            pngs = charts.plots(os.path.join(out, 'results.json'), out)
            text += '\n' + charts.markdown_images(pngs, out)
        except ImportError as e:
            raise SystemExit(f'no charts ({e}): python3 -m pip install matplotlib, or pass --no-charts')
    if args.idle:
        import idle
        steps = ([int(s) for s in args.idle_steps.split(',') if s] if args.idle_steps
                 else idle.QUICK_STEPS if args.quick else idle.DEFAULT_STEPS)
        text += '\n' + idle.section(idle.run(out, steps, args.ringway_bin))
    with open(os.path.join(out, 'report.md'), 'w') as f:
        f.write(text + '\n')
    with open(os.path.join(out, 'raw-wrk.txt'), 'w') as f:
        f.write('\n'.join(bench.raw))
    print(text)
    print(f'\nsaved: {out}/report.md, results.json, raw-wrk.txt')
    shutil.rmtree(bench.work, ignore_errors=True)
    bad = [r for r in results if PROXIES[r['proxy']]['kind'] in ('ringway', 'ringway-lb', 'ringway-tls') and
           ('error' in r or r.get('errors') or r.get('non2xx'))]
    if bad:
        raise SystemExit(f'ringway had errors in {len(bad)} run(s): see {out}/report.md')


if __name__ == '__main__':
    main()
