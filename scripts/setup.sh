#!/usr/bin/env bash
# Herald's build and test prerequisites, installed into the repository.
#
#   scripts/setup.sh [--chromium]     install everything (chromium only with the flag)
#   source scripts/setup.sh           define the functions below and put the
#                                     tools on PATH; install nothing yet
#
# Every step checks first and skips itself when already done, so running this
# on every `scripts/test.sh` / `scripts/run.sh` costs about a second.
# It must work on a fresh Debian 12 machine as root with CI=true and no stdin;
# the only network it needs is the package registries (crates.io, npm, PyPI,
# Debian). Versions are the ones docs in ../shared/TOOLCHAIN.md found to work.

HERALD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

CARGO_LEPTOS_VERSION="0.3.11"
WASM_BINDGEN_VERSION="0.2.130" # must equal the `wasm-bindgen` crate pin in Cargo.toml
SECANTUSDB_VERSION="0.7.0b3"

HERALD_TOOLS="$HERALD_ROOT/.tools"
HERALD_MONGO_VENV="$HERALD_ROOT/.venv-mongo"
# Prebuilt CLIs for this machine kind, when the checkout sits beside shared/.
HERALD_SHARED_TOOLS="$(cd "$HERALD_ROOT/.." && pwd)/shared/tools/bin"

# node_modules/.bin goes ahead of /usr/bin: Debian's binaryen 108 `wasm-opt`
# silently produces a release wasm that never hydrates; npm's binaryen 132 works.
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"
PATH="$HERALD_TOOLS/bin:$HERALD_ROOT/end2end/node_modules/.bin:$PATH"
export PATH

herald_step() { printf '\n==> %s\n' "$*"; }
herald_log() { printf '    %s\n' "$*"; }
herald_die() { printf 'setup: error: %s\n' "$*" >&2; return 1; }

# Runs a command as root (directly, or through sudo when not root).
herald_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

herald_setup_wasm_target() {
  if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    return 0
  fi
  herald_log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown || return 1
}

# herald_tool_ok BIN "expected --version output"
herald_tool_ok() {
  [ -x "$1" ] && [ "$("$1" --version 2>/dev/null)" = "$2" ]
}

# herald_setup_tool NAME "expected --version" cargo-install-args...
herald_setup_tool() {
  local name="$1" want="$2"
  shift 2
  if herald_tool_ok "$HERALD_TOOLS/bin/$name" "$want"; then
    return 0
  fi
  mkdir -p "$HERALD_TOOLS/bin" || return 1
  if herald_tool_ok "$HERALD_SHARED_TOOLS/$name" "$want"; then
    herald_log "copying prebuilt $name from $HERALD_SHARED_TOOLS"
    install -m 0755 "$HERALD_SHARED_TOOLS/$name" "$HERALD_TOOLS/bin/$name" || return 1
  else
    herald_log "building $name with cargo install (takes a while)"
    cargo install "$@" --root "$HERALD_TOOLS" || return 1
  fi
  herald_tool_ok "$HERALD_TOOLS/bin/$name" "$want" ||
    herald_die "$name at $HERALD_TOOLS/bin is not '$want'"
}

herald_setup_build_tools() {
  # Its published lockfile pulls a crate that needs a newer rustc than 1.95,
  # hence --ignore-rust-version; LTO off keeps the build near 20 minutes.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    herald_setup_tool cargo-leptos "cargo-leptos $CARGO_LEPTOS_VERSION" \
    --locked --ignore-rust-version cargo-leptos --version "$CARGO_LEPTOS_VERSION" || return 1
  # Deliberately without --locked: its lockfile pins a crate the registry cannot serve.
  herald_setup_tool wasm-bindgen "wasm-bindgen $WASM_BINDGEN_VERSION" \
    wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
}

