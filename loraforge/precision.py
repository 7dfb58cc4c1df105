"""Frozen base weights held in the autocast dtype while a model trains or generates under bf16/fp16 autocast.

Autocast casts each fp32 weight to the compute dtype at every matmul, forward and backward: for a small model on a
CPU those copies cost as much as a third of the matmuls themselves (SmolLM2-135M: ~0.4 s of a 4 s step). A frozen
weight never changes, so casting it once gives the very values autocast would make each time (the same rounding),
and the same outputs and gradients. Only plain `torch.nn.Linear` weights are cast. A head tied to the embedding
gets a cast copy of its own while open (the lookup must keep returning fp32): casting SmolLM2's 49k × 576 head at
every decoding step cost 72 ms a step. The originals come back on leaving, ties included, so export, merging and
anything run outside autocast see the model as loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def _frozen_linears(model: Any, dtype: Any) -> tuple[list[Any], list[Any]]:
    """(untied, tied): frozen fp32 `Linear`s to cast, those whose weight another module (an embedding) shares."""
    import torch

    shared = {id(p) for m in model.modules() if not isinstance(m, torch.nn.Linear) for p in m.parameters(recurse=False)}
    layers = [m for m in model.modules()
              if type(m) is torch.nn.Linear and not m.weight.requires_grad and m.weight.dtype == torch.float32
              and m.weight.device.type != "meta"]
    return [m for m in layers if id(m.weight) not in shared], [m for m in layers if id(m.weight) in shared]


@contextlib.contextmanager
def frozen_weights_in(model: Any, dtype: Any) -> Iterator[int]:
    """While open, every frozen fp32 `Linear` weight of `model` is held in `dtype` (yields how many); `dtype` None
    or float32 changes nothing. Run the model under autocast of the same dtype only."""
    import torch

    untied, tied = ([], []) if dtype is None or dtype == torch.float32 else _frozen_linears(model, dtype)
    originals = [layer.weight.data for layer in untied]
    shared = [layer.weight for layer in tied]
    for layer in untied:
        layer.weight.data = layer.weight.data.to(dtype)
    for layer in tied:
        layer.weight = torch.nn.Parameter(layer.weight.data.to(dtype), requires_grad=False)
    try:
        yield len(untied) + len(tied)
    finally:
        for layer, weight in zip(untied, originals):
            layer.weight.data = weight
        for layer, parameter in zip(tied, shared):
            layer.weight = parameter


def autocast_dtype(precision: str) -> Any:
    """The torch dtype a resolved `training.precision` computes in under autocast, or None for fp32."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def _mergeable(layer: Any) -> str | None:
    """The one active adapter of a plain LoRA layer on a frozen `Linear`, whose effect is the weight delta alone."""
    import torch

    if layer.merged or layer.disable_adapters or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    base = layer.base_layer
    if (name not in layer.lora_A or name in getattr(layer, "lora_variant", {}) or layer.lora_bias.get(name, False)
            or type(base) is not torch.nn.Linear or base.weight.requires_grad):
        return None
    return name


@contextlib.contextmanager
def merged_for_inference(model: Any, dtype: Any = None) -> Iterator[int]:
    """While open, each plain LoRA layer runs as one matmul with W + ΔW (in `dtype`, else W's) instead of three, its
    adapter path switched off; yields how many. For generation, not training: nothing here has gradients. The
    weights and switches come back as they were on leaving (no unmerge arithmetic, so no rounding left behind)."""
    import torch
    from peft.tuners.lora import LoraLayer

    swapped = []
    with torch.no_grad():
        for layer in model.modules():
            name = _mergeable(layer) if isinstance(layer, LoraLayer) else None
            if name is None:
                continue
            weight = layer.base_layer.weight
            merged = weight.data + layer.get_delta_weight(name).to(weight.dtype)
            swapped.append((layer, weight.data, layer._disable_adapters))
            weight.data = merged.to(dtype) if dtype is not None else merged
            layer._disable_adapters = True
    try:
        yield len(swapped)
    finally:
        for layer, original, disabled in swapped:
            layer.base_layer.weight.data = original
            layer._disable_adapters = disabled
