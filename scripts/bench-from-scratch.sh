#!/usr/bin/env bash
# A from-scratch LM trained on CPU for under 10 minutes, scored against the exact oracle
# (BENCHMARKS.md, "From scratch"). Usage: scripts/bench-from-scratch.sh [OUT] [WORKERS] [PERSONS]
# OUT: output folder (default bench-out/from-scratch); WORKERS: size of the nlsy79 world
# (default 40000); PERSONS: test persons scored (default 0 = the whole test split).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
out="${1:-bench-out/from-scratch}"
workers="${2:-40000}"
persons="${3:-0}"
labor=target/release/labor
mkdir -p "$out"
if [ ! -f "$out/world/panel.parquet" ]; then
  "$labor" synth --world nlsy79 --seed 5 --workers "$workers" --out "$out/world"
fi
rm -rf "$out/run"
start=$(date +%s)
"$labor" train --config benches/from-scratch-nlsy79.toml --out "$out/run" \
  "data.panels=[\"$out/world/panel.parquet\"]"
echo "training took $(( $(date +%s) - start )) s"
limit=()
if [ "$persons" != 0 ]; then limit=(--limit "$persons"); fi
"$labor" score --model "$out/run/best" --panel "$out/world/panel.parquet" --split test \
  "${limit[@]}" --out "$out/lm.parquet"
"$labor" eval --preds "$out/lm.parquet" --oracle "$out/world/oracle.parquet" --bootstrap 1000 \
  --out "$out/report"
