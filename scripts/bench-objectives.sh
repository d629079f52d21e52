#!/usr/bin/env bash
# Issue 27's table (BENCHMARKS.md, "Training objectives and calibration"): on the default nlsy79
# world, the from-scratch LM fine-tuned with each objective from one base (same data, epochs and
# learning rate), each scored raw and calibrated on valid, beside career-pretrained, all on the
# whole test split, in one report with paired intervals. Output: $1 (default bench-out).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
labor="$PWD/target/release/labor"
out="$(mkdir -p "${1:-bench-out}" && cd "${1:-bench-out}" && pwd)/objectives-default"
"$labor" reproduce --preset benches/objectives-default.toml --out "$out"
cd "$out"
panel=worlds/nlsy79/panel.parquet
raw=(preds/career-pretrained__nlsy79.parquet preds/lm-ft__nlsy79.parquet)
cal=(preds/career-pretrained__nlsy79.cal.parquet preds/lm-ft__nlsy79.cal.parquet)
for v in "labels:train.objective=\"labels\"" \
         "label-softmax:train.objective=\"label-softmax\"" \
         "label-softmax-text:train.objective=\"label-softmax\" train.text_loss_weight=0.1"; do
    name="lm-ft-${v%%:*}"
    # shellcheck disable=SC2086
    [ -d "runs/$name/final" ] || "$labor" train --config runs/lm-ft.toml --out "runs/$name" --restart ${v#*:}
    "$labor" score --model "runs/$name/best" --panel "$panel" --split test --split-seed 2406 \
        --template labor-v1 --name "$name" --out "preds/$name.parquet"
    "$labor" calibrate --model "runs/$name/best" --panel "$panel" --split-seed 2406 \
        --template labor-v1 --name "$name" --out "calibration/$name.json"
    "$labor" score --model "runs/$name/best" --panel "$panel" --split test --split-seed 2406 \
        --template labor-v1 --name "$name" --calibration "calibration/$name.json" \
        --out "preds/$name.cal.parquet"
    raw+=("preds/$name.parquet"); cal+=("preds/$name.cal.parquet")
done
"$labor" eval --preds "${raw[@]}" --calibrated "${cal[@]}" --oracle worlds/nlsy79/oracle.parquet \
    --panel "$panel" --bootstrap 1000 --out report-objectives
