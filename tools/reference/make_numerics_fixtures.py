"""Independent references for the hand-written numerics (issue: hardening, item 4).

Writes small, byte-for-byte reproducible fixtures that the Rust golden tests compare against:

- crates/labor-lm/tests/fixtures/gguf-dequant.safetensors: for every ggml type our GGUF reader
  decodes (F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K), random blocks (`TYPE.raw`, u8) and
  what the `gguf` package's own `gguf.quants.dequantize` makes of them (`TYPE.values`, f32).
  Scales are random finite f16 values; every other byte is random.
- crates/labor-lm/tests/fixtures/adamw-reference.safetensors: a matrix and a vector parameter,
  STEPS gradients each and the learning rate of each step; `torch.optim.AdamW` (weight decay on
  the matrix only, as our AdamW does; gradients clipped to global norm CLIP first with
  `torch.nn.utils.clip_grad_norm_`) gives the parameters after every step.
- crates/labor-lm/tests/fixtures/lora-peft/: a PEFT LoRA adapter directory (rank 4, alpha 8,
  targets q_proj, v_proj, down_proj; A and B random, so the adapter is not the identity) on the
  llama-gqa fixture model, and reference.safetensors: token ids, the adapted model's logits, the
  mean next-token cross-entropy, and its gradient for every lora_A / lora_B weight (peft names).
- crates/labor-baselines/tests/fixtures/mnl-sklearn.json: a small multinomial-logit problem
  (bias + 3 features, 4 classes, 300 rows) and scikit-learn's fit (lbfgs, L2, unpenalized
  intercept) at the penalty matching our objective (C = 1 / (lambda n)), with its
  log-likelihood.

Usage: python tools/reference/make_numerics_fixtures.py   (the reference venv of setup.sh)
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file as save_np
from safetensors.torch import save_file as save_torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LM_FIX = os.path.join(ROOT, "crates", "labor-lm", "tests", "fixtures")
MNL_FIX = os.path.join(ROOT, "crates", "labor-baselines", "tests", "fixtures")


def gguf_dequant():
    import gguf
    from gguf import GGMLQuantizationType as Q

    rng = np.random.default_rng(20261202)
    # (type, bytes per block, elements per block, byte offsets of f16 scales in a block)
    layouts = [
        (Q.F16, 2, 1, None),
        (Q.BF16, 2, 1, None),
        (Q.Q4_0, 18, 32, [0]),
        (Q.Q4_1, 20, 32, [0, 2]),
        (Q.Q5_0, 22, 32, [0]),
        (Q.Q8_0, 34, 32, [0]),
        (Q.Q4_K, 144, 256, [0, 2]),
        (Q.Q6_K, 210, 256, [208]),
    ]
    out = {}
    meta = {}
    for ty, nbytes, nel, scales in layouts:
        if ty == Q.F16:
            vals = (rng.standard_normal(96) * 3).astype(np.float16)
            raw = vals.view(np.uint8).copy()
            values = raw.view(np.float16).astype(np.float32)
        elif ty == Q.BF16:
            f = (rng.standard_normal(96) * 3).astype(np.float32)
            raw = (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).copy()
            values = gguf.quants.dequantize(raw, ty).astype(np.float32)
        else:
            blocks = 3
            raw = rng.integers(0, 256, size=(blocks, nbytes), dtype=np.uint8)
            for b in range(blocks):
                for off in scales:
                    s = np.float16(rng.uniform(0.01, 0.5) * (1 if rng.random() < 0.8 else -1))
                    raw[b, off:off + 2] = np.frombuffer(s.tobytes(), dtype=np.uint8)
            raw = raw.reshape(-1)
            values = gguf.quants.dequantize(raw, ty).astype(np.float32).reshape(-1)
            assert values.size == blocks * nel, (ty.name, values.size)
        assert np.isfinite(values).all(), ty.name
        out[f"{ty.name}.raw"] = np.ascontiguousarray(raw)
        out[f"{ty.name}.values"] = np.ascontiguousarray(values.reshape(-1))
        meta[ty.name] = str(int(ty))
    # One metadata key: safetensors writes a multi-key map in no fixed order.
    save_np(out, os.path.join(LM_FIX, "gguf-dequant.safetensors"),
            metadata={"types": json.dumps(meta, sort_keys=True)})
    print("gguf-dequant:", ", ".join(f"{k} {v.size}" for k, v in out.items() if k.endswith("values")))


STEPS = 6
CLIP = 1.0


def adamw():
    g = torch.Generator().manual_seed(7)
    w0 = torch.randn(3, 4, generator=g)
    b0 = torch.randn(4, generator=g)
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    lr0, wd, betas, eps = 1e-2, 0.1, (0.9, 0.999), 1e-8
    opt = torch.optim.AdamW(
        [{"params": [w], "weight_decay": wd}, {"params": [b], "weight_decay": 0.0}],
        lr=lr0, betas=betas, eps=eps,
    )
    out = {"w0": w0, "b0": b0}
    lrs = []
    for s in range(STEPS):
        # Gradients of different sizes: some steps are clipped, some not.
        scale = 3.0 if s % 2 == 0 else 0.05
        gw = torch.randn(3, 4, generator=g) * scale
        gb = torch.randn(4, generator=g) * scale
        out[f"gw.{s}"] = gw
        out[f"gb.{s}"] = gb
        w.grad = gw.clone()
        b.grad = gb.clone()
        norm = torch.nn.utils.clip_grad_norm_([w, b], CLIP)
        out[f"norm.{s}"] = norm.reshape(1).double()
        lr = lr0 * (0.5 + 0.5 * np.cos(np.pi * s / STEPS))
        lrs.append(lr)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        out[f"w.{s}"] = w.detach().clone()
        out[f"b.{s}"] = b.detach().clone()
    out["lr"] = torch.tensor(lrs, dtype=torch.float64)
    meta = {
        "betas": list(betas),
        "eps": eps,
        "weight_decay": wd,
        "clip": CLIP,
        "steps": STEPS,
        "torch": torch.__version__,
    }
    save_torch(out, os.path.join(LM_FIX, "adamw-reference.safetensors"),
               metadata={"config": json.dumps(meta, sort_keys=True)})
    print("adamw: final w[0,0]", out[f"w.{STEPS - 1}"][0, 0].item())


def lora_peft():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(11)
    base = AutoModelForCausalLM.from_pretrained(
        os.path.join(LM_FIX, "llama-gqa"), torch_dtype=torch.float32, attn_implementation="eager"
    )
    cfg = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"],
        bias="none", task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(13)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.eval()
    out_dir = os.path.join(LM_FIX, "lora-peft")
    model.save_pretrained(out_dir)
    # PEFT writes the absolute base path; point it at the sibling fixture instead.
    cpath = os.path.join(out_dir, "adapter_config.json")
    c = json.load(open(cpath))
    c["base_model_name_or_path"] = "../llama-gqa"
    c.pop("revision", None)
    json.dump(c, open(cpath, "w"), indent=2, sort_keys=True)
    readme = os.path.join(out_dir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    ids = torch.tensor([[5, 17, 99, 3, 250, 41, 8, 8, 120, 301, 7, 66, 2, 19, 150, 9]])
    logits = model(input_ids=ids).logits
    lp = torch.log_softmax(logits[0, :-1].float(), -1)
    loss = -lp.gather(1, ids[0, 1:].unsqueeze(1)).mean()
    loss.backward()
    ref = {"ids": ids[0].clone(), "logits": logits[0].detach().clone(), "loss": loss.detach().reshape(1)}
    for name, p in model.named_parameters():
        if "lora_" in name:
            # peft's in-memory names carry the adapter name ("lora_A.default.weight"); the
            # saved ones do not.
            ref["grad." + name.replace(".default", "")] = p.grad.detach().clone()
    save_torch(ref, os.path.join(out_dir, "reference.safetensors"), metadata={"peft": __import__("peft").__version__})
    print("lora-peft: loss", loss.item(), "grads", sum(1 for k in ref if k.startswith("grad.")))


def mnl():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(5)
    n, f, k = 300, 3, 4
    x = rng.standard_normal((n, f))
    true_w = rng.standard_normal((f, k))
    logits = x @ true_w + np.array([0.5, -0.2, 0.0, 0.3])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    lam = 0.01
    clf = LogisticRegression(C=1.0 / (lam * n), tol=1e-10, max_iter=10000)
    clf.fit(x, y)
    coef = clf.coef_.T  # [f, k]
    intercept = clf.intercept_
    z = x @ coef + intercept
    z -= z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    ll = float(logp[np.arange(n), y].sum())
    obj = -ll / n + lam / 2 * float((coef ** 2).sum())
    os.makedirs(MNL_FIX, exist_ok=True)
    json.dump(
        {
            "what": "scikit-learn LogisticRegression(lbfgs, l2, C = 1/(lambda n), tol 1e-10) on x (n x f) "
                    "and y; coef is [features][classes], intercept [classes] (unpenalized)",
            "sklearn": __import__("sklearn").__version__,
            "lambda": lam,
            "x": x.tolist(),
            "y": y.tolist(),
            "n_classes": k,
            "coef": coef.tolist(),
            "intercept": intercept.tolist(),
            "loglik": ll,
            "objective": obj,
        },
        open(os.path.join(MNL_FIX, "mnl-sklearn.json"), "w"),
    )
    print("mnl: loglik", ll, "objective", obj)


if __name__ == "__main__":
    torch.set_num_threads(1)
    what = sys.argv[1:] or ["gguf", "adamw", "lora", "mnl"]
    for w in what:
        {"gguf": gguf_dequant, "adamw": adamw, "lora": lora_peft, "mnl": mnl}[w]()
