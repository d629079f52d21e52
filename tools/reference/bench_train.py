"""Training-throughput reference for `labor bench train` (scripts/bench-train.sh).

    python bench_train.py --model HF_DIR --ids ids.json [--steps 10] [--threads 2] [--lora-rank 0]

Trains the model in HF_DIR (loaded with transformers, float32, eager attention) on the fixed batch
in ids.json (a list of equal-length token-id lists, written by `labor bench train --dump`) with
torch.optim.AdamW (lr 1e-4, no weight decay), gradient clipping at 1.0 and the mean next-token
cross-entropy: 2 untimed warm-up steps, then --steps timed steps. With --lora-rank r, a PEFT LoRA
(alpha 2r, no dropout) on q/k/v/o_proj trains instead. Prints one JSON object.
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lora-rank", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa")
    if a.lora_rank:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=a.lora_rank, lora_alpha=2 * a.lora_rank, lora_dropout=0.0,
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    model.train()
    ids = torch.tensor(json.load(open(a.ids)), dtype=torch.long)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    b, t = ids.shape
    losses = []
    start = None
    for step in range(a.steps + 2):
        if step == 2:
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    secs = time.perf_counter() - start
    tokens = a.steps * b * t
    print(json.dumps({
        "torch": torch.__version__,
        "trainable": sum(p.numel() for p in params),
        "batch": b, "seq": t, "steps": a.steps,
        "seconds": secs, "tokens_per_s": tokens / secs, "seconds_per_step": secs / a.steps,
        "first_loss": losses[0], "last_loss": losses[-1],
    }, indent=1))


if __name__ == "__main__":
    main()
