#!/usr/bin/env bash
# Runs Herald locally on http://127.0.0.1:3000 (release build).
#
#   scripts/run.sh              one node
#   scripts/run.sh --nodes N    a cluster of N nodes (2-8) on ports 3000 to
#                               3000+N-1, one MongoDB and a local redis-server
#                               (port 6390, or a free port; no persistence)
#
# With HERALD_MONGO_URI set, Herald uses that MongoDB. Without it, a local
# SecantusDB keeps its data in .data/mongo (port 27117, or a free port when
# 27117 is taken) and is stopped when Herald exits. HERALD_SECRET,
# HERALD_TOKEN_SECRETS and HERALD_API_KEYS, when unset, are generated once and
# kept in .data/ (see README, "Send your first notification").
set -euo pipefail

# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HERALD_ROOT"

nodes=1
if [ "${1:-}" = "--nodes" ]; then
  nodes="${2:-}"
  if ! [[ "$nodes" =~ ^[1-8]$ ]]; then
    herald_die "--nodes takes a number from 1 to 8"
    exit 2
  fi
fi

herald_step "setup"
herald_setup

if [ -z "${HERALD_MONGO_URI:-}" ]; then
  trap herald_stop_mongo EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  port=27117
  # Something already answers on 27117 (perhaps another Herald's database): take a free port.
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    herald_log "127.0.0.1:$port is busy; letting SecantusDB pick a free port"
    port=0
  fi
  mkdir -p .data/mongo
  herald_step "SecantusDB (data in .data/mongo)"
  herald_start_mongo "$HERALD_ROOT/.data/mongo" "$port"
  export HERALD_MONGO_URI="$HERALD_MONGO_URL"
fi

# herald_dev_secret FILE BYTES: prints the random hex value kept in FILE
# (only the owner may read it), creating it with BYTES random bytes first.
herald_dev_secret() {
  mkdir -p .data
  if [ ! -s "$1" ]; then
    (umask 077 && od -An -tx1 -N"$2" /dev/urandom | tr -d ' \n' >"$1")
  fi
  cat "$1"
}

# Keys kept in .data/ unless set: the CSRF key, so that open pages' forms
# still work after a restart; the secret user tokens are signed with; the
# publish API's key. Only their paths are printed, never their values.
if [ -z "${HERALD_SECRET:-}" ]; then
  HERALD_SECRET="$(herald_dev_secret .data/herald-secret 32)"
  export HERALD_SECRET
fi
if [ -z "${HERALD_TOKEN_SECRETS:-}" ]; then
  HERALD_TOKEN_SECRETS="$(herald_dev_secret .data/herald-token-secret 32)"
  export HERALD_TOKEN_SECRETS
  herald_log "user tokens are signed with the secret in .data/herald-token-secret:"
  herald_log "  HERALD_TOKEN_SECRETS=\"\$(cat .data/herald-token-secret)\" target/release/herald token --sub 63 --name Alice"
fi
if [ -z "${HERALD_API_KEYS:-}" ]; then
  HERALD_API_KEYS="$(herald_dev_secret .data/herald-api-key 24)"
  export HERALD_API_KEYS
  herald_log "publish API key (Authorization: Bearer …): .data/herald-api-key"
fi

if [ "$nodes" = 1 ]; then
  herald_step "cargo leptos serve --release (http://127.0.0.1:3000)"
  # Not exec: the EXIT trap must stop SecantusDB once Herald exits.
  cargo leptos serve --release
  exit $?
fi

herald_step "cargo leptos build --release"
cargo leptos build --release

pids=()
herald_stop_cluster() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  herald_stop_mongo
}
trap herald_stop_cluster EXIT

redis_port=6390
if (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null; then
  redis_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
herald_step "redis-server on 127.0.0.1:$redis_port (no persistence)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --loglevel warning &
pids+=($!)

herald_step "$nodes nodes"
for ((n = 0; n < nodes; n++)); do
  port=$((3000 + n))
  HERALD_ADDR="127.0.0.1:$port" HERALD_NODE_ID="node-$n" HERALD_REDIS_URL="redis://127.0.0.1:$redis_port" \
    LEPTOS_OUTPUT_NAME=herald LEPTOS_SITE_ROOT=target/site target/release/herald &
  pids+=($!)
  herald_log "node-$n: http://127.0.0.1:$port"
done
# Until one of them exits (or Ctrl-C); then the EXIT trap stops the rest.
wait -n "${pids[@]}"
