#!/usr/bin/env bash
# Instructions per request: the gateway (full standard stack, as in load-run.sh) under
# callgrind, in front of a zero-delay simulated OpenAI upstream, over loopback. Counts only
# the measured requests (collection is switched on after a warm-up), so the figure is
# independent of machine load; use it for A/B decisions, wall-clock figures for targets.
#
#   bash scripts/instr-run.sh [requests] [connections]    (needs valgrind and python3)
#
# Prints instructions per request; leaves callgrind.out in $OUT (default /tmp/switchboard-instr)
# for `callgrind_annotate --inclusive=yes $OUT/callgrind.out`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
requests="${1:-2000}"
connections="${2:-4}"
out="${OUT:-/tmp/switchboard-instr}"
mkdir -p "$out"
build
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

start_upstream "$out" 19100
write_config "$out" 19180 19100
rm -f "$out"/callgrind.out*
start_gateway "$out" valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$out/callgrind.out"
wait_ready 19180
client() {
  python3 - "$1" "$connections" <<'PY'
import http.client, sys, threading
n, c = int(sys.argv[1]), int(sys.argv[2])
body = b'{"model": "fast", "max_tokens": 16, "messages": [{"role": "user", "content": "Say this is a test"}]}'
bad = []
def run(k):
    conn = http.client.HTTPConnection("127.0.0.1", 19180)
    for _ in range(k):
        conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        r = conn.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
ts = [threading.Thread(target=run, args=(n // c,)) for _ in range(c)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad: sys.exit(f"non-200 answers: {bad[:5]}")
PY
}
client 200
callgrind_control -i on "$gateway" > /dev/null 2>&1
client "$requests"
callgrind_control -i off "$gateway" > /dev/null 2>&1
callgrind_control -d "$gateway" > /dev/null 2>&1
kill "$gateway"; wait "$gateway" 2>/dev/null || true
file=$(ls -S "$out"/callgrind.out* | head -1)
total=$(awk '/^totals:/ {print $2}' "$file")
measured=$(( requests / connections * connections ))
echo "requests: $measured  instructions: $total  per request: $(( total / measured ))"
echo "profile: $file"
