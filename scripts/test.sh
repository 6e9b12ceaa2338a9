#!/usr/bin/env bash
# Runs Hearth's whole test suite: builds, provisions the engine and the default model (cached after the first
# run), then runs every test, integration tests with real llama-server included.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== build"
swift build --build-tests
bin_dir="$(swift build --show-bin-path)"

echo "== engine and default model (cached in ${HEARTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth})"
"$bin_dir/hearth" engine install

echo "== tests"
HEARTH_BIN_DIR="$bin_dir" swift test --skip-build "$@"
