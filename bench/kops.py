#!/usr/bin/env python3
"""ringway bench: kernel operations per request, scenario H1.

    python3 bench/kops.py                                  # the five H1 proxies, 1 s warm-up + 5 s
    python3 bench/kops.py --proxies ringway-http,haproxy-http-min --duration 10 --out /tmp/kops

For each proxy (run.py's PROXIES and Bench: one shard / worker / thread under `taskset -c 0`,
wrk -t1 -c64 `GET /small` and the backend nginx on CPU 1), counts what the proxy asks of the
kernel per request: syscalls by name, io_uring SQEs submitted / CQEs posted / task work / waits and
SQEs by opcode, context switches, wake-ups, plus CPU-µs/request and requests/s. Per proxy:

1. start it; warm up with wrk for --warmup s, with `perf record` of io_uring:io_uring_submit_req
   in its threads: the ring addresses (for the ring filters below) and the opcodes it submits (one
   filtered counter each below). Nothing for epoll proxies.
2. clean run: wrk for --duration s with nothing attached: CPU-µs/request (as run.py computes it:
   utime+stime of the proxy's process tree from /proc/PID/stat), requests/s, and context switches
   from /proc/PID/task/TID/status.
3. counted run: the same wrk run with two `perf stat` processes enabled right before wrk starts
   and disabled right after it ends (perf's --control pipe; no idle time before or after):
   - per task (`-p` all pids of the proxy's tree: perf opens every thread of each, and inherits
     into threads started later): every syscalls:sys_enter_* tracepoint, raw_syscalls:sys_enter
     (the total), every io_uring:* tracepoint, io_uring_submit_req once per sampled opcode
     (`--filter 'op_str == "RECV"'`), context-switches, cpu-migrations. Counted where they fire:
     in the proxy's threads.
   - system-wide, filtered in the kernel: sched:sched_wakeup and sched:sched_waking whose
     `pid` (the wakee) is one of the proxy's threads — they fire in the waker's context, often
     wrk's or the backend's on CPU 1, which per-task counting would miss — and the io_uring
     tracepoints that carry a ring pointer, filtered on the proxy's rings (`ctx == 0x...`): task
     work is queued (io_uring_task_add) and CQEs can be posted from softirq on the other CPU.
     The io_uring rows show these ring-filtered counts (other processes' rings are excluded).
   Counts are divided by the requests wrk completed in that run. CPU time is read during the
   counted run too, to show what counting costs (tracepoints fire in the proxy's context), but
   the CPU-µs/request reported is the clean run's.

Output: a markdown table (one column per proxy) on stdout and in <out>/kops.md, everything in
<out>/kops.json. Needs perf with tracepoints (hardware counters are not used) and root.
"""
import argparse
import datetime
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The bench runs as root (pinning, limits); ringway refuses root without this opt-in.
os.environ.setdefault('RINGWAY_ALLOW_ROOT', '1')

# bench/run.py, for its PROXIES table, Bench (backend, proxies, wrk) and process helpers.
sys.path.insert(0, HERE)
import run as RUN  # noqa: E402

SCEN = 'H1'
DEFAULT_PROXIES = ['ringway-http', 'haproxy-http', 'haproxy-http-min', 'nginx-http', 'nginx-http-min']
TRACEFS = next((d for d in ('/sys/kernel/tracing', '/sys/kernel/debug/tracing')
                if os.path.isdir(os.path.join(d, 'events'))), '/sys/kernel/tracing')
PERF_CPU = '1'          # perf itself stays off the proxy's CPU
ACK_TIMEOUT = 60.0      # perf opening ~400 tracepoint counters on a busy machine
EXIT_TIMEOUT = 180.0    # perf closing them: one RCU grace period per tracepoint, ~15 s here
SYSCALL_MIN = 0.005     # a syscall gets its own row when some proxy makes this many per request
# io_uring tracepoints always shown (others only when non-zero), in this order.
URING_ROWS = [('io_uring_submit_req', 'io_uring SQEs submitted (io_uring_submit_req)'),
              ('io_uring_complete', 'io_uring CQEs posted (io_uring_complete)'),
              ('io_uring_task_add', 'io_uring task work queued (io_uring_task_add)'),
              ('io_uring_local_work_run', 'io_uring deferred task work runs (io_uring_local_work_run)'),
              ('io_uring_cqring_wait', 'io_uring waits for CQEs (io_uring_cqring_wait)'),
              ('io_uring_poll_arm', 'io_uring internal poll armed (io_uring_poll_arm)')]


