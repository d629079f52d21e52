#!/usr/bin/env bash
# Training throughput (BENCHMARKS.md): `labor bench train` vs PyTorch (Python, transformers) on the
# same architecture, the same batch of token ids and the same optimizer, one after the other in
# one run; full fine-tuning of a from-scratch model and LoRA on SmolLM2-135M when fetched.
#   bash scripts/bench-train.sh [BATCH] [SEQ] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
B=${1:-8}; T=${2:-256}; N=${3:-10}
W=${BENCH_DIR:-/tmp/labor-bench-train}
mkdir -p "$W"
cargo build --release --locked -q -p labor-cli
L=target/release/labor
PY=$(bash tools/reference/setup.sh)
if [ ! -d "$W/small" ]; then
  [ -f "$W/syn/panel.parquet" ] || $L synth --world nlsy79 --workers 300 --seed 3 --out "$W/syn" >/dev/null
  $L tokenizer train --panel "$W/syn/panel.parquet" --vocab-size 4096 --out "$W/tok.json" >/dev/null
  printf 'hidden_size = 256\nintermediate_size = 688\nnum_hidden_layers = 4\nnum_attention_heads = 4\nmax_position_embeddings = 1024\n' > "$W/small.toml"
  $L lm init --config "$W/small.toml" --tokenizer "$W/tok.json" --out "$W/small" >/dev/null
fi
compare() { # name, model dir, extra args for both
  local name=$1 model=$2 rank=$3
  echo "== $name: Rust (tch)"
  $L bench train --model "$model" --batch "$B" --seq "$T" --steps "$N" --lora-rank "$rank" --dump "$W/ids.json" | tee "$W/rust-$name.json"
  echo "== $name: PyTorch (Python)"
  "$PY" tools/reference/bench_train.py --model "$model" --ids "$W/ids.json" --steps "$N" --lora-rank "$rank" | tee "$W/py-$name.json"
  "$PY" -c "import json,sys; r=json.load(open('$W/rust-$name.json')); p=json.load(open('$W/py-$name.json')); print('$name: tokens/s rust %.0f, python %.0f, ratio %.2f' % (r['tokens_per_s'], p['tokens_per_s'], r['tokens_per_s']/p['tokens_per_s']))"
}
compare small-full "$W/small" 0
SMOL=${LABOR_CACHE:-$HOME/.cache/labor-llm}/models/smollm2-135m-instruct
if [ -d "$SMOL" ]; then
  compare smollm2-lora "$SMOL" 8
else
  echo "(SmolLM2 not fetched: run \`labor lm fetch smollm2\` to include it)"
fi
