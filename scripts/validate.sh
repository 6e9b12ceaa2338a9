#!/usr/bin/env bash
# Checks formatting with Hummingbird's .swift-format rules.
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files -z '*.swift' | xargs -0 swift format lint --strict --parallel
echo "format: ok"
