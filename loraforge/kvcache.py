"""KV caches for batched generation (`loraforge.evaluate`).

Two costs dominate greedy decoding of many rows on a CPU, both in memory traffic rather than arithmetic:

- the default cache concatenates every layer's keys and values again at every step (and, where autocast runs
  attention in bf16 on an fp32 model, casts the whole of them at every read): `batch_cache` allocates each layer's
  room once per batch, in the autocast dtype, and writes each step's keys in place;
- a prompt prefix every row shares (a chat template's system turn, an instruction, k-shot examples) would be held,
  and read at every step, once per row: with a `PrefixCache` it is held once, and `shared_prefix_decoding` swaps
  in an attention that reads it once for all rows (queries of every row against the prefix keys in one matmul,
  then against each row's own keys, one softmax over both).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: the cache of the batch being generated under `shared_prefix_decoding`, read by its attention
_DECODING: contextvars.ContextVar[Any] = contextvars.ContextVar("loraforge_decoding", default=None)


@dataclass
class PrefixCache:
    """The tokens every prompt of a pass starts with and their keys and values (one row), computed once for the
    whole pass instead of once per row; `shared`: held once for all rows of a batch (`shared_prefix_decoding`
    applies to the model), else copied to every row."""

    ids: list[int]
    cache: Any
    shared: bool


def batch_cache(rows: int, positions: int, dtype: Any, prefix: PrefixCache | None) -> Any:
    """A cache for one batch of `rows` with room for `positions` (prefix, prompts and answers), held in `dtype`
    (None: as computed). A `shared` prefix is held once (for `shared_prefix_decoding`, in fp32), any other copied
    to every row."""
    import torch

    layer = _growing_layer()
    share = prefix is not None and prefix.shared
    dtype = torch.float32 if share else dtype  # `prefix_attention` computes in fp32: the scores are not rounded
    if prefix is None:
        return _cache_of(layer_class_to_replicate=lambda: layer(positions, dtype))
    layers = []
    for cached in prefix.cache.layers:
        grown = layer(positions - len(prefix.ids) if share else positions, dtype)
        if share:
            grown.share(cached.keys, cached.values)
        else:
            grown.update(cached.keys.expand(rows, -1, -1, -1), cached.values.expand(rows, -1, -1, -1))
        layers.append(grown)
    return _cache_of(layers=layers)


def _cache_of(**layers: Any) -> Any:
    """A DynamicCache (the class generation expects) of the given layers."""
    from transformers import Cache, DynamicCache

    cache = DynamicCache.__new__(DynamicCache)
    Cache.__init__(cache, **layers)
    return cache


@functools.cache
def _growing_layer() -> type:
    import torch
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """One layer's keys and values in a buffer with room for `capacity` positions (doubled if ever short),
        after an optional shared prefix held once (`share`); `keys`/`values` are the rows' own positions then."""

        def __init__(self, capacity: int, dtype: Any = None) -> None:
            super().__init__()
            self.capacity, self.dtype, self.length = capacity, dtype, 0
            self.prefix_keys = self.prefix_values = None

        def share(self, keys: Any, values: Any) -> None:
            self.prefix_keys, self.prefix_values = (t.to(self.dtype or t.dtype) for t in (keys, values))

        @property
        def shared(self) -> int:
            return 0 if self.prefix_keys is None else self.prefix_keys.shape[-2]

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            self.device = key_states.device
            self._keys, self._values = (self._buffer(t, self.capacity) for t in (key_states, value_states))
            self.is_initialized = True

        def _buffer(self, like: Any, capacity: int) -> Any:
            rows, heads, _, dim = like.shape
            return torch.empty((rows, heads, capacity, dim), dtype=self.dtype or like.dtype, device=like.device)

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self._keys.shape[-2]:
                self._keys, self._values = (self._grown(t, 2 * end) for t in (self._keys, self._values))
            self._keys[:, :, self.length:end] = key_states
            self._values[:, :, self.length:end] = value_states
            self.length = end
            self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
            return self.keys, self.values

        def _grown(self, buffer: Any, capacity: int) -> Any:
            bigger = self._buffer(buffer, capacity)
            bigger[:, :, :self.length] = buffer[:, :, :self.length]
            return bigger

        def get_seq_length(self) -> int:
            return self.shared + (self.length if self.is_initialized else 0)

    return GrowingLayer


def cache_argument(model: Any) -> str:
    """What the model calls its cache, as an argument and an output: `cache` (transformers 5.2x on), or the
    older `past_key_values`."""
    import inspect

    from .prefix import causal_lm

    return "cache" if "cache" in inspect.signature(causal_lm(model).forward).parameters else "past_key_values"


