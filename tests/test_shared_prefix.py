"""Shared prefixes: a batch's common prompt prefix runs once, and the loss and gradients stay those of the batch."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, SHIPPED_BASE, ner_recipe, ner_records
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Gemma2Config, LlamaConfig, MistralConfig, MixtralConfig, Qwen2Config

from loraforge.builtin.fused_lora import fuse
from loraforge.components import CHECKPOINTING
from loraforge.data import IGNORE_INDEX, PadCollator, target_loss
from loraforge.engine import run_recipe
from loraforge.prefix import _last_layer, attends_through_interface, shared_prefix_attention, shared_prefix_inputs
from loraforge.recipe import load_recipe


def features(prefix: list[int], middles: list[int], targets: list[int]) -> list[dict[str, list[int]]]:
    """Rows that start with `prefix`, then a prompt part and a target part of the given lengths."""
    generator = torch.Generator().manual_seed(0)
    out = []
    for m, t in zip(middles, targets):
        rest = torch.randint(3, 2048, (m + t,), generator=generator).tolist()
        ids = prefix + rest
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * (len(prefix) + m) + rest[m:]})
    return out


def test_collator_pads_each_row_at_the_end() -> None:
    rows = [{"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7]}, {"input_ids": (8,), "labels": (8,)}]
    batch = PadCollator(pad_token_id=2)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert {t.dtype for t in batch.values()} == {torch.long}


def test_collator_finds_the_common_prefix_before_the_earliest_target() -> None:
    collate = PadCollator(pad_token_id=2, logits_on_targets=True, share_prefix=True, min_prefix=8)
    prefix = list(range(10, 30))  # 20 tokens every row has
    assert collate(features(prefix, [5, 9, 3], [4, 6, 2]))["prefix_length"] == 20
    # a row whose prompt ends inside the common part: the prefix stops one before its first target
    short = {"input_ids": prefix + [7, 8], "labels": [IGNORE_INDEX] * 12 + prefix[12:] + [7, 8]}
    rows = features(prefix, [5, 9], [4, 6]) + [short]
    assert collate(rows)["prefix_length"] == 11
    # shorter than min_prefix, or rows that differ from the first token: nothing shared
    assert collate(features(prefix[:5], [5, 9], [4, 6]))["prefix_length"] == 0
    assert collate(features([], [5, 9], [4, 6]))["prefix_length"] == 0
    # off unless asked, and a single row shares with no one
    assert "prefix_length" not in PadCollator(pad_token_id=2, logits_on_targets=True)(features(prefix, [5], [4]))
    assert "prefix_length" not in collate(features(prefix, [5], [4]))


def tiny_lora(checkpointing: dict | None = None, fused: bool = True):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(ROOT / "data" / "tiny_base" / "model")
    if checkpointing is not None:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    model = get_peft_model(base, LoraConfig(r=4, lora_dropout=0.0, target_modules="all-linear",
                                            init_lora_weights=False))
    if fused:
        fuse(model)
    return model


@pytest.mark.parametrize("fused, checkpointing, middles, targets, prefix", [
    (False, None, [6, 0, 11, 3], [7, 12, 4, 9], 23),  # row 2's target starts right after the 24 common tokens
    (True, None, [6, 0, 11, 3], [7, 12, 4, 9], 23),
    (True, None, [5, 5, 5], [8, 8, 8], 24),  # no padding at all
    (True, CHECKPOINTING, [6, 0, 11, 3], [7, 12, 4, 9], 23),  # checkpointed layers recompute the prefix too
    (False, CHECKPOINTING, [5, 5, 5], [8, 8, 8], 24),
    (True, {"use_reentrant": True}, [6, 0, 11, 3], [7, 12, 4, 9], 23),
])
def test_shared_prefix_gives_the_loss_and_gradients_of_the_full_batch(fused: bool, checkpointing: dict | None,
                                                                      middles: list[int], targets: list[int],
                                                                      prefix: int) -> None:
    model = tiny_lora(checkpointing, fused)
    assert model.base_model.model.is_gradient_checkpointing == (checkpointing is not None)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    batch = PadCollator(pad_token_id=2, logits_on_targets=True, share_prefix=True)(
        features(list(range(40, 64)), middles, targets))
    assert batch.pop("prefix_length") == prefix
    labels = batch.pop("labels")

    def loss_and_grads(inputs: dict, labels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        loss = target_loss(model(**inputs), labels)
        loss.backward()  # not autograd.grad: reentrant checkpoints support backward() only
        return loss.detach(), [p.grad.clone() for p in params]

    full, full_grads = loss_and_grads(batch, labels)
    inputs = shared_prefix_inputs({**batch, "labels": labels}, prefix)
    rows, length = batch["input_ids"].shape
    assert inputs["input_ids"].shape == (1, prefix + rows * (length - prefix))  # the prefix once, then each row
    # logits only where a label follows: one per target token
    assert inputs["labels"].tolist() == labels[labels != IGNORE_INDEX].tolist() == [t for f in features(
        list(range(40, 64)), middles, targets) for t in f["labels"] if t != IGNORE_INDEX]
    with shared_prefix_attention(model):
        shared, shared_grads = loss_and_grads(inputs, inputs.pop("labels"))
    torch.testing.assert_close(shared, full)
    for got, want in zip(shared_grads, full_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # outside the block, and for any other batch inside it, the model attends as it always did
    with torch.no_grad():
        torch.testing.assert_close(target_loss(model(**batch), labels), full)
        with shared_prefix_attention(model):
            torch.testing.assert_close(target_loss(model(**batch), labels), full)


def quick_run(make_recipe, share: bool, **training: object):
    # the shipped pretrained base, LoRA everywhere: gradients through the prefix's keys and values matter there
    path = make_recipe(ner_recipe(model=SHIPPED_BASE,
                                  adapter={"type": "lora", "r": 4, "lora_dropout": 0.0, "target_modules": "all-linear"},
                                  training={"max_steps": 4, "batch_size": 4, "learning_rate": 0.5, "optimizer": "sgd",
                                            "precision": "fp32", "share_prefix": share, **training},
                                  evaluation={"split": "none"}, output={"dir": f"run-{share}-{len(training)}"}),
                       name=f"recipe-{share}-{len(training)}.toml", data={"train": ner_records(16)})
    run = run_recipe(load_recipe(path))
    return run.summary["train"], load_file(run.out_dir / "adapter" / "adapter_model.safetensors")


def test_a_run_with_shared_prefixes_trains_the_same_adapter(make_recipe) -> None:
    (stats, shared), (plain_stats, plain) = quick_run(make_recipe, True), quick_run(make_recipe, False)
    assert stats["shared_prefix_fraction"] > 0.2  # the instruction template, once per batch of 4
    assert plain_stats["shared_prefix_fraction"] == 0
    assert any(t.abs().sum() > 0 for name, t in shared.items() if "lora_B" in name)  # it trained
    for name in plain:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-4, atol=1e-5)


def test_a_checkpointed_run_shares_prefixes_and_trains_the_same_adapter(make_recipe) -> None:
    (stats, shared), (plain_stats, plain) = (quick_run(make_recipe, share, gradient_checkpointing=True)
                                             for share in (True, False))
    assert stats["shared_prefix_fraction"] > 0.2 and plain_stats["shared_prefix_fraction"] == 0
    for name in plain:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config, extra, shares", [
    (LlamaConfig, {}, True),
    (Qwen2Config, {"use_sliding_window": False}, True),
    (MistralConfig, {"sliding_window": 16}, False),  # rows would attend past the window
    (Gemma2Config, {}, False),  # sliding windows and soft-capped logits
])
def test_shared_prefixes_only_for_full_causal_attention(config: type, extra: dict, shares: bool) -> None:
    small = config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=8, vocab_size=64, **extra)
    model = get_peft_model(AutoModelForCausalLM.from_config(small), LoraConfig(r=2, target_modules="all-linear"))
    assert attends_through_interface(model) == shares


def test_the_last_layer_runs_its_mlp_on_the_targets_only() -> None:
    model = tiny_lora()
    batch = PadCollator(pad_token_id=2, logits_on_targets=True, share_prefix=True)(
        features(list(range(40, 64)), [6, 0, 11, 3], [7, 12, 4, 9]))
    inputs = shared_prefix_inputs(batch, batch.pop("prefix_length"))
    layers = model.base_model.model.model.layers
    seen: list[int] = []
    for layer in layers:
        layer.mlp.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    labels = inputs.pop("labels")
    with shared_prefix_attention(model):
        model(**inputs)
    assert not layers[-1].mlp._forward_pre_hooks and not layers[-1]._forward_pre_hooks  # removed on leaving
    sequence = inputs["input_ids"].shape[1]
    assert seen == [sequence] * (len(layers) - 1) + [len(labels)]  # the last one: one position per target token
    assert len(labels) == 7 + 12 + 4 + 9


@pytest.mark.parametrize("config, narrowed", [(LlamaConfig, True), (MixtralConfig, False)])
def test_the_last_layer_is_narrowed_only_with_a_dense_mlp(config: type, narrowed: bool) -> None:
    # a mixture of experts balances its routing over every position: its last layer runs in full
    small = config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=8, vocab_size=64)
    model = get_peft_model(AutoModelForCausalLM.from_config(small), LoraConfig(r=2, target_modules=["q_proj"]))
    assert attends_through_interface(model)
    assert (_last_layer(model) is model.base_model.model.model.layers[-1]) == narrowed
