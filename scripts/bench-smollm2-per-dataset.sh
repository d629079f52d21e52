#!/usr/bin/env bash
# The cpu-smollm2 preset, then the same study with one SmolLM2 fine-tuned per survey as well
# (pooled vs single survey; BENCHMARKS.md, "`cpu-smollm2` end to end in its issue-28 shape").
# Both runs share one output folder, so the second reuses the first's stages. About 3 h on 2 cores.
# Output folder: $1 (default bench-out/cpu-smollm2). Needs `labor lm fetch smollm2` (or fetches it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
out="${1:-bench-out/cpu-smollm2}"
target/release/labor reproduce --preset cpu-smollm2 --out "$out"
rm -rf "$out/report-pooled-only" && cp -r "$out/report" "$out/report-pooled-only"
target/release/labor reproduce --preset benches/cpu-smollm2-per-dataset.toml --out "$out"