@contextlib.contextmanager
def shared_prefix_decoding(model: Any, cache: Any) -> Iterator[None]:
    """While open, attention of `model` reads the prefix `cache` holds once (`batch_cache` of a `shared` prefix).
    Applies where shared prefixes apply in training (`prefix.attends_through_interface`)."""
    from .prefix import causal_lm

    config = causal_lm(model).config
    original = config._attn_implementation
    config._attn_implementation = decoding_wrapped(original)
    token = _DECODING.set(cache)
    try:
        yield
    finally:
        _DECODING.reset(token)
        config._attn_implementation = original


_DECODING_PREFIX = "loraforge_prefix_decoding_"


@functools.cache
def decoding_wrapped(original: str) -> str:
    """Register, once per attention implementation, one that reads a prefix held once (`decoding_layer`) itself
    and hands every other layer to `original` (masks included)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from .prefix import register_attention

    def attention(module: Any, *args: Any, **kwargs: Any) -> Any:
        layer = decoding_layer(module)
        if layer is not None:
            return prefix_attention(layer, *args[:4], scaling=kwargs.get("scaling"))
        return ALL_ATTENTION_FUNCTIONS[original](module, *args, **kwargs)

    return register_attention(_DECODING_PREFIX + original, attention, original)


def decoding_layer(module: Any) -> Any | None:
    """The cache layer of `module` (an attention layer) when it holds a shared prefix, else None."""
    cache = _DECODING.get()
    if cache is None:
        return None
    index = getattr(module, "layer_idx", None)
    layer = cache.layers[index] if index is not None and index < len(cache.layers) else None
    return layer if layer is not None and getattr(layer, "shared", 0) else None


def prefix_attention(layer: Any, query: Any, key: Any, value: Any, attention_mask: Any,
                     scaling: float | None = None) -> tuple[Any, None]:
    """Attention of every row's queries (query: [rows, heads, q, dim]) over the layer's shared prefix (held once:
    [1, kv_heads, P, dim]) and the rows' own keys (key, value: [rows, kv_heads, S, dim], the last q of them the
    queries' own). `attention_mask` covers P + S positions (the model builds it from the cache's length).

    In fp32 whatever the autocast dtype: bf16 scores would be rounded before the softmax. A decoding step (q = 1)
    reads the prefix once for all rows: every row's query against the prefix keys in one matmul per key head, one
    softmax over prefix and own scores. The rows' first step (their prompts) runs once
    per batch, as plain attention over the prefix repeated."""
    import torch
    import torch.nn.functional as F

    rows, heads, q, dim = query.shape
    kv_heads, own = key.shape[1], key.shape[2]
    pk, pv = layer.prefix_keys, layer.prefix_values
    p = pk.shape[2]
    scale = scaling if scaling is not None else dim ** -0.5
    allowed = _own_mask(attention_mask, p, q, own, query.device)
    if q > 1:
        keys, values = (torch.cat([t.expand(rows, -1, -1, -1), k], dim=2) for t, k in ((pk, key), (pv, value)))
        if allowed is not None:
            allowed = torch.cat([allowed.new_ones((*allowed.shape[:3], p)), allowed], dim=-1)
        out = F.scaled_dot_product_attention(query.float(), keys, values, attn_mask=allowed, scale=scale,
                                             enable_gqa=heads != kv_heads)
        return out.to(query.dtype).transpose(1, 2).contiguous(), None
    group = heads // kv_heads
    grouped = (query.float() * scale).view(rows, kv_heads, group, dim)  # query head h reads kv head h // group
    folded = grouped.transpose(0, 1).reshape(kv_heads, rows * group, dim)
    on_prefix = torch.bmm(folded, pk[0].transpose(1, 2)).view(kv_heads, rows, group, p).transpose(0, 1)
    scores = torch.cat([on_prefix, torch.matmul(grouped, key.transpose(2, 3))], dim=-1)
    if allowed is not None:
        scores[..., p:].masked_fill_(~allowed, float("-inf"))
    probs = scores.softmax(dim=-1)
    from_prefix = torch.bmm(probs[..., :p].transpose(0, 1).reshape(kv_heads, rows * group, p), pv[0])
    out = from_prefix.view(kv_heads, rows, group, dim).transpose(0, 1) + torch.matmul(probs[..., p:], value)
    return out.reshape(rows, 1, heads, dim).to(query.dtype), None


def _own_mask(attention_mask: Any, p: int, q: int, own: int, device: Any) -> Any | None:
    """Which of the rows' own positions each query may attend to, [rows, 1, q, S] bool (None: all of them)."""
    import torch

    if attention_mask is not None:
        mask = attention_mask[..., -q:, p:]
        return mask if mask.dtype == torch.bool else mask == 0
    if q == 1:
        return None
    positions = torch.arange(own, device=device)
    return (positions[None, :] <= positions[-q:, None])[None, None]
