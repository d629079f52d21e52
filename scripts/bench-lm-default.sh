#!/usr/bin/env bash
# The fine-tuned LM beside every comparison model on the default-size nlsy79 world, paired
# intervals in one report (BENCHMARKS.md, "Default world: the fine-tuned LM"). Output folder: $1 (default bench-out/lm-default).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
out="${1:-bench-out/lm-default}"
target/release/labor reproduce --preset benches/lm-default.toml --out "$out"
