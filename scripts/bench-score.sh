#!/usr/bin/env bash
# Full-distribution scoring benchmark (BENCHMARKS.md): trie + KV cache vs the naive K-pass loop
# (Rust, same model and records, one run) vs a Python transformers per-label loop over exactly
# the same token ids; then SmolLM2-135M records/s when it has been fetched.
#   bash scripts/bench-score.sh [PERSONS] [RECORDS_PER_PERSON]
# PRE_TOKENIZE=segments trains the small model's BPE with `segments` pre-tokenization (whole titles
# as tokens) instead of GPT-2 style pieces; TOKENIZER_WORKERS=N trains the BPE on the training
# split of a separate N-worker world (seed 5) instead of the scored 500-worker one, so that more
# titles become whole tokens. Use another BENCH_DIR for either.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
PERSONS=${1:-2}
RECORDS=${2:-3}
PRE=${PRE_TOKENIZE:-byte-level}
W=${BENCH_DIR:-/tmp/labor-bench-score}
mkdir -p "$W"
cargo build --release --locked -q -p labor-cli
L=target/release/labor
[ -f "$W/syn/panel.parquet" ] || $L synth --world nlsy79 --workers 500 --seed 3 --out "$W/syn" >/dev/null
TOK_PANEL="$W/syn/panel.parquet"
if [ -n "${TOKENIZER_WORKERS:-}" ]; then
  [ -f "$W/tok-world/panel.parquet" ] || $L synth --world nlsy79 --workers "$TOKENIZER_WORKERS" --seed 5 --out "$W/tok-world" >/dev/null
  TOK_PANEL="$W/tok-world/panel.parquet"
fi
[ -f "$W/tok.json" ] || $L tokenizer train --panel "$TOK_PANEL" --vocab-size 4096 --pre-tokenize "$PRE" --out "$W/tok.json" >/dev/null
cat > "$W/small.toml" <<'TOML'
hidden_size = 256
intermediate_size = 688
num_hidden_layers = 4
num_attention_heads = 4
num_key_value_heads = 4
max_position_embeddings = 2048
TOML
[ -d "$W/small" ] || $L lm init --config "$W/small.toml" --tokenizer "$W/tok.json" --seed 1 --out "$W/small" >/dev/null
echo "== Rust: trie vs naive (small model)"
$L bench score --model "$W/small" --panel "$W/syn/panel.parquet" --persons "$PERSONS" --records "$RECORDS" \
  --dump "$W/in.json" --logp-out "$W/trie.json" | tee "$W/rust.json"
PY=$(bash tools/reference/setup.sh)
echo "== Python transformers: per-label loop on the same ids"
"$PY" tools/reference/bench_score.py --model "$W/small" --input "$W/in.json" --output "$W/py.json" --threads 2
"$PY" - "$W" <<'PYEOF'
import json, sys
w = sys.argv[1]
rust = json.load(open(f"{w}/rust.json"))
py = json.load(open(f"{w}/py.json"))
trie = json.load(open(f"{w}/trie.json"))
diff = max(abs(a - b) for ra, rb in zip(py["logp"], trie) for a, b in zip(ra, rb))
print(json.dumps({
    "records": rust["records"],
    "trie_seconds": rust["trie_seconds"],
    "naive_rust_seconds": rust.get("naive_seconds"),
    "python_seconds": py["seconds"],
    "speedup_vs_naive_rust": rust.get("speedup_vs_naive"),
    "speedup_vs_python": py["seconds"] / rust["trie_seconds"],
    "max_abs_diff_trie_vs_python": diff,
}, indent=1))
PYEOF
SMOL=${LABOR_CACHE:-$HOME/.cache/labor-llm}/models/smollm2-135m-instruct
if [ -d "$SMOL" ]; then
  echo "== SmolLM2-135M: trie scoring records/s, reference kernels vs today's f32 vs bf16 (one run),"
  echo "   and today's f32 against the naive per-label loop on one record (about 5 min)"
  $L bench score --model "$SMOL" --panel "$W/syn/panel.parquet" --persons "$PERSONS" --records "$RECORDS" \
    --compare --naive-records 1
else
  echo "(SmolLM2 not fetched: run \`labor lm fetch smollm2\` to include it)"
fi
