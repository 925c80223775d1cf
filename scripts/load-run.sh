#!/usr/bin/env bash
# Load run: the gateway with the full standard stack in front of a zero-delay simulated
# OpenAI upstream, versus that upstream called directly and through a bare pass-through
# proxy (crates/switchboard-gateway/examples/bare_proxy.rs: the floor for any gateway on
# this machine), over loopback, with wrk.
#
#   bash scripts/load-run.sh [duration_seconds]      (needs `wrk`: apt-get install wrk)
#   RUNTIME=work_stealing bash scripts/load-run.sh    (the gateway on tokio's multi-thread runtime)
#
# Prints wrk's summaries (c=1 and c=64: direct, bare proxy, gateway) and the gateway's resident
# memory idle and after the runs. The figures go into docs/benchmarks.md. The gateway runs
# with its default log filter unless RUST_LOG is set.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
duration="${1:-20}"
build --example bare_proxy
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start_upstream "$work" 19000
./target/release/examples/bare_proxy 127.0.0.1:19081 127.0.0.1:19000 > "$work/proxy.log" 2>&1 &
write_config "$work" 19080 19000
start_gateway "$work"
for port in 19000 19081 19080; do wait_ready "$port"; done
write_post_lua "$work"
cat > "$work/direct.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"model": "gpt-4o-mini", "max_tokens": 16, "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "Say this is a test"}]}'
LUA
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$1/status"; }
echo "gateway RSS idle: $(rss $gateway)"
curl -s -o /dev/null -w "sanity: gateway %{http_code}\n" http://127.0.0.1:19080/v1/chat/completions \
  -H 'content-type: application/json' -d '{"model": "fast", "messages": [{"role": "user", "content": "hi"}]}'
for c in 1 64; do
  threads=$(( c < 2 ? 1 : 2 ))
  echo "== direct upstream (streamed, as the gateway calls it), c=$c"
  wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s "$work/direct.lua" http://127.0.0.1:19000/v1/chat/completions
  echo "== through the bare pass-through proxy (the same streamed request), c=$c"
  wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s "$work/direct.lua" http://127.0.0.1:19081/v1/chat/completions
  echo "== through the gateway (non-streamed answer, full stack), c=$c"
  wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s "$work/post.lua" http://127.0.0.1:19080/v1/chat/completions
done
echo "gateway RSS after: $(rss $gateway)"
