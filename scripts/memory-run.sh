#!/usr/bin/env bash
# Memory under sustained load: the release gateway (full stack, budget on) in front of the
# zero-delay simulated upstream, wrk for DURATION seconds at concurrency C, and the
# gateway's resident memory sampled every 30 s.
#
#   bash scripts/memory-run.sh [duration_seconds=600] [concurrency=32]   (needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-600}"
conns="${2:-32}"
cargo build --release -q -p switchboard-sim --example serve -p switchboard-gateway --bin switchboard
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
./target/release/examples/serve 127.0.0.1:19100 > "$work/upstream.log" 2>&1 &
cat > "$work/switchboard.toml" <<TOML
[server]
listen = "127.0.0.1:19180"
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:19100/v1"
api_key = "sk-load"
[routing]
providers = ["openai"]
models.fast = { openai = "gpt-4o-mini" }
[budget]
global_per_minute = "1000000"
TOML
RUST_LOG=warn ./target/release/switchboard serve --config "$work/switchboard.toml" > "$work/gateway.log" 2>&1 &
gateway=$!
sleep 1
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"model": "fast", "max_tokens": 16, "messages": [{"role": "user", "content": "Say this is a test"}]}'
LUA
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
