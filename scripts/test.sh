#!/usr/bin/env bash
# Herald's whole check, as CI runs it (.ci/run): setup, formatting, lints,
# unit and integration tests against SecantusDB, the release build, and the
# Playwright browser tests against that build. Stops at the first failure.
set -euo pipefail

# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$HERALD_ROOT"

# SecantusDB is started once and shared: every cargo integration test and
# every Playwright test makes its own database in it.
trap herald_stop_mongo EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

herald_step "1/6 setup"
herald_setup --chromium
# A fresh checkout gains nothing from incremental state, and it takes gigabytes.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
herald_log "disk: $(df -h --output=avail "$HERALD_ROOT" | tail -1 | tr -d ' ') free"

herald_step "2/6 cargo fmt --all --check, and vendor/ is its releases plus vendor/herald.patch"
cargo fmt --all --check
scripts/vendor-patch.sh --check

# Never --workspace: the app crate's `ssr` and `hydrate` features must not be
# unified into one build, so the server side and the wasm side are linted apart.
herald_step "3/6 cargo clippy (server side, then wasm frontend)"
cargo clippy -p herald -p app -p server -p bench --all-targets -- -D warnings
cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

herald_step "4/6 cargo test (against SecantusDB)"
herald_start_mongo :memory: 0
export HERALD_TEST_MONGO_URI="$HERALD_MONGO_URL"
cargo test -p herald -p app -p server

herald_step "5/6 cargo leptos build --release"
# The release build needs about 2 GB more. Where the disk is that short, the
# debug build (already tested) makes room; otherwise it stays for the next run.
if [ "$(df -k --output=avail "$HERALD_ROOT" | tail -1)" -lt $((4 * 1024 * 1024)) ]; then
  herald_log "less than 4 GB free: removing the debug build to make room"
  rm -rf "$HERALD_ROOT/target/debug"
fi
cargo leptos build --release

herald_step "6/6 playwright (end2end/)"
# A fresh SecantusDB: its operations slow down as databases pile up, and the
# fault tests (a thousand messages through a crash) are timing-sensitive.
herald_stop_mongo
herald_start_mongo :memory: 0
export HERALD_TEST_MONGO_URI="$HERALD_MONGO_URL"
(cd end2end && npx --no-install playwright test)
