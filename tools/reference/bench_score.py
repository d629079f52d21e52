#!/usr/bin/env python3
"""Naive per-label scoring loop: the Python side of the Rust scoring benchmark.

    python bench_score.py --model HF_DIR --input in.json --output out.json [--threads 2]

in.json:  {"contexts": [[ids...], ...], "continuations": [[ids...], ...]}
out.json: {"logp": [[K floats] per context], "seconds": s, "pairs_per_s": p, "records_per_s": r,
           "contexts": C, "continuations": K, "threads": n, "versions": {...}}

For every context c and continuation k the model runs once on c + k (batch 1, no cache, no
sharing: one forward per pair) and logp[c][k] = sum_j log softmax(logits[len(c)-1+j])[k_j].
"seconds" is the wall time of that loop only (model loading and one warm-up forward excluded); a record is one context
scored against all K continuations.
"""

import argparse
import json
import time

import torch


def score(model, contexts, continuations):
    out = []
    for c in contexts:
        row = []
        for k in continuations:
            ids = torch.tensor(list(c) + list(k), dtype=torch.int64)[None]
            logits = model(input_ids=ids).logits[0]
            logp = torch.log_softmax(logits[len(c) - 1 : len(c) - 1 + len(k)].float(), dim=-1)
            tgt = torch.tensor(list(k), dtype=torch.int64)
            row.append(float(logp.gather(1, tgt[:, None]).sum()))
        out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face model directory")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    with open(args.input) as f:
        data = json.load(f)
    contexts, continuations = data["contexts"], data["continuations"]
    assert all(len(c) >= 1 for c in contexts), "every context needs at least one token"
    assert all(len(k) >= 1 for k in continuations), "every continuation needs at least one token"

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    with torch.inference_mode():
        # One untimed warm-up forward: the first call of a fresh process pays one-off setup costs
        # (seconds on CPU) that would otherwise dominate small inputs.
        score(model, contexts[:1], continuations[:1])
        t0 = time.perf_counter()
        logp = score(model, contexts, continuations)
        seconds = time.perf_counter() - t0

    pairs = len(contexts) * len(continuations)
    out = {
        "logp": logp,
        "seconds": seconds,
        "pairs_per_s": pairs / seconds if seconds > 0 else None,
        "records_per_s": len(contexts) / seconds if seconds > 0 else None,
        "contexts": len(contexts),
        "continuations": len(continuations),
        "threads": args.threads,
        "attn_implementation": model.config._attn_implementation,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    with open(args.output, "w") as f:
        json.dump(out, f)
    print(f"{pairs} pairs in {seconds:.3f}s: {out['pairs_per_s']:.1f} pairs/s, "
          f"{out['records_per_s']:.2f} records/s ({args.threads} threads)")


if __name__ == "__main__":
    main()
