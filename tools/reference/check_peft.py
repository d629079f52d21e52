"""Check that a LoRA adapter directory written by `labor train` loads in Python `peft` and means
what `labor` means by it.

    python check_peft.py BASE_DIR ADAPTER_DIR MERGED_DIR

BASE_DIR: the Hugging Face model the adapter was trained on; ADAPTER_DIR: the run's `best/`
(adapter_config.json + adapter_model.safetensors); MERGED_DIR: `labor lm merge-lora BASE ADAPTER
MERGED`. Loads BASE + ADAPTER with `peft.PeftModel.from_pretrained` and MERGED with
`transformers`, runs both on the same token ids and prints the largest logit difference; exits 1
if it is above 1e-4 or if the adapter changes nothing. (A tensor name peft did not recognise would
leave that adapter at its initial value, and the logits would not match the merged model's.)
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def main():
    base_dir, adapter_dir, merged_dir = sys.argv[1:4]
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    vocab = base.config.vocab_size
    ids = torch.randint(0, vocab, (2, 24))
    with torch.no_grad():
        plain = base(ids).logits
    peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        with_adapter = peft_model(ids).logits
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        merged_logits = merged(ids).logits
    diff = (with_adapter - merged_logits).abs().max().item()
    moved = (with_adapter - plain).abs().max().item()
    cfg = json.load(open(f"{adapter_dir}/adapter_config.json"))
    print(json.dumps({
        "peft_type": cfg.get("peft_type"),
        "r": cfg.get("r"),
        "lora_alpha": cfg.get("lora_alpha"),
        "target_modules": cfg.get("target_modules"),
        "max_abs_diff_peft_vs_labor_merged": diff,
        "max_abs_change_by_adapter": moved,
    }, indent=1))
    if diff > 1e-4 or moved < 1e-3:
        sys.exit(1)


if __name__ == "__main__":
    main()
