#!/usr/bin/env bash
# Runs every case of the HTTP/2 spike pinned to one CPU and writes the report that
# docs/design/h2.md quotes. Usage: spikes/h2/run.sh [CPU] (default 1). Needs only cargo.
set -euo pipefail
cd "$(dirname "$0")"
cpu="${1:-1}"
cargo build --release --quiet
bin=./target/release/h2-spike
echo "# $(date -u +%FT%TZ) $(uname -r) $(rustc --version)"
echo "# loadavg before: $(cat /proc/loadavg)"
for c in h2-tokio h2-manual own-ownhpack own-null own-httlib own-shiguredo own-loona shiguredo-conn; do
    taskset -c "$cpu" "$bin" "$c" --conns 10 --rounds 10 --reps 5 2>/dev/null
done
taskset -c "$cpu" "$bin" hpack --reps 5 2>/dev/null
taskset -c "$cpu" "$bin" mem 2>/dev/null
echo "# loadavg after: $(cat /proc/loadavg)"
