#!/usr/bin/env python3
"""Checks bench_score.py on the tiny llama-gqa fixture (2 contexts x 5 continuations).

    ~/.cache/labor-llm/reference-venv/bin/python tools/reference/check_bench_score.py

Pairs whose context + continuation is a prefix of a saved reference sequence, and all one-token
continuations, are checked against reference.safetensors' saved logits; the rest against an
independent token-by-token run with the KV cache.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
MODEL = HERE.parents[1] / "crates" / "labor-lm" / "tests" / "fixtures" / "llama-gqa"


def main():
    ref = load_file(str(MODEL / "reference.safetensors"))
    ids0, ids1 = ref["ids_0"].tolist(), ref["ids_1"].tolist()
    contexts = [ids0[:8], ids1[:10]]
    continuations = [ids0[8:13], ids1[10:14], [ids0[8]], [7], [200, 201, 5]]

    with tempfile.TemporaryDirectory() as tmp:
        inp, outp = Path(tmp) / "in.json", Path(tmp) / "out.json"
        inp.write_text(json.dumps({"contexts": contexts, "continuations": continuations}))
        subprocess.run([sys.executable, str(HERE / "bench_score.py"), "--model", str(MODEL),
                        "--input", str(inp), "--output", str(outp)], check=True)
        out = json.loads(outp.read_text())
    got = out["logp"]
    assert len(got) == 2 and all(len(r) == 5 for r in got)

    saved = [(ids0, torch.log_softmax(ref["logits_0"].double(), -1)),
             (ids1, torch.log_softmax(ref["logits_1"].double(), -1))]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32, attn_implementation="eager").eval()
    worst = 0.0
    n_saved = 0
    for ci, c in enumerate(contexts):
        full, lp = saved[ci]
        for ki, k in enumerate(continuations):
            if full[: len(c) + len(k)] == c + k or len(k) == 1:
                want = sum(float(lp[len(c) - 1 + j, t]) for j, t in enumerate(k))
                n_saved += 1
            else:  # incremental decoding with the KV cache, one token at a time
                with torch.no_grad():
                    o = model(input_ids=torch.tensor([c]), use_cache=True)
                    want, past, logits = 0.0, o.past_key_values, o.logits[0, -1]
                    for t in k:
                        want += float(torch.log_softmax(logits.double(), -1)[t])
                        o = model(input_ids=torch.tensor([[t]]), past_key_values=past, use_cache=True)
                        past, logits = o.past_key_values, o.logits[0, -1]
            err = abs(got[ci][ki] - want)
            worst = max(worst, err)
            assert err < 1e-4, (ci, ki, got[ci][ki], want)
    print(f"bench_score.py OK: {n_saved} pairs vs saved logits, {10 - n_saved} vs KV-cache decoding, "
          f"max |diff| {worst:.2e}; {out['pairs_per_s']:.1f} pairs/s")


if __name__ == "__main__":
    main()
