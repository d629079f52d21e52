#!/usr/bin/env bash
# GPU checks for a CUDA machine that has PyTorch 2.11 (Python) but no Rust. Build here, carry the
# release binary, and run on the GPU machine from the repository root:
#   bash scripts/gpu-check.sh [--dry-run] [MODEL_DIR]
# MODEL_DIR: SmolLM2-135M as imported by `labor lm fetch smollm2` (carried; optional).
# --dry-run: print every command it would run, run nothing (works on any machine).
# Prints, per check, tokens/s, peak memory and MFU = 6 · parameters · tokens / s / 989e12 (H100
# dense bf16 peak): training for SmolLM2-135M (full) and a randomly initialised 1B Llama-shaped
# model, then trie scoring records/s for SmolLM2.
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
BIN=${LABOR_BIN:-target/release/labor}
OUT=${OUT:-/tmp/labor-gpu-check}
# x CMD...: run it, or with --dry-run print it (shell-quoted) instead.
x() { if [ $DRY = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi; }
if [ $DRY = 0 ]; then
  TL=$(python3 -c 'import os,torch;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  export LD_LIBRARY_PATH="$TL${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  mkdir -p "$OUT"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
else
  echo "# dry run: the commands scripts/gpu-check.sh would run (OUT=$OUT)"
fi
x "$BIN" env --device cuda
peak() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
run() { # name, command...
  local name=$1; shift
  echo "== $name"
  if [ $DRY = 1 ]; then x "$@"; return; fi
  ( while sleep 0.5; do peak >> "$OUT/$name.mem"; done ) & local mon=$!
  "$@" | tee "$OUT/$name.json"
  kill $mon 2>/dev/null || true
  echo "peak GPU memory used (MiB): $(sort -n "$OUT/$name.mem" | tail -1)"
}
# A tokenizer for the random models: a small synthetic world and a 4,096-token BPE.
x "$BIN" synth --world nlsy79 --workers 400 --seed 1 --out "$OUT/syn"
x "$BIN" tokenizer train --panel "$OUT/syn/panel.parquet" --vocab-size 4096 --out "$OUT/tok.json"
# ~1.1B parameters, Llama-3.2-1B-like shape (with our 4k vocabulary the embeddings are small).
shape='hidden_size = 2048\nintermediate_size = 8192\nnum_hidden_layers = 20\nnum_attention_heads = 32\nnum_key_value_heads = 8\nmax_position_embeddings = 2048\n'
if [ $DRY = 1 ]; then echo "# $OUT/1b.toml:"; printf "$shape" | sed 's/^/#   /'; else printf "$shape" > "$OUT/1b.toml"; fi
x "$BIN" lm init --config "$OUT/1b.toml" --tokenizer "$OUT/tok.json" --out "$OUT/llama-1b"
run train-1b "$BIN" bench train --model "$OUT/llama-1b" --device cuda --dtype bf16 --batch 8 --seq 1024 --steps 10
MODEL=${1:-}
if [ -n "$MODEL" ] && { [ -d "$MODEL" ] || [ $DRY = 1 ]; }; then
  run train-smollm2 "$BIN" bench train --model "$MODEL" --device cuda --dtype bf16 --batch 16 --seq 1024 --steps 10
  run score-smollm2 "$BIN" bench score --model "$MODEL" --panel "$OUT/syn/panel.parquet" --device cuda --persons 8 --records 6 --no-naive
fi
# The gpu preset's plan (its stages and commands; parses the preset on this machine).
run plan-gpu-preset "$BIN" reproduce --preset gpu --out "$OUT/gpu-preset" --dry-run