def log(msg):
    sys.stderr.write(msg + '\n')
    sys.stderr.flush()


def tracepoints(system, prefix=''):
    d = os.path.join(TRACEFS, 'events', system)
    try:
        return sorted(n for n in os.listdir(d) if n.startswith(prefix) and os.path.isdir(os.path.join(d, n)))
    except OSError:
        return []


def has_field(system, name, field):
    try:
        with open(os.path.join(TRACEFS, 'events', system, name, 'format')) as f:
            return re.search(r'field:[^;]*\b' + field + ';', f.read()) is not None
    except OSError:
        return False


def tids(pids):
    out = []
    for p in pids:
        try:
            out += [int(t) for t in os.listdir(f'/proc/{p}/task')]
        except OSError:
            pass
    return sorted(out)


def ctx_switches(pids):
    """(voluntary, involuntary) context switches summed over every thread of `pids`."""
    vol = invol = 0
    for p in pids:
        try:
            threads = os.listdir(f'/proc/{p}/task')
        except OSError:
            continue
        for t in threads:
            try:
                with open(f'/proc/{p}/task/{t}/status') as f:
                    for line in f:
                        if line.startswith('voluntary_ctxt_switches:'):
                            vol += int(line.split()[1])
                        elif line.startswith('nonvoluntary_ctxt_switches:'):
                            invol += int(line.split()[1])
            except OSError:
                pass
    return vol, invol


class Perf:
    """One `perf stat -x,` (or `perf record`) process over `specs` [(key, event, filter or None)],
    started with its counters disabled and switched on and off through its --control pipe. close()
    stops it on every path (SIGINT so it writes its output, SIGKILL to its group if it hangs)."""

    def __init__(self, specs, target, out_path, sub='stat'):
        self.specs, self.target, self.out_path, self.sub = specs, target, out_path, sub
        self.proc = None
        self.fds = []
        self.err_path = out_path + '.err'

    def start(self):
        ctl_r, ctl_w = os.pipe()
        ack_r, ack_w = os.pipe()
        self.fds = [ctl_w, ack_r]
        events = []
        for _, event, filt in self.specs:
            events += ['-e', event] + (['--filter', filt] if filt else [])
        # perf 6.1 record -p never turns on what -D -1 left off (the 'enable' command is acked but
        # records nothing), so perf record starts enabled, and its 'enable' ack only says "ready".
        mode = ['stat', '-x,', '--no-merge', '-D', '-1'] if self.sub == 'stat' else ['record', '-q']
        cmd = (['taskset', '-c', PERF_CPU, 'perf'] + mode + ['--control', f'fd:{ctl_r},{ack_w}',
                                                             '-o', self.out_path] + self.target + events)
        try:
            with open(self.err_path, 'w') as err:
                self.proc = subprocess.Popen(cmd, start_new_session=True, pass_fds=(ctl_r, ack_w),
                                             stdout=subprocess.DEVNULL, stderr=err)
        finally:
            os.close(ctl_r)
            os.close(ack_w)

    def command(self, word):
        os.write(self.fds[0], word.encode() + b'\n')
        end, got = time.time() + ACK_TIMEOUT, b''
        while b'ack' not in got:
            left = end - time.time()
            if left <= 0:
                raise RuntimeError(f'perf {self.sub} did not acknowledge {word!r} in {ACK_TIMEOUT:.0f} s')
            r, _, _ = select.select([self.fds[1]], [], [], left)
            if r:
                chunk = os.read(self.fds[1], 64)
                if not chunk:
                    raise RuntimeError(f'perf {self.sub} exited: {self.stderr()}')
                got += chunk

    def stderr(self):
        try:
            with open(self.err_path, errors='replace') as f:
                return f.read().strip()[-500:]
        except OSError:
            return 

    def finish(self):
        """Stop perf (it writes its output on SIGINT); perf stat: return {key: count or None}."""
        self.close()
        if self.proc.returncode not in (0, -signal.SIGINT, 130):
            raise RuntimeError(f'perf {self.sub} failed (rc={self.proc.returncode}): {self.stderr()}')
        return self.parse() if self.sub == 'stat' else None

    def parse(self):
        # -x, lines: value,unit,event,run time,percentage,... in the order of the -e options;
        # an event given more than once (one copy per filter) appears once per copy.
        queue = {}
        for key, event, _ in self.specs:
            queue.setdefault(event, []).append(key)
        counts = {}
        with open(self.out_path) as f:
            for line in f:
                if not line.strip() or line.startswith('#'):
                    continue
                fields = line.rstrip('\n').split(',')
                if len(fields) < 3 or not queue.get(fields[2]):
                    continue
                key = queue[fields[2]].pop(0)
                try:
                    counts[key] = int(float(fields[0]))
                except ValueError:          # <not counted>, <not supported>
                    counts[key] = None
        return counts

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGINT)
                self.proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


