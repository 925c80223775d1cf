# Set-up shared by the run scripts (load-run.sh, memory-run.sh, instr-run.sh); sourced from
# the repository root, not run. Each script keeps its own ports, work directory and trap.

# build [cargo args...]: the release simulated upstream and gateway (plus anything named).
build() {
  cargo build --release -q -p switchboard-sim --example serve -p switchboard-gateway --bin switchboard "$@"
}

# start_upstream DIR PORT: the zero-delay simulated OpenAI upstream, in the background.
start_upstream() {
  ./target/release/examples/serve "127.0.0.1:$2" > "$1/upstream.log" 2>&1 &
}

# write_config DIR LISTEN_PORT UPSTREAM_PORT: DIR/switchboard.toml, the full standard stack
# with one OpenAI provider (the upstream) and a budget too large to refuse anything; the
# server runtime is $RUNTIME when set (thread_per_core, the default, or work_stealing).
write_config() {
  cat > "$1/switchboard.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
runtime = "${RUNTIME:-thread_per_core}"
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:$3/v1"
api_key = "sk-load"
[routing]
providers = ["openai"]
models.fast = { openai = "gpt-4o-mini" }
[budget]
global_per_minute = "1000000"
TOML
}

# start_gateway DIR [wrapper...]: the gateway on DIR/switchboard.toml in the background, run
# through the wrapper if given (`env RUST_LOG=warn`, valgrind); sets $gateway to its pid.
start_gateway() {
  local dir="$1"
  shift
  "$@" ./target/release/switchboard serve --config "$dir/switchboard.toml" > "$dir/gateway.log" 2>&1 &
  gateway=$!
}

# wait_ready PORT: until the server on PORT answers HTTP (/healthz, any status; up to a
# minute: under valgrind the gateway starts slowly); fails if it never does.
wait_ready() {
  for _ in $(seq 1 120); do
    curl -s -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
    sleep 0.5
  done
  echo "nothing answered on port $1" >&2
  return 1
}

# write_post_lua DIR: DIR/post.lua, wrk's non-streamed request to the gateway.
write_post_lua() {
  cat > "$1/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"model": "fast", "max_tokens": 16, "messages": [{"role": "user", "content": "Say this is a test"}]}'
LUA
}
