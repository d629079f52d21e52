"""The hand-off to an engine users already trust: fine-tune a model with the Hugging Face
`Trainer` on the texts `labor text render` writes, save it as a plain model directory, and record
what transformers says each record's label costs, so `labor score` can be checked against it.

    labor synth --world nlsy79 --workers 40 --seed 11 --out syn
    labor text render --panel syn/panel.parquet --out texts.jsonl
    labor tokenizer train --panel syn/panel.parquet --vocab-size 600 --out tokenizer.json
    python tools/reference/trainer_handoff.py --texts texts.jsonl --tokenizer tokenizer.json \
        --out crates/labor-cli/tests/fixtures/trainer-handoff

On a cluster the same script runs under `torchrun --nproc_per_node 8 trainer_handoff.py ...` or
`accelerate launch trainer_handoff.py ...` (the Trainer handles the distribution); give it
`--base` to fine-tune a pre-trained model directory instead of the tiny random one used here.

Writes OUT/config.json, OUT/model.safetensors, OUT/tokenizer.json (a model directory `labor
score --model OUT` reads) and OUT/reference.json: for every test-split text, per record, the sum
of log p(token | everything before it) over the tokens of the record's continuation (the true
label's unnormalized log-probability, `logp` in labor's predictions), from a float32 eager
forward pass of the saved model.
"""
import argparse
import json
import os
import shutil

import torch
from tokenizers import Tokenizer
from transformers import (
    DataCollatorForLanguageModeling,
    LlamaConfig,
    LlamaForCausalLM,
    AutoModelForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    set_seed,
)

EOS = "<|endoftext|>"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", help="a pre-trained model directory (default: a tiny random Llama)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    set_seed(a.seed)
    torch.use_deterministic_algorithms(True)
    rows = [json.loads(line) for line in open(a.texts)]
    tok = PreTrainedTokenizerFast(tokenizer_file=a.tokenizer, eos_token=EOS, pad_token=EOS)
    if a.base:
        model = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.float32)
    else:
        cfg = LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
            bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )
        model = LlamaForCausalLM(cfg)
    # As `labor train` does: every training text followed by EOS.
    train = [r["text"] + EOS for r in rows if r["split"] == "train"]
    enc = [tok(t, add_special_tokens=False)["input_ids"] for t in train]
    args = TrainingArguments(
        output_dir=a.out + ".trainer-tmp",
        max_steps=a.steps,
        per_device_train_batch_size=a.batch_size,
        learning_rate=a.lr,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        weight_decay=0.0,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=a.seed,
        data_seed=a.seed,
        dataloader_num_workers=0,
    )
    collator = DataCollatorForLanguageModeling(tok, mlm=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=[{"input_ids": e} for e in enc],
        data_collator=collator,
    )
    out = trainer.train()
    print("trainer:", out.metrics)
    trainer.save_model(a.out)
    shutil.rmtree(a.out + ".trainer-tmp", ignore_errors=True)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    for f in ["training_args.bin", "tokenizer_config.json", "special_tokens_map.json"]:
        p = os.path.join(a.out, f)
        if os.path.exists(p):
            os.remove(p)

    # The reference: the saved model, read back, in float32 eager mode.
    m = AutoModelForCausalLM.from_pretrained(a.out, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    raw = Tokenizer.from_file(a.tokenizer)
    ref = {}
    with torch.no_grad():
        for r in rows:
            if r["split"] != "test":
                continue
            e = raw.encode(r["text"], add_special_tokens=False)
            ids = torch.tensor([e.ids])
            lp = torch.log_softmax(m(input_ids=ids).logits[0].float(), -1)
            per = []
            for s in r["spans"]:
                start, end = s["continuation"]
                first = next(i for i, (b, _) in enumerate(e.offsets) if b == start)
                total = 0.0
                i = first
                while i < len(e.ids) and e.offsets[i][0] < end:
                    total += lp[i - 1, e.ids[i]].item()
                    i += 1
                per.append({"year": s["year"], "label": s["label"], "logp": total})
            ref[f'{r["dataset"]}/{r["person_id"]}'] = per
    json.dump(
        {"what": "per test person and record: the true label's log p under transformers "
                 "(float32, eager) of the Trainer-fine-tuned model in this directory",
         "transformers": __import__("transformers").__version__,
         "records": ref},
        open(os.path.join(a.out, "reference.json"), "w"), indent=1, sort_keys=True,
    )
    print("reference:", sum(len(v) for v in ref.values()), "records of", len(ref), "persons")


if __name__ == "__main__":
    main()
