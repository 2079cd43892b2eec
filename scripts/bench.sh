#!/usr/bin/env bash
# Herald's load benchmark: each scenario against a freshly started Herald
# (with a fresh database) and a freshly started bare socketioxide server (the
# floor, bench/src/bin/floor.rs), one tokio thread each, from one
# load-generator thread (herald-bench), side by side in one run.
#
#   scripts/bench.sh            every scenario (a few minutes on 2 cores)
#   scripts/bench.sh idle       one scenario by name: idle, fanout, burst, chat, join-storm,
#                               cross-node
#
# cross-node runs two Herald nodes of a cluster over a redis-server of its own
# (no persistence): 1,000 subscribers in one room on each, sends on one node;
# it reports the other node's delivery latency beside the sender's node's (the
# floor of that run: the same sends without the Redis hop) and Redis's
# commands per message, at 100 sends/s (saturating these 2 cores) and at 20/s.
# Prints a table with Herald/floor ratios (README, "Benchmark") and keeps the
# raw results, one JSON line per run, in target/bench/results-<time>.jsonl.
set -euo pipefail

# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HERALD_ROOT"

only="${1:-}"
herald_step "setup and release builds"
herald_setup
cargo build --release -p bench
cargo leptos build --release
# 5,000 clients and their 5,000 server ends, in one machine.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 12000 ]; then
  herald_die "the open-file limit is $(ulimit -n); the benchmark needs 12000 (ulimit -n)"
fi

trap 'herald_stop_server; herald_stop_cluster; herald_stop_mongo' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
herald_start_mongo :memory: 0

mkdir -p target/bench
results="target/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
api_key="bench-api-key-0123456789"
server_pid=""
server_url=""

herald_stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}

# herald_start_server floor|herald: starts it on a free port, sets
# server_pid and server_url once it listens.
herald_start_server() {
  local kind="$1" log="target/bench/$1.log" i
  : >"$log"
  case "$kind" in
    floor) TOKIO_WORKER_THREADS=1 target/release/bench-floor 127.0.0.1:0 >"$log" 2>&1 & ;;
    herald)
      env -i PATH="$PATH" TOKIO_WORKER_THREADS=1 RUST_LOG=warn,herald=info \
        HERALD_ADDR=127.0.0.1:0 HERALD_MONGO_URI="$HERALD_MONGO_URL" \
        HERALD_MONGO_DB="bench_$(date +%s%N)" HERALD_API_KEYS="$api_key" \
        HERALD_SECRET="bench-secret-bench-secret-bench-secret" \
        HERALD_CONNECTIONS_PER_IP=0 HERALD_TCP_CONNECTIONS_PER_IP=0 HERALD_HANDSHAKES_PER_IP=0 \
        HERALD_PUBLISH_RATE=0 HERALD_SEND_RATE=0 HERALD_EVENT_RATE=0 LEPTOS_OUTPUT_NAME=herald LEPTOS_SITE_ROOT=target/site \
        target/release/herald >"$log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for ((i = 0; i < 200; i++)); do
    server_url="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | cut -d' ' -f3 || true)"
    [ -n "$server_url" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1 # polling a log file for the line a process we started prints, bounded to 20 s
  done
  cat "$log" >&2
  herald_die "$kind did not start"
}

# bench SCENARIO ARGS...: the scenario against the floor, then Herald.
bench() {
  local scenario="$1"
  shift
  if [ -n "$only" ] && [ "$only" != "$scenario" ]; then return 0; fi
  for kind in floor herald; do
    herald_start_server "$kind"
    herald_log "$scenario $* against $kind ($server_url)"
    target/release/herald-bench run --target "$server_url" --server "$kind" --pid "$server_pid" \
      --scenario "$scenario" --api-key "$api_key" --out "$results" "$@" >/dev/null
    herald_stop_server
  done
}

cluster_pids=()
herald_stop_cluster() {
  local pid
  for pid in "${cluster_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${cluster_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  cluster_pids=()
}

# bench_cross_node ARGS...: a redis-server and two Herald nodes (one tokio
# thread each) over one database, then the cross-node scenario.
bench_cross_node() {
  if [ -n "$only" ] && [ "$only" != cross-node ]; then return 0; fi
  local redis_port db urls=() n log url i
  redis_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --loglevel warning \
    >target/bench/redis.log 2>&1 &
  cluster_pids+=($!)
  db="bench_$(date +%s%N)"
  for n in 0 1; do
    log="target/bench/node-$n.log"
    env -i PATH="$PATH" TOKIO_WORKER_THREADS=1 RUST_LOG=warn,herald=info \
      HERALD_ADDR=127.0.0.1:0 HERALD_MONGO_URI="$HERALD_MONGO_URL" HERALD_MONGO_DB="$db" \
      HERALD_REDIS_URL="redis://127.0.0.1:$redis_port" HERALD_NODE_ID="node-$n" \
      HERALD_API_KEYS="$api_key" HERALD_SECRET="bench-secret-bench-secret-bench-secret" \
      HERALD_CONNECTIONS_PER_IP=0 HERALD_TCP_CONNECTIONS_PER_IP=0 HERALD_HANDSHAKES_PER_IP=0 \
      HERALD_PUBLISH_RATE=0 HERALD_SEND_RATE=0 HERALD_EVENT_RATE=0 LEPTOS_OUTPUT_NAME=herald LEPTOS_SITE_ROOT=target/site \
      target/release/herald >"$log" 2>&1 &
    cluster_pids+=($!)
    url=""
    for ((i = 0; i < 200; i++)); do
      url="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | cut -d' ' -f3 || true)"
      [ -n "$url" ] && break
      sleep 0.1 # polling a log file for the line a process we started prints, bounded to 20 s
    done
    [ -n "$url" ] || { cat "$log" >&2; herald_die "node-$n did not start"; }
    urls+=("$url")
  done
  herald_log "cross-node $* (${urls[0]} sends, ${urls[1]} listens too; redis 127.0.0.1:$redis_port)"
  target/release/herald-bench run --target "${urls[0]}" --peer "${urls[1]}" --redis "127.0.0.1:$redis_port" \
    --server herald --pid "${cluster_pids[1]}" --scenario cross-node --api-key "$api_key" --out "$results" "$@" \
    >/dev/null
  herald_stop_cluster
}

herald_step "scenarios"
bench idle --subscribers 5000 --hold 2s
for subscribers in 100 1000 5000; do
  bench fanout --subscribers "$subscribers" --messages 200 --rate 100
done
bench burst --subscribers 1000 --messages 200
bench chat --subscribers 1000 --messages 200 --rate 100
bench join-storm --subscribers 2000 --messages 500
bench_cross_node --subscribers 1000 --messages 200 --rate 100
bench_cross_node --subscribers 1000 --messages 100 --rate 20

herald_step "results (raw: $results)"
target/release/herald-bench report "$results"
