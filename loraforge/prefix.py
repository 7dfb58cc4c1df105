"""Shared prefixes: a batch whose rows start with the same tokens (an instruction template, a system prompt) runs
that prefix once, as one sequence, with the loss and gradients of the batch.

The collator finds the prefix (`data.PadCollator`); the Trainer lays the batch out (`shared_prefix_inputs`) and
runs the model inside `shared_prefix_attention`, which swaps in an attention that knows the layout. The last
decoder layer only feeds the LM head, so there it computes attention and MLP only where the loss reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from typing import Any


def causal_lm(model: Any) -> Any:
    """The causal LM under the adapter (and under a DistributedDataParallel wrapper)."""
    from torch.nn.parallel import DistributedDataParallel

    model = model.module if isinstance(model, DistributedDataParallel) else model
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the causal LM under the adapter can compute logits for the last positions only."""
    import inspect

    return "logits_to_keep" in inspect.signature(causal_lm(model).forward).parameters


def attends_through_interface(model: Any) -> bool:
    """Whether `shared_prefix_attention` can run the causal LM under the adapter: its attention goes through
    transformers' attention interface (`_supports_attention_backend`) and is full causal attention in every layer
    (no sliding or chunked windows, no logit soft-capping)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    lm = causal_lm(model)
    config = lm.config
    return (getattr(lm, "_supports_attention_backend", False) and config._attn_implementation is not None
            and getattr(config, "attn_logit_softcapping", None) is None
            and all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers))


@dataclasses.dataclass(frozen=True)
class PrefixLayout:
    """A batch laid out as one sequence: `prefix` shared tokens, then `rows` rows of `length` tokens each. The loss
    reads the logits at `targets` (sequence positions, in order), all within the last `kept` tokens of each row.
    `last` marks the last decoder layer's view of it (`_last_layer_on_targets`)."""

    prefix: int
    rows: int
    length: int
    kept: int
    targets: Any
    last: bool = False

    def at_targets(self, x: Any) -> Any:
        """[1, sequence, ...] → [1, targets, ...]"""
        return x.index_select(1, self.targets)

    def from_targets(self, x: Any) -> Any:
        """The inverse of `at_targets`, with zeros at every other position (which no later computation reads)."""
        return x.new_zeros(1, self.prefix + self.rows * self.length, *x.shape[2:]).index_copy(1, self.targets, x)


def shared_prefix_inputs(inputs: dict[str, Any], prefix: int) -> dict[str, Any]:
    """The batch as one sequence: row 0's first `prefix` tokens once, then every row's remaining tokens.

    Each row keeps its own positions (the prefix's, then its own) and attends to the prefix and to itself
    (`shared_prefix_attention`). Logits are computed only where a label follows, and `labels` become those labels,
    one per logit (1-D; `data.target_loss` reads them so). The loss and gradients equal those of the batch (the
    tests check it); the prefix's activations are computed once, and their gradients sum over the rows. Adapter
    dropout draws once for the prefix instead of once per row.

    What each row attends to, [rows, 1, length, prefix + length], goes in as `attention_mask`: a prepared 4D mask,
    which the model hands to the attention as it is instead of building a causal mask over the whole sequence."""
    import torch

    from .data import IGNORE_INDEX

    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"].bool(), inputs["labels"]
    rows, length = ids.shape[0], ids.shape[1] - prefix
    device = ids.device
    positions = torch.arange(prefix + length, device=device)
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    attends = torch.cat([torch.ones(rows, 1, length, prefix, dtype=torch.bool, device=device),
                         causal & mask[:, None, None, prefix:]], dim=-1)
    following = labels[:, prefix + 1:]  # the label each row position predicts
    scored = following != IGNORE_INDEX
    row, column = scored.nonzero(as_tuple=True)
    targets = prefix + row * length + column
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "logits_to_keep", "labels")}
    return {**rest,
            "input_ids": torch.cat([ids[0, :prefix], ids[:, prefix:].reshape(-1)])[None],
            "position_ids": torch.cat([positions[:prefix], positions[prefix:].repeat(rows)])[None],
            "logits_to_keep": targets,
            "labels": following[scored],
            "attention_mask": attends,
            "use_cache": False,
            "shared_prefix": PrefixLayout(prefix, rows, length, inputs["logits_to_keep"], targets)}


def _prefix_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                      scaling: float | None = None, shared_prefix: PrefixLayout | None = None,
                      **kwargs: Any) -> tuple[Any, None]:
    """Attention over a `PrefixLayout` sequence (query, key, value: [1, heads, prefix + rows × length, dim]):
    the prefix attends causally to itself, each row to the prefix and causally to itself (`attention_mask`).
    In the last layer only the rows' kept tails attend; every other position gets zeros."""
    import torch

    layout = shared_prefix
    dtype = query.dtype
    if query.device.type == "cpu":
        # the CPU flash kernel runs bf16 (which autocast would pick) slower than fp32, backward most: SmolLM2's
        # heads, 16 rows of 115 tokens after a 75-token prefix, 34 ms against 23 ms forward and backward
        with torch.autocast("cpu", enabled=False):
            out, _ = _prefix_attention_in(module, query.float(), key.float(), value.float(), attention_mask,
                                          dropout, scaling, layout)
        return out.to(dtype), None
    return _prefix_attention_in(module, query, key, value, attention_mask, dropout, scaling, layout)


