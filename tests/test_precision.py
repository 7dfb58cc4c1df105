"""Frozen base weights held in the autocast dtype: the same outputs and gradients as autocast casting them."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from loraforge.builtin.fused_lora import fuse
from loraforge.precision import autocast_dtype, frozen_weights_in


def tiny_lora(tied: bool, fused: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                lora_dropout=0.0))
    for module in model.modules():  # a trained-looking adapter: B is zero at initialisation
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.05)
    if fused:
        fuse(model)
    return model


def loss_and_grads(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("tied", [False, True])
def test_the_same_loss_and_gradients_as_autocast_casting_each_time(tied: bool, fused: bool) -> None:
    model = tiny_lora(tied, fused)
    ids = torch.randint(0, 300, (3, 17))
    expected = loss_and_grads(model, ids)
    before = {name: (p.data_ptr(), p.dtype) for name, p in model.named_parameters()}
    with frozen_weights_in(model, torch.bfloat16) as count:
        lowered = {name for name, p in model.named_parameters() if p.dtype == torch.bfloat16}
        got = loss_and_grads(model, ids)
    assert count == 2 * 7 + 1  # every frozen projection and the head
    assert "base_model.model.lm_head.weight" in lowered or tied  # a tied head is a copy: not a named parameter
    assert not any("lora_" in name or "norm" in name or "embed" in name for name in lowered)
    assert torch.equal(got[0], expected[0]) and all(torch.equal(a, b) for a, b in zip(got[1], expected[1]))
    assert all((p.data_ptr(), p.dtype) == before[name] for name, p in model.named_parameters())  # originals back
    lm = model.base_model.model
    assert (lm.lm_head.weight is lm.model.embed_tokens.weight) is tied  # and the tie


def test_fp32_changes_nothing() -> None:
    model = tiny_lora(False, False)
    with frozen_weights_in(model, autocast_dtype("fp32")) as count:
        assert count == 0 and all(p.dtype == torch.float32 for p in model.parameters())
    assert autocast_dtype("bf16") is torch.bfloat16
