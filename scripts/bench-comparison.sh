#!/usr/bin/env bash
# Every comparison model on a default-size nlsy79 world, with fit times and oracle ratios
# (BENCHMARKS.md, "Comparison models"). Output folder: $1 (default bench-out/comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
out="${1:-bench-out/comparison}"
target/release/labor reproduce --preset benches/comparison-nlsy79.toml --out "$out"
