#!/usr/bin/env bash
# Fine-tuning SmolLM2-135M on CPU, one variant after the other in one run on the same machine
# (BENCHMARKS.md, "Faster CPU fine-tuning"): the same texts, the same order, the same optimizer,
# `labor train` for STEPS steps each; prints tokens/s and the loss after each step, side by side.
#   bash scripts/bench-lm-cpu.sh [STEPS] [VARIANTS...]
# Variants (name=precision:top_layers[:objective]): the default list is below; `top_layers` 0 =
# every layer; the objective defaults to label-softmax. The first is the reference: f32, every
# layer, the text objective (the path `presets/cpu-smollm2.toml` used before the CPU work).
# Needs `labor lm fetch smollm2` (the model in the user's cache).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N=${1:-50}
shift || true
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=(before=f32:0:text bf16-all=bf16:0:text bf16-top8-text=bf16:8:text bf16-top8=bf16:8)
W=${BENCH_DIR:-/tmp/labor-bench-lm-cpu}
mkdir -p "$W"
cargo build --release --locked -q -p labor-cli
L=$PWD/target/release/labor
SMOL=${LABOR_CACHE:-$HOME/.cache/labor-llm}/models/smollm2-135m-instruct
[ -d "$SMOL" ] || { echo "SmolLM2 not fetched: run \`labor lm fetch smollm2\` first" >&2; exit 2; }
[ -f "$W/syn/panel.parquet" ] || $L synth --world nlsy79 --workers 300 --seed 1 --out "$W/syn" >/dev/null
for v in "${VARIANTS[@]}"; do
  name=${v%%=*}; IFS=: read -r prec top OBJ <<<"${v#*=}"; OBJ=${OBJ:-label-softmax}
  top_line=""; [ "$top" = 0 ] || top_line="top_layers = $top"
  cat > "$W/$name.toml" <<EOF
[model]
base = "$SMOL"
label_tokens = true
[data]
panels = ["$W/syn/panel.parquet"]
split_seed = 2406
[method]
kind = "lora"
rank = 8
alpha = 16.0
dropout = 0.0
$top_line
[optim]
lr = 1e-3
lr_label_rows = 5e-3
warmup_steps = 5
min_lr_ratio = 0.1
[train]
total_steps = $N
batch_size = 4
grad_accum = 2
max_seq_len = 1024
eval_every = 1000000
eval_texts = 8
checkpoint_every = 1000000
precision = "$prec"
objective = "$OBJ"
EOF
  echo "== $name ($prec, top_layers $top, objective $OBJ): $N steps"
  /usr/bin/time -f "$name: %e s wall, %M KB max RSS" $L train --config "$W/$name.toml" --out "$W/run-$name" --restart 2>&1 \
    | grep -v '^\s*$' | grep -E "layers|parameters|wall|steps done" || true
done
python3 - "$W" "${VARIANTS[@]}" <<'EOF'
import json, sys
w, names = sys.argv[1], [v.split("=")[0] for v in sys.argv[2:]]
rows = {n: [json.loads(l) for l in open(f"{w}/run-{n}/metrics.jsonl") if l.strip()] for n in names}
def tps(rs):  # tokens/s over the steps after the first (warm-up), from each step's own time
    rs = [r for r in rs if "tokens_per_s" in r][1:]
    return sum(r["tokens"] for r in rs) / sum(r["tokens"] / r["tokens_per_s"] for r in rs)
base = tps(rows[names[0]])
# Loss differences against the first variant with the same objective ("—" for that one).
objs = dict(a.split("=", 1) for a in sys.argv[2:])
obj = {n: (objs[n].split(":") + ["label-softmax"])[2] for n in names}
print("| variant | objective | tokens/s | ÷ " + names[0] + " | loss at step 1 / 10 / 25 / last | mean abs. Δ loss per step vs the first of its objective |")
print("|---|---|---|---|---|---|")
for n in names:
    rs = [r for r in rows[n] if "loss" in r]
    ref = next(m for m in names if obj[m] == obj[n])
    refs = [r for r in rows[ref] if "loss" in r]
    pick = [rs[i - 1]["loss"] for i in (1, 10, 25) if i <= len(rs)] + [rs[-1]["loss"]]
    d = sum(abs(a["loss"] - b["loss"]) for a, b in zip(rs, refs)) / len(rs)
    dd = "—" if ref == n else f"{d:.4f}"
    print(f"| {n} | {obj[n]} | {tps(rows[n]):.0f} | {tps(rows[n]) / base:.2f} | {' / '.join(f'{x:.3f}' for x in pick)} | {dd} |")
EOF