def sample_rings(bench, port, pids, duration, path):
    """The warm-up wrk run, with perf record of io_uring_submit_req in `pids` enabled for all of it:
    (ring addresses, {opcode: SQEs}). Empty for a proxy that does not use io_uring."""
    if 'io_uring_submit_req' not in tracepoints('io_uring'):     # a kernel without io_uring tracing
        bench.wrk(port, SCEN, duration)
        return [], {}
    rec = Perf([('sqe', 'io_uring:io_uring_submit_req', None)], ['-p', ','.join(map(str, pids))], path, 'record')
    try:
        rec.start()
        rec.command('enable')
        bench.wrk(port, SCEN, duration)
        rec.command('disable')
        rec.finish()
    finally:
        rec.close()
    out = subprocess.run(['perf', 'script', '-i', path, '-F', 'trace'], capture_output=True, text=True,
                         timeout=300).stdout
    rings = sorted(set(re.findall(r'ring (0x[0-9a-f]+)', out)))
    ops = {}
    for op in re.findall(r'opcode (\w+)', out):
        ops[op] = ops.get(op, 0) + 1
    return rings, ops


def measure(bench, name, args, work):
    """Warm-up + sample, clean run, counted run of one proxy; returns its record for kops.json."""
    rec = dict(proxy=name, label=RUN.PROXIES[name]['label'])
    proc, port = bench.start_proxy(name)
    perfs = []
    try:
        pids = RUN.proc_tree(proc.pid)
        # 1. warm-up, recording its SQEs (rings and opcodes).
        rings, ops = sample_rings(bench, port, pids, args.warmup, os.path.join(work, f'{name}-sqes.data'))
        rec.update(rings=rings, sampled_ops=ops)
        # 2. clean run: nothing attached.
        v0 = ctx_switches(pids)
        clean = bench.measure(name, proc, port, SCEN, 0, args.duration)
        v1 = ctx_switches(RUN.proc_tree(proc.pid))
        if 'error' in clean:
            raise RuntimeError(clean['error'])
        rec['clean'] = dict(requests=clean['requests'], rps=clean['rps'], us_per_req=clean['us_per_req'],
                            util=clean['util'], errors=clean['errors'] + clean['non2xx'],
                            voluntary=v1[0] - v0[0], involuntary=v1[1] - v0[1])
        # 3. counted run.
        pids = RUN.proc_tree(proc.pid)
        t_before = tids(pids)
        task_specs = [('raw_syscalls', 'raw_syscalls:sys_enter', None)]
        task_specs += [('sys:' + tp[len('sys_enter_'):], 'syscalls:' + tp, None)
                       for tp in tracepoints('syscalls', 'sys_enter_')]
        task_specs += [('uring:' + tp, 'io_uring:' + tp, None) for tp in tracepoints('io_uring')]
        task_specs += [('op:' + op, 'io_uring:io_uring_submit_req', f'op_str == "{op}"') for op in sorted(ops)]
        task_specs += [('cs', 'context-switches', None), ('migrations', 'cpu-migrations', None)]
        pid_filter = ' || '.join(f'pid == {t}' for t in t_before)
        sys_specs = [('wakeup', 'sched:sched_wakeup', pid_filter), ('waking', 'sched:sched_waking', pid_filter)]
        if rings:
            ring_filter = ' || '.join(f'ctx == {r}' for r in rings)
            sys_specs += [('ring:' + tp, 'io_uring:' + tp, ring_filter) for tp in tracepoints('io_uring')
                          if has_field('io_uring', tp, 'ctx')]
        a = Perf(task_specs, ['-p', ','.join(map(str, pids))], os.path.join(work, f'{name}-task.csv'))
        b = Perf(sys_specs, ['-a'], os.path.join(work, f'{name}-sys.csv'))
        perfs = [a, b]
        for p in perfs:
            p.start()
        for p in perfs:
            p.command('enable')
        v0, c0, t0 = ctx_switches(pids), RUN.cpu_ticks(pids), time.time()
        js, out = bench.wrk(port, SCEN, args.duration)
        c1, v1, wall = RUN.cpu_ticks(pids), ctx_switches(pids), time.time() - t0
        for p in perfs:
            p.command('disable')
        log(f'  {name}: stopping perf (closing ~{len(task_specs)} tracepoint counters takes a while)')
        task, system = a.finish(), b.finish()
        # ~360 syscall counters, most of them 0: kops.json keeps the ones that counted something.
        task = {k: v for k, v in task.items() if v or not k.startswith('sys:')}
        if js is None:
            raise RuntimeError('wrk printed no result: ' + out[-300:])
        t_after = tids(RUN.proc_tree(proc.pid))
        cpu_s = (c1 - c0) / RUN.TCK
        rec['counted'] = dict(requests=js['requests'], rps=js['requests'] / (js['duration_us'] / 1e6),
                              us_per_req=cpu_s * 1e6 / max(js['requests'], 1), util=cpu_s / wall,
                              errors=sum(js[k] for k in ('err_connect', 'err_read', 'err_write', 'err_timeout', 'non2xx')),
                              voluntary=v1[0] - v0[0], involuntary=v1[1] - v0[1],
                              tids=t_before, new_tids=sorted(set(t_after) - set(t_before)),
                              task=task, system=system)
        if proc.poll() is not None:
            raise RuntimeError(f'{name} exited (rc={proc.returncode})')
        return rec
    finally:
        for p in perfs:
            p.close()
        RUN.stop(proc)


