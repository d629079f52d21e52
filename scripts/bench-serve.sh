#!/usr/bin/env bash
# Load test of `labor serve` on loopback (BENCHMARKS.md, "Serving"): a 3,000-worker nlsy79
# world, an MNL and a small random-weight language model (4 layers, width 128, the world's own
# label-complete tokenizer), each served alone and sent REQUESTS predict requests of a
# three-record career over 200 connections at once.
# Usage: bash scripts/bench-serve.sh [WORKDIR] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release -p labor-cli -q
L=$PWD/target/release/labor
W=${1:-/tmp/labor-bench-serve}
N=${2:-2000}
mkdir -p "$W"
cd "$W"
[ -f w/panel.parquet ] || $L synth --world nlsy79 --workers 3000 --seed 21 --out w >/dev/null
[ -f mnl/model.json ] || $L fit --model mnl --panel w/panel.parquet --out mnl >/dev/null
[ -f tok.json ] || $L tokenizer train --panel w/panel.parquet --vocab-size 2000 --out tok.json >/dev/null
printf 'hidden_size = 128\nintermediate_size = 512\nnum_hidden_layers = 4\nnum_attention_heads = 4\nnum_key_value_heads = 2\nmax_position_embeddings = 1024\n' > small.toml
[ -f lm/config.json ] || $L lm init --config small.toml --tokenizer tok.json --out lm >/dev/null
cat > body.json <<'JSON'
{"history": {"gender": "female", "birth_year": 1965, "records": [
  {"year": 1990, "label": "Cashiers", "education": "high_school_diploma"},
  {"year": 1991, "label": "Cashiers"},
  {"year": 1992, "label": "Retail salespersons", "education": "some_college"}]}, "top": 5}
JSON
for m in mnl lm; do
    $L serve --model "$m=$m" --addr 127.0.0.1:0 --timeout-s 120 >serve-$m.log 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q listening serve-$m.log 2>/dev/null && break; sleep 0.2; done
    addr=$(sed -n 's#listening on http://##p' serve-$m.log)
    n=$N
    [ "$m" = lm ] && n=$((N / 5))
    echo "== $m"
    $L bench serve --addr "$addr" --body body.json --concurrency 200 --requests "$n"
    ps -o rss= -p $pid | awk '{printf "server resident memory: %.0f MB\n", $1/1024}'
    kill $pid; wait $pid 2>/dev/null || true
done
