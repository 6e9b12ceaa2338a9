#!/usr/bin/env bash
# Fuzzes Hearth's parsers with libFuzzer and AddressSanitizer (see fuzz/README.md).
#   fuzz/run.sh list                      the targets
#   fuzz/run.sh TARGET [RUNS] [ARGS...]   fuzz one target for RUNS executions (default 10,000,000), growing
#                                         fuzz/TARGET/corpus; crashes go to fuzz/TARGET/crashes/
#   fuzz/run.sh seeds                     add every target's seeds (made by Hearth's own encoders) to its corpus
#   fuzz/run.sh merge TARGET              minimise fuzz/TARGET/corpus (keeps the inputs that add coverage)
# The build lives in .build-fuzz (release, -sanitize=fuzzer,address); the first one takes several minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
scratch="$root/.build-fuzz"
# Swift's runtime keeps metadata caches for the life of the process, which LeakSanitizer reports as leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"

build() {
    # Dead stripping would drop libFuzzer's coverage tables: without them it fuzzes blind.
    # SwiftPM hands swiftc each sanitizer as its own -sanitize= flag, in an order that changes from run to run (it
    # keeps them in a Set), and swiftc keeps only the last one: Swift code was built with coverage and no ASan, or
    # (more often) ASan and no coverage, which fuzzes the Swift parsers blind. One flag naming both, given last,
    # is what swiftc keeps.
    HEARTH_FUZZ=1 swift build --package-path "$root" --scratch-path "$scratch" -c release --product hearth-fuzz \
        --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address \
        --disable-dead-strip -Xlinker --no-gc-sections >&2
    binary="$scratch/release/hearth-fuzz"
}

# Two ways to fuzz blind were seen, and each still prints libFuzzer's "INITED cov:" (BoringSSL's C code has counters
# of its own), so count instead. (1) The Swift objects were compiled without coverage (the flag order above): the
# parsers' module must carry counters. (2) The link lost the Swift modules' counters (after clean builds, once after
# an incremental one; cured by recompiling the entry module and relinking): the binary's __sancov_cntrs section must
# hold at least 90 % of the objects'. Checked before every run.
ensure_coverage() {
    has_coverage() {
        local linked compiled parsers
        linked="$(size -A "$binary" | awk '$1 == "__sancov_cntrs" { print $2 }')"
        compiled="$(find "$scratch/release/" -name '*.o' -print0 | xargs -0 size -A 2>/dev/null |
            awk '$1 == "__sancov_cntrs" { s += $2 } END { print s + 0 }')"
        parsers="$(find "$scratch/release/HearthCore.build" -name '*.o' -print0 | xargs -0 size -A 2>/dev/null |
            awk '$1 == "__sancov_cntrs" { s += $2 } END { print s + 0 }')"
        echo "coverage counters: $linked linked of $compiled compiled, $parsers in HearthCore" >&2
        if [ "$parsers" -eq 0 ]; then
            echo "HearthCore was compiled without coverage: swiftc did not get -sanitize=fuzzer last" >&2
            exit 1
        fi
        [ $((linked * 10)) -ge $((compiled * 9)) ]
    }
    has_coverage && return
    echo "hearth-fuzz lacks the Swift modules' coverage counters; relinking" >&2
    touch "$here/Sources/hearth-fuzz/Entry.swift"
    build
    has_coverage || { echo "hearth-fuzz still lacks coverage counters; not fuzzing blind" >&2; exit 1; }
}

max_len() { if [ "$1" = gguf ]; then echo 4000000; else echo 8192; fi; }

case "${1:-}" in
list)
    ls -d "$here"/*/corpus | xargs -n1 dirname | xargs -n1 basename
    ;;
seeds)
    build
    seeds="$(mktemp -d)"
    trap 'rm -rf "$seeds"' EXIT
    HEARTH_FUZZ_SEEDS="$seeds" "$binary" || true
    for dir in "$seeds"/*/; do
        target="$(basename "$dir")"
        mkdir -p "$here/$target/corpus"
        HEARTH_FUZZ_TARGET="$target" "$binary" -merge=1 -max_len="$(max_len "$target")" "$here/$target/corpus" "$dir"
    done
    ;;
merge)
    target="${2:?usage: fuzz/run.sh merge TARGET}"
    build
    merged="$(mktemp -d)"
    trap 'rm -rf "$merged"' EXIT
    HEARTH_FUZZ_TARGET="$target" "$binary" -merge=1 -max_len="$(max_len "$target")" "$merged" "$here/$target/corpus"
    rm -f "$here/$target/corpus"/*
    cp "$merged"/* "$here/$target/corpus/"
    ;;
"" | -h | --help)
    sed -n '2,9p' "$0"
    ;;
*)
    target="$1"
    runs="${2:-10000000}"
    shift $(($# < 2 ? $# : 2))
    build
    mkdir -p "$here/$target/corpus" "$here/$target/crashes"
    ensure_coverage
    HEARTH_FUZZ_TARGET="$target" "$binary" "$here/$target/corpus" -runs="$runs" -max_len="$(max_len "$target")" \
        -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$here/$target/crashes/" -print_final_stats=1 "$@"
    ;;
esac
