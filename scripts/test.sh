#!/usr/bin/env bash
# Runs Hearth's whole test suite: builds, provisions the engine and the default model (cached after the first
# run), then runs every test, integration tests with real llama-server included.
#
# A watchdog bounds the run (HEARTH_TEST_TIMEOUT seconds, 40 minutes by default): a suite that hangs fails, and
# prints the last output of the processes the tests started, instead of holding CI until its own limit.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== build"
swift build --build-tests
bin_dir="$(swift build --show-bin-path)"

echo "== engine and default model (cached in ${HEARTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth})"
"$bin_dir/hearth" engine install

echo "== second model (Gemma 3 270M, for the spot-check tests)"
HEARTH_SECOND_MODEL="$(scripts/second-model.sh)"
export HEARTH_SECOND_MODEL

echo "== tests"
# Each run's test folders live under one temporary root, so the watchdog knows whose output to show.
run_root="$(mktemp -d -t hearth-tests-XXXXXX)"
limit="${HEARTH_TEST_TIMEOUT:-2400}"
# The run's output is kept too: a long run's failures are summed up at its end, where a truncated CI log still shows them.
log="$run_root/swift-test.log"
set +e
# Swift Testing starts every test at once unless bounded: on two cores that was dozens of gateways, nodes and
# llama-servers together, and tests that wait a bounded time for something (a connection, an answer) waited behind
# all of them (a few loopback requests took 52 s in a full run beside a CPU hog). HEARTH_TEST_WIDTH tests run at once.
width="${HEARTH_TEST_WIDTH:-8}"
TMPDIR="$run_root/" HEARTH_BIN_DIR="$bin_dir" timeout --kill-after=30 "$limit" \
  swift test --skip-build --experimental-maximum-parallelization-width "$width" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "== what failed, in the order it was recorded"
  grep -E -A 2 "recorded an issue|Test .* failed after|caught error" "$log" | cut -c1-700 | head -n 120 || true
fi
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "== the suite did not finish within ${limit} s; the last stderr of the newest test processes:"
  find "$run_root" -name '*.stderr' -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -8 | while read -r _ file; do
    echo "--- $file"
    tail -n 40 "$file"
  done
fi
rm -rf "$run_root"
exit "$status"
