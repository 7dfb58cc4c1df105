"""Logits only on the target tail (PadCollator + target_loss) give the model's own full causal-LM loss."""

from __future__ import annotations

import torch
from conftest import ROOT
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from loraforge.data import IGNORE_INDEX, PadCollator, target_loss


def features(prompt_lengths: list[int], target_lengths: list[int]) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for p, t in zip(prompt_lengths, target_lengths):
        ids = torch.randint(3, 2048, (p + t,), generator=generator).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * p + ids[p:]})
    return out


def test_tail_loss_and_gradients_equal_the_full_loss() -> None:
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(ROOT / "data" / "tiny_base" / "model"),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    batch = PadCollator(pad_token_id=2, logits_on_targets=True)(features([30, 12, 21], [5, 9, 3]))
    longest = batch["input_ids"].shape[1]
    assert batch["logits_to_keep"] == longest - 11  # from one before the earliest target (position 12)

    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    full_grads = torch.autograd.grad(full, [p for p in model.parameters() if p.requires_grad])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                logits_to_keep=batch["logits_to_keep"])
    assert out.logits.shape[1] == batch["logits_to_keep"]
    tail = target_loss(out, batch["labels"])
    tail_grads = torch.autograd.grad(tail, [p for p in model.parameters() if p.requires_grad])
    torch.testing.assert_close(tail, full)
    for got, want in zip(tail_grads, full_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)  # fp32 sums: kernels differ by CPU
    # the Trainer's token count for gradient accumulation is honoured as given
    torch.testing.assert_close(target_loss(out, batch["labels"], num_items_in_batch=torch.tensor(34)),
                               tail * 17 / 34)