def _prefix_attention_in(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float,
                         scaling: float | None, layout: PrefixLayout) -> tuple[Any, None]:
    import torch
    import torch.nn.functional as F

    p, rows, length, skip = layout.prefix, layout.rows, layout.length, layout.length - layout.kept
    heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[-1]
    gqa = {}
    if heads != kv_heads:
        if query.device.type == "cpu":  # CUDA's fused kernels take grouped heads only without a mask
            gqa["enable_gqa"] = True
        else:
            key, value = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (key, value))
            kv_heads = heads

    def by_row(t: Any, n: int) -> Any:
        return t[0, :, p:].view(n, rows, length, dim).transpose(0, 1)

    keys, values = (torch.cat([t[:, :, :p].expand(rows, -1, -1, -1), by_row(t, kv_heads)], dim=2)
                    for t in (key, value))
    if layout.last:
        rows_out = F.scaled_dot_product_attention(by_row(query, heads)[:, :, skip:], keys, values,
                                                  attn_mask=attention_mask[:, :, skip:], dropout_p=dropout,
                                                  scale=scaling, **gqa)
        rows_out = F.pad(rows_out.transpose(1, 2), (0, 0, 0, 0, skip, 0))  # zeros before the tails
        return torch.cat([query.new_zeros(1, p, heads, dim), rows_out.reshape(1, rows * length, heads, dim)], 1), None
    prefix_out = F.scaled_dot_product_attention(query[:, :, :p], key[:, :, :p], value[:, :, :p], dropout_p=dropout,
                                                is_causal=True, scale=scaling, **gqa)
    rows_out = F.scaled_dot_product_attention(by_row(query, heads), keys, values, attn_mask=attention_mask,
                                              dropout_p=dropout, scale=scaling, **gqa)
    out = torch.cat([prefix_out[0].transpose(0, 1), rows_out.transpose(1, 2).reshape(rows * length, heads, dim)])
    return out[None], None


_ATTENTION_PREFIX = "loraforge_shared_prefix_"


def register_attention(name: str, attention: Any, original: str) -> str:
    """Register `attention` under `name` as an attention implementation, with the masks `original` uses."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(name, attention)
    if original in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    return name


@functools.cache
def attention_wrapped(original: str) -> str:
    """Register, once per attention implementation, one that runs `PrefixLayout` sequences itself and hands
    everything else to `original` (masks included)."""
    if original.startswith(_ATTENTION_PREFIX):
        return original
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def attention(module: Any, *args: Any, shared_prefix: PrefixLayout | None = None, **kwargs: Any) -> Any:
        if shared_prefix is not None:
            return _prefix_attention(module, *args, shared_prefix=shared_prefix, **kwargs)
        return ALL_ATTENTION_FUNCTIONS[original](module, *args, **kwargs)

    return register_attention(_ATTENTION_PREFIX + original, attention, original)


def _last_layer(model: Any) -> Any:
    """The decoder layer whose output only the final norm and the LM head read, when its feed-forward block is a
    dense, position-wise `mlp` (a mixture of experts balances its routing over every position: not narrowed)."""
    import torch

    lm = causal_lm(model)
    config = lm.config
    if any(getattr(config, name, None) for name in ("num_experts", "num_local_experts", "n_routed_experts")):
        return None
    layers = getattr(lm.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) != config.num_hidden_layers:
        return None
    last = layers[-1]
    return last if isinstance(getattr(last, "mlp", None), torch.nn.Module) else None


@contextlib.contextmanager
def _last_layer_on_targets(model: Any) -> Iterator[None]:
    """While open, the last decoder layer of a `PrefixLayout` sequence runs its attention queries on the rows' kept
    tails only and its MLP on the target positions only; its other positions come out as they went in (plus zeros),
    and nothing reads them: the LM head takes the targets."""
    layer = _last_layer(model)
    if layer is None:
        yield
        return
    seen: dict[str, PrefixLayout | None] = {}

    def see(module: Any, args: tuple, kwargs: dict) -> Any:
        layout = seen["layout"] = kwargs.get("shared_prefix")
        if layout is None:
            return None
        return args, {**kwargs, "shared_prefix": dataclasses.replace(layout, last=True)}

    def narrow(module: Any, args: tuple) -> Any:
        layout = seen.get("layout")
        return None if layout is None else (layout.at_targets(args[0]), *args[1:])

    def widen(module: Any, args: tuple, out: Any) -> Any:
        layout = seen.get("layout")
        return None if layout is None else layout.from_targets(out)

    handles = [layer.register_forward_pre_hook(see, with_kwargs=True),
               layer.mlp.register_forward_pre_hook(narrow), layer.mlp.register_forward_hook(widen)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def shared_prefix_attention(model: Any) -> Iterator[None]:
    """While open, the model runs `shared_prefix_inputs` batches (forward and backward, checkpoint
    recomputation included) and every other batch as before."""
    config = causal_lm(model).config
    original = config._attn_implementation
    if original.startswith(_ATTENTION_PREFIX):  # already open
        yield
        return
    config._attn_implementation = attention_wrapped(original)
    try:
        with _last_layer_on_targets(model):
            yield
    finally:
        config._attn_implementation = original
