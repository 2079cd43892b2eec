#!/usr/bin/env bash
# Runs Herald locally on http://127.0.0.1:3000 (release build).
#
# With HERALD_MONGO_URI set, Herald uses that MongoDB. Without it, a local
# SecantusDB keeps its data in .data/mongo (port 27117, or a free port when
# 27117 is taken) and is stopped when Herald exits.
set -euo pipefail

# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HERALD_ROOT"

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

# A CSRF key kept in .data/ so that open pages' forms still work after a restart.
if [ -z "${HERALD_SECRET:-}" ]; then
  mkdir -p .data
  if [ ! -s .data/herald-secret ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >.data/herald-secret)
  fi
  HERALD_SECRET="$(cat .data/herald-secret)"
  export HERALD_SECRET
fi

herald_step "cargo leptos serve --release (http://127.0.0.1:3000)"
# Not exec: the EXIT trap must stop SecantusDB once Herald exits.
cargo leptos serve --release