def per_request(rec):
    """{row key: value per request} for one proxy's record (None = not measured)."""
    c = rec.get('counted')
    if not c:
        return {}
    n = max(c['requests'], 1)
    task, system = c['task'], c['system']

    def div(v):
        return None if v is None else v / n
    out = {'rps': rec['clean']['rps'], 'us_per_req': rec['clean']['us_per_req'],
           'us_per_req_counted': c['us_per_req'], 'rps_counted': c['rps'], 'requests': c['requests'],
           'threads': len(c['tids']), 'syscalls': div(task.get('raw_syscalls'))}
    for k, v in task.items():
        if k.startswith(('sys:', 'op:')):
            out[k] = div(v)
    for tp in tracepoints('io_uring'):
        # The ring-filtered system-wide count where there is one (all of the proxy's rings, in
        # whatever context), else the count in the proxy's threads.
        v = system.get('ring:' + tp, task.get('uring:' + tp))
        out['uring:' + tp] = div(v)
        out['uring_task:' + tp] = div(task.get('uring:' + tp))
    out['voluntary'] = div(c['voluntary'])
    out['involuntary'] = div(c['involuntary'])
    out['cs'] = div(task.get('cs'))
    out['migrations'] = div(task.get('migrations'))
    out['wakeup'] = div(system.get('wakeup'))
    out['waking'] = div(system.get('waking'))
    out['cs_clean'] = (rec['clean']['voluntary'] + rec['clean']['involuntary']) / max(rec['clean']['requests'], 1)
    return out


def num(v, digits=3):
    if v is None:
        return '–'
    if v == 0:
        return '0'
    if abs(v) < 10 ** -digits:
        return f'<{10 ** -digits:.{digits}f}'
    return f'{v:.{digits}f}'


