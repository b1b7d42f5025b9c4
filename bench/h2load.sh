#!/usr/bin/env bash
# HTTP/2 over TLS, small responses: ringway vs nginx (`http2 on`) vs HAProxy (`alpn h2,http/1.1`),
# same run (nginx 1.22: `listen ... ssl http2`). Each proxy alone on CPU 0 (one shard / worker / thread), h2load and the nginx backend
# on CPU 1. Prints req/s and CPU-µs per request (utime+stime of the proxy's process tree from
# /proc/PID/stat, before/after) and p99 latency (from h2load's per-request log). Each peer runs
# twice: as bench/ configures it and as a new user would (minimal config). Usage:
# bench/h2load.sh [requests] [out-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
OUT=${2:-/tmp/ringway-h2load}
mkdir -p "$OUT"
BIN=${RINGWAY_BIN:-target/release/ringway}
CERT=$PWD/examples/certs/example.com.pem
KEY=$PWD/examples/certs/example.com.key
T=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$T"; }
trap cleanup EXIT
cat "$CERT" "$KEY" > "$T/haproxy.pem"
HZ=$(getconf CLK_TCK)

# Backend: nginx, one worker, on CPU 1.
cat > "$T/backend.conf" <<CONF
worker_processes 1; daemon off; error_log $T/be.err; pid $T/be.pid;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18101; location / { return 200 "hello\n"; } } }
CONF
taskset -c 1 nginx -c "$T/backend.conf" -p "$T" & pids+=($!)

cat > "$T/ringway.toml" <<CONF
[global]
shards = 1
[[listener]]
name = "https"
bind = "127.0.0.1:18443"
mode = "http"
backend = "app"
http2 = true
[listener.tls]
cert = "$CERT"
key = "$KEY"
[[backend]]
name = "app"
servers = [ { address = "127.0.0.1:18101" } ]
CONF
cat > "$T/nginx.conf" <<CONF
worker_processes 1; worker_cpu_affinity 01; daemon off; error_log $T/ng.err; pid $T/ng.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream app { server 127.0.0.1:18101; keepalive 64; }
  server { listen 127.0.0.1:18444 ssl http2; ssl_certificate $CERT; ssl_certificate_key $KEY;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
# nginx as a new user writes it: `http2` on the listener, a plain proxy_pass (no upstream
# keepalive, default keepalive_requests 1000: it closes each HTTP/2 connection after 1,000
# streams and h2load does not reconnect, so fewer requests are done).
cat > "$T/nginx-min.conf" <<CONF
worker_processes 1; worker_cpu_affinity 01; daemon off; error_log $T/ngm.err; pid $T/ngm.pid;
events { }
http { access_log off;
  server { listen 127.0.0.1:18446 ssl http2; ssl_certificate $CERT; ssl_certificate_key $KEY;
    location / { proxy_pass http://127.0.0.1:18101; } } }
CONF
# HAProxy as a new user writes it: the bind line and a server, default reuse (safe).
cat > "$T/haproxy-min.cfg" <<CONF
global
  nbthread 1
  cpu-map 1/1 0
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:18447 ssl crt $T/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:18101
CONF
cat > "$T/haproxy.cfg" <<CONF
global
  nbthread 1
  cpu-map 1/1 0
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:18445 ssl crt $T/haproxy.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:18101
CONF

ticks() { # utime+stime of a process and its threads' children
  local total=0
  for p in $(pgrep -P "$1") "$1"; do
    read -r -a f < "/proc/$p/stat"; total=$((total + f[13] + f[14]))
  done
  echo "$total"
}
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

run() { # name port pid
  local name=$1 port=$2 pid=$3
  wait_port "$port"
  taskset -c 1 h2load -n 2000 -c 10 -m 10 "https://127.0.0.1:$port/" > /dev/null 2>&1 || true
  local t0; t0=$(ticks "$pid")
  taskset -c 1 h2load -n "$N" -c 10 -m 10 --log-file="$T/$name.log" "https://127.0.0.1:$port/" \
    > "$OUT/$name.txt" 2>&1
  local t1; t1=$(ticks "$pid")
  local done rps
  done=$(grep -oP 'requests: \d+ total, \d+ started, \K\d+(?= done)' "$OUT/$name.txt")
  rps=$(grep -oP 'finished in [0-9.]+\w+, \K[0-9.]+(?= req/s)' "$OUT/$name.txt")
  local us; us=$(python3 -c "print(f'{($t1-$t0)/$HZ*1e6/$done:.2f}')")
  local ok; ok=$(grep -oP '\K\d+(?= 2xx)' "$OUT/$name.txt")
  local p99; p99=$(python3 - "$T/$name.log" <<'PY'
import sys
t = sorted(int(l.split('\t')[2]) for l in open(sys.argv[1]) if l.count('\t') >= 2)
print(f"{t[min(len(t) - 1, int(len(t) * 0.99))] / 1000:.2f}" if t else "-")
PY
)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$us" "$p99" "$done" "$ok" \
    | tee -a "$OUT/table.md"
}

printf '| proxy | req/s | CPU-µs/req | p99 ms | done | 2xx |\n|---|---|---|---|---|---|\n' \
  | tee "$OUT/table.md"
taskset -c 0 "$BIN" run -c "$T/ringway.toml" --allow-root > "$T/rw.log" 2>&1 & rw=$!; pids+=($rw)
run ringway 18443 "$rw"; kill "$rw"
taskset -c 0 nginx -c "$T/nginx.conf" -p "$T" & ng=$!; pids+=($ng)
sleep 0.5; run nginx 18444 "$(pgrep -P "$ng" | head -1)"; kill "$ng"
taskset -c 0 haproxy -f "$T/haproxy.cfg" & hp=$!; pids+=($hp)
run haproxy 18445 "$hp"; kill "$hp"
taskset -c 0 nginx -c "$T/nginx-min.conf" -p "$T" & ng=$!; pids+=($ng)
sleep 0.5; run nginx-minimal 18446 "$(pgrep -P "$ng" | head -1)"; kill "$ng"
taskset -c 0 haproxy -f "$T/haproxy-min.cfg" & hp=$!; pids+=($hp)
run haproxy-minimal 18447 "$hp"; kill "$hp"
