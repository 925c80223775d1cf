#!/usr/bin/env bash
# Memory under sustained load: the release gateway (full stack, budget on) in front of the
# zero-delay simulated upstream, wrk for DURATION seconds at concurrency C, and the
# gateway's resident memory sampled every 30 s.
#
#   bash scripts/memory-run.sh [duration_seconds=600] [concurrency=32]   (needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
duration="${1:-600}"
conns="${2:-32}"
build
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
start_upstream "$work" 19100
write_config "$work" 19180 19100
start_gateway "$work" env RUST_LOG=warn
for port in 19100 19180; do wait_ready "$port"; done
write_post_lua "$work"
rss() { awk '/VmRSS/ {print $2}' "/proc/$gateway/status"; }
echo "t_s rss_kB"
echo "0 $(rss)"
wrk -t2 -c"$conns" -d"${duration}s" -s "$work/post.lua" http://127.0.0.1:19180/v1/chat/completions > "$work/wrk.txt" &
load=$!
t=0
while kill -0 "$load" 2>/dev/null; do
  sleep 30
  t=$((t + 30))
  echo "$t $(rss)"
done
sleep 5
echo "after load, idle: $(rss)"
cat "$work/wrk.txt"
