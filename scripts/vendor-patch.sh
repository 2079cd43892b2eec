#!/usr/bin/env bash
# Writes vendor/herald.patch: the difference between each crate kept in
# vendor/ and its published release (vendor/README.md).
#
#   scripts/vendor-patch.sh          rewrite vendor/herald.patch
#   scripts/vendor-patch.sh --check  exit 1 when vendor/herald.patch is stale
#
# The releases come from cargo's registry cache, which `cargo fetch` fills
# from crates.io when they are not there yet.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
crates=("engineioxide 0.17.9" "engineioxide-core 0.2.3")

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/a" "$work/b"
for entry in "${crates[@]}"; do
  read -r name version <<<"$entry"
  archive="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -1 || true)"
  if [ -z "$archive" ]; then
    # A throwaway manifest that depends on the release, so cargo downloads it.
    mkdir -p "$work/fetch/src"
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n' \
      "$name" "$version" >"$work/fetch/Cargo.toml"
    : >"$work/fetch/src/lib.rs"
    cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml"
    archive="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" | head -1)"
  fi
  tar -xzf "$archive" -C "$work"
  mkdir -p "$work/a/$name" "$work/b/$name"
  cp -r "$work/$name-$version/src" "$work/$name-$version/Cargo.toml" "$work/a/$name/"
  cp -r "vendor/$name/src" "vendor/$name/Cargo.toml" "$work/b/$name/"
done
(cd "$work" && git diff --no-index --no-prefix a b >patch || true)
# Paths relative to vendor/: a/engineioxide/src/... -> engineioxide/src/...
sed -e 's#^\(diff --git \)a/\([^ ]*\) b/#\1\2 #' -e 's#^--- a/#--- #' -e 's#^+++ b/#+++ #' "$work/patch" >"$work/herald.patch"
if [ "${1:-}" = --check ]; then
  if ! cmp -s "$work/herald.patch" vendor/herald.patch; then
    echo "vendor/herald.patch is stale: run scripts/vendor-patch.sh" >&2
    exit 1
  fi
  exit 0
fi
cp "$work/herald.patch" vendor/herald.patch
echo "wrote vendor/herald.patch ($(grep -c '^diff' vendor/herald.patch) files)"
