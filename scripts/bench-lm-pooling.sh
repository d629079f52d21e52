#!/usr/bin/env bash
# Pooled vs single-survey fine-tuning and titles vs numeric codes on the three default-size
# surveys (BENCHMARKS.md, "Pooling and titles vs codes"). Output folder: $1 (default bench-out/lm-pooling).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
out="${1:-bench-out/lm-pooling}"
target/release/labor reproduce --preset benches/lm-pooling.toml --out "$out"