def table(records, meta):
    names = [r['proxy'] for r in records]
    per = {r['proxy']: per_request(r) for r in records}
    ok = [n for n in names if per[n]]
    lines = [f'# Kernel operations per request, {SCEN} — {meta["date"]}', '',
             f'{RUN.SCENARIOS[SCEN]["what"]}; wrk -t1 on CPU 1 with the backend nginx, the proxy alone on CPU 0. '
             f'{meta["warmup"]} s warm-up, then a {meta["duration"]} s clean run (CPU, req/s) and a '
             f'{meta["duration"]} s counted run (perf stat enabled for exactly the wrk run); counts are per request '
             f'wrk completed in the counted run. Kernel {meta["kernel"]}, perf {meta["perf"]}. '
             'Syscalls, SQEs by opcode and context switches are counted in the proxy\'s threads; '
             'wake-ups and the io_uring rows are counted system-wide, filtered on the proxy\'s threads '
             '(wakee pid) and rings (ctx).', '',
             '| per request | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]

    def row(title, key, digits=3, fmt=None):
        cells = []
        for n in names:
            # kops.json keeps only the syscalls a proxy made: a missing one is 0.
            v = per[n].get(key, 0 if key.startswith('sys:') else None) if per[n] else None
            cells.append((fmt(v) if v is not None else '–') if fmt else num(v, digits))
        lines.append(f'| {title} | ' + ' | '.join(cells) + ' |')

    row('requests/s (clean run)', 'rps', fmt=lambda v: f'{v:.0f}')
    row('CPU-µs/request (clean run)', 'us_per_req', fmt=lambda v: f'{v:.2f}')
    row('CPU-µs/request with perf counting (overhead)', 'us_per_req_counted', fmt=lambda v: f'{v:.2f}')
    row('requests in the counted run', 'requests', fmt=lambda v: f'{v:d}')
    row('threads counted', 'threads', fmt=lambda v: f'{v:d}')
    row('**syscalls, total** (raw_syscalls:sys_enter)', 'syscalls')
    sys_keys = {k for n in ok for k, v in per[n].items() if k.startswith('sys:') and v and v >= SYSCALL_MIN}
    sys_keys = sorted(sys_keys, key=lambda k: (-max(per[n].get(k) or 0 for n in ok), k))
    for k in sys_keys:
        row(f'&nbsp;&nbsp;{k[4:]}', k)
    for n in ok:
        shown = sum(per[n].get(k) or 0 for k in sys_keys)
        per[n]['sys_other'] = (per[n]['syscalls'] or 0) - shown
    row(f'&nbsp;&nbsp;other syscalls (each < {SYSCALL_MIN} for every proxy)', 'sys_other')
    uring_shown = {tp for tp, _ in URING_ROWS}
    for tp, title in URING_ROWS:
        row(title, 'uring:' + tp)
        if tp == 'io_uring_submit_req':
            op_keys = sorted({k for n in ok for k in per[n] if k.startswith('op:')},
                             key=lambda k: (-max(per[n].get(k) or 0 for n in ok), k))
            for k in op_keys:
                row(f'&nbsp;&nbsp;{k[3:]}', k)
        if tp == 'io_uring_complete':
            for n in ok:
                a, b = per[n].get('uring:' + tp), per[n].get('uring_task:' + tp)
                per[n]['cqe_elsewhere'] = None if a is None or b is None else a - b
            row('&nbsp;&nbsp;of which posted outside the proxy\'s threads', 'cqe_elsewhere')
    for tp in tracepoints('io_uring'):
        if tp not in uring_shown and any(per[n].get('uring:' + tp) for n in ok):
            row(f'io_uring {tp}', 'uring:' + tp)
    row('context switches, voluntary (/proc status)', 'voluntary')
    row('context switches, involuntary (/proc status)', 'involuntary')
    row('context-switches (software event)', 'cs')
    row('context switches, clean run (/proc status, no perf)', 'cs_clean')
    row('wake-ups of the proxy (sched:sched_wakeup)', 'wakeup')
    row('wakings of the proxy (sched:sched_waking)', 'waking')
    row('cpu-migrations', 'migrations')
    lines.append('')
    notes = []
    for r in records:
        if 'error' in r:
            notes.append(f'- {r["proxy"]}: failed: {r["error"]}')
            continue
        c = r['counted']
        if c['new_tids']:
            notes.append(f'- {r["proxy"]}: threads {c["new_tids"]} appeared during the counted run '
                         '(perf inherits into them; the wake-up filter does not cover them)')
        if c['errors'] or r['clean']['errors']:
            notes.append(f'- {r["proxy"]}: wrk errors (clean run {r["clean"]["errors"]}, counted run {c["errors"]})')
        cs_proc, cs_perf = c['voluntary'] + c['involuntary'], c['task'].get('cs')
        if cs_perf is not None and abs(cs_perf - cs_proc) > max(0.1 * cs_proc, 0.002 * c['requests']):
            notes.append(f'- {r["proxy"]}: perf counted {cs_perf} context switches, /proc {cs_proc}: perf may have '
                         'missed threads')
        if r['rings'] and not c['system'].get('ring:io_uring_complete') and c['task'].get('uring:io_uring_complete'):
            notes.append(f'- {r["proxy"]}: the ring filter matched nothing; the io_uring rows are per-thread counts')
    notes.append('- Threads: perf `-p` opens every thread of the proxy\'s processes; its context-switches '
                 'count agrees with the /proc sums over all threads (checked per proxy; a mismatch is noted above).')
    notes.append('- Counting overhead: every counted event runs a tracepoint handler in the context that fires '
                 'it, mostly the proxy\'s, so its CPU-µs/request rises in the counted run (the row above); '
                 'the CPU figure is the clean run\'s. req/s in the clean run is capped by CPU 1 (wrk + backend) '
                 'when the proxy is not saturated.')
    lines += ['Notes:', ''] + notes
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--proxies', default=','.join(DEFAULT_PROXIES), help='comma list of run.py proxies (L7)')
    ap.add_argument('--duration', type=int, default=5, help='seconds per measured run (clean and counted)')
    ap.add_argument('--warmup', type=float, default=1.0, help='seconds of warm-up per proxy')
    ap.add_argument('--out', default=None, help='results directory (default bench/results/<UTC date-time>-kops)')
    ap.add_argument('--work', default=None, help='scratch directory (default: a new temp dir)')
    ap.add_argument('--ringway-bin', default=os.path.join(RUN.ROOT, 'target', 'release', 'ringway'))
    ap.add_argument('--ringway-config-extra', action='append',
                    help='TOML line added to ringway\'s [global] (repeatable), as run.py has')
    args = ap.parse_args()
    args.proxies = [p for p in args.proxies.split(',') if p]
    for p in args.proxies:
        if p not in RUN.PROXIES or not RUN.runs(p, SCEN):
            ap.error(f'{p} is not a proxy that runs {SCEN}')
    for tool in ('perf', 'nginx', 'haproxy', 'wrk', 'taskset'):
        if shutil.which(tool) is None:
            raise SystemExit(f'{tool} not found')
    if not tracepoints('syscalls', 'sys_enter_'):
        raise SystemExit(f'no syscall tracepoints under {TRACEFS}/events (tracefs mounted? root?)')
    if any(RUN.PROXIES[p]['kind'] == 'ringway' for p in args.proxies) and not os.path.exists(args.ringway_bin):
        raise SystemExit(f'{args.ringway_bin} not found: cargo build --release')
    now = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or os.path.join(HERE, 'results', now.strftime('%Y-%m-%dT%H%M%SZ') + '-kops')
    os.makedirs(out, exist_ok=True)
    args.scenarios = [SCEN]             # what run.Bench reads to decide which backends to start
    bench = RUN.Bench(args)
    work = tempfile.mkdtemp(prefix='ringway-kops-')
    perf_version = subprocess.run(['perf', 'version'], capture_output=True, text=True).stdout.split()[-1]
    meta = dict(date=now.strftime('%Y-%m-%d %H:%M UTC'), kernel=os.uname().release, perf=perf_version,
                cpus=os.cpu_count(), scenario=SCEN, duration=args.duration, warmup=args.warmup,
                proxies=args.proxies)
    records = []
    try:
        bench.start_backend()
        for i, name in enumerate(args.proxies):
            log(f'[{i + 1}/{len(args.proxies)}] {name}: warm-up {args.warmup} s, clean run {args.duration} s, '
                f'counted run {args.duration} s')
            try:
                records.append(measure(bench, name, args, work))
            except RuntimeError as e:
                log(f'  {name}: {e}')
                records.append(dict(proxy=name, label=RUN.PROXIES[name]['label'], error=str(e)))
    finally:
        RUN.stop(bench.backend)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(bench.work, ignore_errors=True)
    text = table(records, meta)
    with open(os.path.join(out, 'kops.json'), 'w') as f:
        json.dump(dict(meta=meta, proxies=records, per_request={r['proxy']: per_request(r) for r in records}),
                  f, indent=1)
    with open(os.path.join(out, 'kops.md'), 'w') as f:
        f.write(text + '\n')
    print(text)
    print(f'\nsaved: {out}/kops.md, kops.json')


if __name__ == '__main__':
    main()
