#!/usr/bin/env bash
# Fuzzes the GGUF header reader with libFuzzer and AddressSanitizer.
#   fuzz/run-gguf.sh [SECONDS]   (default 600)
# The corpus in fuzz/gguf/corpus grows in place; crashes are written to fuzz/gguf/crashes/.
# The seed corpus holds the real SmolLM2 header and small hand-made files; add the header of any GGUF with
#   head -c 2000000 model.gguf > fuzz/gguf/corpus/name
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
seconds="${1:-600}"
out="$root/.build/fuzz"
mkdir -p "$out" "$here/gguf/corpus" "$here/gguf/crashes"
swiftc -sanitize=fuzzer,address -parse-as-library -O \
    "$root/Sources/HearthCore/Models/GGUF.swift" "$here/gguf/FuzzGGUF.swift" -o "$out/fuzz-gguf"
"$out/fuzz-gguf" "$here/gguf/corpus" -max_total_time="$seconds" -max_len=4000000 -rss_limit_mb=2048 \
    -artifact_prefix="$here/gguf/crashes/" -print_final_stats=1
