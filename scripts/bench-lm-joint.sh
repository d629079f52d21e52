#!/usr/bin/env bash
# The default nlsy79 world's table with the pooled LM beside every single-survey model, in one
# evaluation with paired intervals (BENCHMARKS.md, "Default world"). Runs (or reuses) the two
# benchmark presets, then on the nlsy79 test split:
#   - lm-ft-pooled: the LM of benches/lm-pooling.toml (fine-tuned on nlsy79 + nlsy97 + psid),
#     scored under its own name;
#   - career-pooled-pretrained: CAREER given the same extra data, i.e. pre-trained on the
#     resumes + nlsy97 + psid panels, then fine-tuned on nlsy79;
# and `labor eval` over every prediction file. Output: $1 (default bench-out), report in
# $1/lm-joint/report.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
labor="$PWD/target/release/labor"
out="$(mkdir -p "${1:-bench-out}" && cd "${1:-bench-out}" && pwd)"
"$labor" reproduce --preset benches/lm-default.toml --out "$out/lm-default"
"$labor" reproduce --preset benches/lm-pooling.toml --out "$out/lm-pooling"
j="$out/lm-joint"
mkdir -p "$j"
def="$out/lm-default" pool="$out/lm-pooling"
panel="$def/worlds/nlsy79/panel.parquet"
"$labor" score --model "$pool/runs/lm-ft/best" --panel "$panel" --split test --split-seed 2406 \
  --template labor-v1 --name lm-ft-pooled --out "$j/lm-ft-pooled.parquet"
# CAREER's pre-training panel: the three other corpora in one CSV (persons keep their dataset).
{
  for w in resumes nlsy97 psid; do
    "$labor" data convert "$pool/worlds/$w/panel.parquet" "$j/$w.csv" >&2
    if [ "$w" = resumes ]; then cat "$j/$w.csv"; else tail -n +2 "$j/$w.csv"; fi
  done
} > "$j/pretrain-pooled.csv"
if [ ! -f "$j/career-pooled/kind" ]; then
  "$labor" fit --model career --panel "$panel" --split-seed 2406 \
    --pretrain "$j/pretrain-pooled.csv" --out "$j/career-pooled"
fi
"$labor" score --model "$j/career-pooled" --panel "$panel" --split test --split-seed 2406 \
  --name career-pooled-pretrained --out "$j/career-pooled-pretrained.parquet"
preds=()
for m in markov1 markov2 mnl bag-of-jobs career career-pretrained lm-ft lm-untuned lm-icl1; do
  preds+=("$def/preds/${m}__nlsy79.parquet")
done
"$labor" eval --preds "${preds[@]}" "$j/career-pooled-pretrained.parquet" "$j/lm-ft-pooled.parquet" \
  --oracle "$def/worlds/nlsy79/oracle.parquet" --panel "$panel" --bootstrap 1000 --out "$j/report"