# Playwright, the node MongoDB driver and binaryen's wasm-opt (end2end/package.json).
herald_setup_npm() {
  local dir="$HERALD_ROOT/end2end"
  # Playwright 1.65 needs Node 20, the MongoDB driver 7 Node 20.19; Debian 12's
  # own nodejs is 18, so this is checked rather than installed.
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null; then
    herald_die "Node.js >= 20.19 with npm is required (found: $(node --version 2>/dev/null || echo none))"
    return 1
  fi
  if [ -f "$dir/node_modules/.package-lock.json" ] &&
    [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return 0
  fi
  herald_log "npm ci in end2end/"
  (cd "$dir" && npm ci --no-audit --no-fund) || return 1
  [ -x "$dir/node_modules/.bin/wasm-opt" ] || herald_die "npm did not provide wasm-opt"
}

# herald_apt_install BINARY PACKAGE: PACKAGE from Debian's archive unless
# BINARY is already there.
herald_apt_install() {
  local binary="$1" package="$2"
  [ -x "$binary" ] && return 0
  herald_log "installing $package with apt-get"
  local apt=(env TMPDIR=/var/tmp DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "$package")
  herald_as_root apt-get update </dev/null || return 1
  if ! herald_as_root "${apt[@]}" </dev/null; then
    herald_log "apt-get failed; repairing with dpkg --configure -a and retrying"
    herald_as_root env DEBIAN_FRONTEND=noninteractive dpkg --configure -a </dev/null || return 1
    herald_as_root "${apt[@]}" </dev/null || return 1
  fi
  [ -x "$binary" ] || herald_die "$package did not install"
}

# Debian's chromium for Playwright (never `npx playwright install`: it downloads
# a browser build from outside the registries).
herald_setup_chromium() {
  herald_apt_install /usr/bin/chromium chromium
}

# Debian's nginx, for the browser test of two nodes behind it
# (deploy/nginx/herald.conf). The test runs its own; the package's service
# is not used.
herald_setup_nginx() {
  herald_apt_install /usr/sbin/nginx nginx
}

# Debian's redis-server, for the cluster's tests and local clusters. Tests
# start their own servers (no persistence, a free port); the package's own
# service is not used.
herald_setup_redis() {
  herald_apt_install /usr/bin/redis-server redis-server
}

# SecantusDB, a MongoDB wire-protocol server, as the MongoDB of tests and local runs.
herald_setup_mongo() {
  local stamp="$HERALD_MONGO_VENV/.secantusdb-$SECANTUSDB_VERSION"
  [ -f "$stamp" ] && [ -x "$HERALD_MONGO_VENV/bin/python" ] && return 0
  herald_log "creating $HERALD_MONGO_VENV with secantusdb==$SECANTUSDB_VERSION"
  python3 -m venv "$HERALD_MONGO_VENV" || return 1
  "$HERALD_MONGO_VENV/bin/pip" install -q --disable-pip-version-check \
    "secantusdb==$SECANTUSDB_VERSION" || return 1
  touch "$stamp"
}

# herald_setup [--chromium]
herald_setup() {
  local chromium=0
  [ "${1:-}" = "--chromium" ] && chromium=1
  herald_setup_wasm_target || return 1
  herald_setup_build_tools || return 1
  herald_setup_npm || return 1
  if [ "$chromium" = 1 ]; then
    herald_setup_chromium || return 1
    herald_setup_nginx || return 1
  fi
  herald_setup_redis || return 1
  herald_setup_mongo || return 1
  herald_log "cargo-leptos $("$HERALD_TOOLS/bin/cargo-leptos" --version | cut -d' ' -f2)," \
    "wasm-bindgen $("$HERALD_TOOLS/bin/wasm-bindgen" --version | cut -d' ' -f2)," \
    "$(wasm-opt --version | cut -d' ' -f1-3)"
}

# --- SecantusDB process ------------------------------------------------------

HERALD_MONGO_PID=""
HERALD_MONGO_DIR=""

# herald_start_mongo STORAGE PORT
#   STORAGE: `:memory:` or a directory; PORT: a number, or 0 for a free port.
# Starts SecantusDB on 127.0.0.1 in the background, waits (at most 30 s) for
# its "secantus listening on 127.0.0.1:PORT" log line and sets
# HERALD_MONGO_PORT and HERALD_MONGO_URL. Stop it with herald_stop_mongo
# (callers set an EXIT trap).
herald_start_mongo() {
  local storage="$1" port="$2"
  mkdir -p "$HERALD_ROOT/.tmp" || return 1
  HERALD_MONGO_DIR="$(mktemp -d "$HERALD_ROOT/.tmp/mongo.XXXXXX")" || return 1
  local log="$HERALD_MONGO_DIR/secantus.log"
  # An empty config file rules out a stray ./secantusd.toml or ~/.secantus one.
  : >"$HERALD_MONGO_DIR/secantusd.toml"
  # The log exists before the background process opens it: polling it below
  # must not race the redirection (sed on a missing file failed CI once).
  : >"$log"
  # In-memory storage lives in a temp dir under $TMPDIR: keep it in .tmp/.
  TMPDIR="$HERALD_MONGO_DIR" "$HERALD_MONGO_VENV/bin/python" -m secantus \
    --host 127.0.0.1 --port "$port" --storage-path "$storage" \
    --config "$HERALD_MONGO_DIR/secantusd.toml" </dev/null >"$log" 2>&1 &
  HERALD_MONGO_PID=$!

  local i found=""
  for ((i = 0; i < 300; i++)); do
    found="$(sed -n 's/.*secantus listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n1 || true)"
    [ -n "$found" ] && break
    if ! kill -0 "$HERALD_MONGO_PID" 2>/dev/null; then
      break
    fi
    sleep 0.1 # polling a log file, bounded to 30 s in total
  done
  if [ -z "$found" ]; then
    printf 'setup: SecantusDB did not report a listening port within 30 s; its log:\n' >&2
    sed 's/^/    | /' "$log" >&2
    herald_stop_mongo
    return 1
  fi
  HERALD_MONGO_PORT="$found"
  HERALD_MONGO_URL="mongodb://127.0.0.1:$found/?serverSelectionTimeoutMS=5000"
  export HERALD_MONGO_PORT HERALD_MONGO_URL
  herald_log "SecantusDB (pid $HERALD_MONGO_PID, storage $storage) on 127.0.0.1:$found"
}

# Stops the SecantusDB started above: SIGTERM lets it remove its in-memory
# temp dir; after 15 s it gets SIGKILL and the dir is removed here.
herald_stop_mongo() {
  local pid="$HERALD_MONGO_PID" i
  HERALD_MONGO_PID=""
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1 # waiting for a process we started to exit, bounded to 15 s
    done
    if kill -0 "$pid" 2>/dev/null; then
      printf 'setup: SecantusDB (pid %s) ignored SIGTERM; killing it\n' "$pid" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  if [ -n "$HERALD_MONGO_DIR" ]; then
    rm -rf "$HERALD_MONGO_DIR"
    HERALD_MONGO_DIR=""
  fi
}

# Run directly: install. Sourced: only the definitions and PATH above.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  herald_step "setup"
  herald_setup "$@"
fi
