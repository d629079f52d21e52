#!/usr/bin/env bash
# Regenerates the committed seed inputs under fuzz/seeds/<target>/ (small valid files of every
# kind each target reads). Needs a built `labor` (target/release/labor) and, for the GGUF seed,
# the reference virtualenv of tools/reference (`gguf` package). Seeds are starting points only:
# the fuzzers and the CI smoke test mutate them.
set -euo pipefail
cd "$(dirname "$0")/.."
L=${LABOR:-target/release/labor}
PY=${PYTHON:-$HOME/.cache/labor-llm/reference-venv/bin/python}
S=fuzz/seeds
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$S" && mkdir -p "$S"/{panel_csv,parquet,career_dir,toml_configs,gguf,safetensors,tokenizer_json,model_json}

"$L" synth --world nlsy79 --workers 4 --seed 3 --threads 1 --out "$tmp/w4" >/dev/null
"$L" synth --world nlsy79 --workers 30 --seed 3 --threads 1 --out "$tmp/w30" >/dev/null
"$L" data convert "$tmp/w4/panel.parquet" "$S/panel_csv/panel.csv" >/dev/null
head -12 "$tmp/w4/taxonomy.csv" > "$S/panel_csv/taxonomy.csv"
cp examples/import/extract.csv "$S/panel_csv/extract.csv"
cp examples/import/crosswalk.csv "$S/panel_csv/crosswalk.csv"

cp "$tmp/w4/panel.parquet" "$S/parquet/panel.parquet"
"$L" fit --model markov1 --panel "$tmp/w30/panel.parquet" --out "$tmp/markov" >/dev/null 2>&1
"$L" score --model "$tmp/markov" --panel "$tmp/w30/panel.parquet" --split test --limit 2 \
    --out "$S/parquet/predictions.parquet" >/dev/null 2>&1

# The CAREER files joined with 0xFF in the order of labor_fuzz::career_dir's names.
"$L" data convert "$tmp/w4/panel.parquet" "$tmp/career" >/dev/null
python3 - "$tmp/career" "$S/career_dir/w4.career" <<'PY'
import sys, pathlib
d = pathlib.Path(sys.argv[1])
names = [f"{s}.{f}" for s in ["train", "valid", "test"]
         for f in ["job", "year", "education", "ethnicity", "gender", "location", "year_of_birth"]]
pathlib.Path(sys.argv[2]).write_bytes(b"\xff".join((d / n).read_bytes() for n in names))
PY

cp examples/import/mapping.toml "$S/toml_configs/mapping.toml"
cp crates/labor-synth/worlds/nlsy79.toml "$S/toml_configs/world.toml"
cp presets/quick.toml "$S/toml_configs/preset.toml"
cp presets/cpu-smollm2.toml "$S/toml_configs/preset-smollm2.toml"
# A run directory's config and template, as `labor demo` writes them (run the demo first).
cp demo-out/runs/lm-ft/config.toml "$S/toml_configs/run.toml"
cp demo-out/runs/lm-ft/template.toml "$S/toml_configs/template.toml"

"$PY" - "$S/gguf/tiny-llama.gguf" <<'PY'
import sys
import numpy as np
import gguf
w = gguf.GGUFWriter(sys.argv[1], "llama")
d, f, v, heads = 32, 64, 8, 4
w.add_context_length(64); w.add_embedding_length(d); w.add_block_count(1)
w.add_feed_forward_length(f); w.add_head_count(heads); w.add_head_count_kv(2)
w.add_layer_norm_rms_eps(1e-5); w.add_rope_freq_base(10000.0); w.add_rope_dimension_count(d // heads)
w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("smollm")
toks = ["a", "b", "c", "ab", "bc", "abc", "<|endoftext|>", "Ġ"]
w.add_token_list(toks); w.add_token_types([1] * 6 + [3, 1]); w.add_token_merges(["a b", "b c", "ab c"])
w.add_bos_token_id(6); w.add_eos_token_id(6)
rng = np.random.default_rng(0)
def t(name, shape, qt=None):
    a = rng.standard_normal(shape).astype(np.float32)
    if qt is None:
        w.add_tensor(name, a)
    else:
        q = gguf.quants.quantize(a, qt)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qt)
t("token_embd.weight", (v, d), gguf.GGMLQuantizationType.Q8_0)
t("output_norm.weight", (d,))
t("blk.0.attn_norm.weight", (d,)); t("blk.0.ffn_norm.weight", (d,))
t("blk.0.attn_q.weight", (d, d), gguf.GGMLQuantizationType.Q4_0)
t("blk.0.attn_k.weight", (d // 2, d), gguf.GGMLQuantizationType.F16)
t("blk.0.attn_v.weight", (d // 2, d))
t("blk.0.attn_output.weight", (d, d), gguf.GGMLQuantizationType.Q8_0)
t("blk.0.ffn_gate.weight", (f, d)); t("blk.0.ffn_up.weight", (f, d), gguf.GGMLQuantizationType.F16)
t("blk.0.ffn_down.weight", (d, f), gguf.GGMLQuantizationType.Q4_0)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY

cp crates/labor-lm/tests/fixtures/adamw-reference.safetensors "$S/safetensors/"
cp crates/labor-lm/tests/fixtures/lora-peft/adapter_model.safetensors "$S/safetensors/"
printf '{"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}' \
    > "$S/safetensors/model.safetensors.index.json"

cp crates/labor-lm/tests/fixtures/tiny-tokenizer/tokenizer.json "$S/tokenizer_json/"

cp crates/labor-lm/tests/fixtures/llama-gqa-tf5/config.json "$S/model_json/config-tf5.json"
cp crates/labor-lm/tests/fixtures/qwen2-tied/config.json "$S/model_json/config-qwen2.json"
cp crates/labor-lm/tests/fixtures/lora-peft/adapter_config.json "$S/model_json/adapter_config.json"
cp "$tmp/markov/model.json" "$S/model_json/markov.json"
du -sh "$S"/*
