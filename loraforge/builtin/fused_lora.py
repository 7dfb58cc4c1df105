"""Fused LoRA layers: PEFT's `lora.Linear`, with the base matmul, adapter dropout and B·A update in one autograd node.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate modules, so each LoRA layer records
about seven autograd nodes and draws a float dropout mask with `bernoulli_`. On a CPU, for the small matrices of
LoRA, that bookkeeping and the mask cost as much as the matmuls. `FusedLinear.forward` computes the same function
with one `torch.autograd.Function` and a cheaper mask:

* on a CPU, dropout draws only the positions it drops: the gaps between dropped elements are geometric, so about
  n·p uniforms are drawn instead of one number per element (one in twenty for p = 0.05), the dropped elements are
  zeroed by index, and backward keeps the indices (8 bytes per dropped element) rather than a mask. Elsewhere the
  mask is drawn as 16-bit integers (one 64-bit draw yields four) with the drop probability rounded to a multiple of
  1/65536, and written as 0/1 in the compute dtype (multiplying by a boolean mask would convert it on every use).
  Both draw from torch's own generator, so seeding, checkpoint recomputation and resuming behave exactly as for
  `nn.Dropout`;
* the 1/(1-p) rescale is folded into the LoRA scaling rather than applied to the activations;
* backward is written out: the gradients of A and B, and of the input only when something upstream needs it.

Parameters, names and state dict are PEFT's own, so saving, loading and merging are unchanged. A layer takes the
fused path only when it is plain LoRA on a `torch.nn.Linear` with one active adapter (not DoRA, not quantized, not
merged, no LoRA bias, base weight frozen); anything else goes through PEFT's forward. Under autocast both matmuls
run in the autocast dtype, as they would with PEFT.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

LEVELS = 1 << 16  # mask resolution: dropout probabilities are multiples of 1/65536


def keep_mask(shape: tuple[int, ...], p: float, device: Any, dtype: Any = None) -> tuple[Any, float]:
    """A mask of 1s and 0s in `dtype` (default: torch's default float) keeping each element with probability
    1 - p' (p' = p rounded to 1/65536), and p'."""
    import torch

    dropped = round(p * LEVELS)
    n = 1
    for size in shape:
        n *= size
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), (1 << 63) - 1)
    keep = torch.empty(shape, dtype=dtype or torch.get_default_dtype(), device=device)
    torch.ge(words.view(torch.int16)[:n].view(shape), dropped - (LEVELS >> 1), out=keep)
    return keep, dropped / LEVELS


def dropped_positions(n: int, p: float, device: Any = "cpu", draws: int | None = None) -> Any:
    """The sorted flat indices of the elements that dropout with probability `p` removes from `n` elements, each
    independently: the runs of kept elements between drops are geometric, floor(log(1 - u) / log(1 - p)).

    Uniforms are drawn `draws` at a time, by default enough to reach the end in all but about one call in 10^9;
    the positions depend only on the generator's state, not on `draws`."""
    import torch

    log_keep = math.log1p(-p)
    found, start = [], 0
    while True:
        left = (n - start) * p
        u = torch.empty(draws or int(left + 6 * math.sqrt(left) + 16), device=device).uniform_()
        ends = torch.log1p(u.neg_()).div_(log_keep).long().add_(1).cumsum_(0).add_(start - 1)
        last = int(ends[-1])
        if last >= n:
            found.append(ends[:int(torch.searchsorted(ends, n))])
            return torch.cat(found) if len(found) > 1 else found[0]
        found.append(ends)  # rarely: the draws ended short of n
        start = last + 1


def _dropped(t: Any, drop: Any, own: bool) -> Any:
    """`t` with the dropped elements zeroed; `drop` is a 0/1 keep mask or `dropped_positions`. With `own`, `t` is
    a fresh contiguous tensor that may be changed in place."""
    import torch

    if drop.is_floating_point():
        return t * drop.reshape(t.shape)
    if not own:
        t = t.clone(memory_format=torch.contiguous_format)
    t.view(-1).index_fill_(0, drop, 0)
    return t


def _as(t: Any, dtype: Any) -> Any:
    """`t` in `dtype`; no call at all when it already is (these layers run some 600 tensor calls a step)."""
    return t if t.dtype == dtype else t.to(dtype)


def _no_autocast(t: Any) -> Any:
    """A block that runs without autocast on `t`'s device; no context switch when autocast is off anyway."""
    import torch

    device = t.device.type
    return torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()


@functools.cache
def _function() -> Any:
    import torch

    class LoraLinearFunction(torch.autograd.Function):
        """y = x·Wᵀ + bias + scale·(drop(x)·Aᵀ)·Bᵀ; W in `base_dtype`, A and B in `lora_dtype`."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, bias: Any, lora_a: Any, lora_b: Any, drop: Any, scale: float,
                    base_dtype: Any, lora_dtype: Any) -> Any:
            with _no_autocast(x):
                rows = x.reshape(-1, x.shape[-1])
                xb, w = _as(rows, base_dtype), _as(weight, base_dtype)
                y = xb @ w.t() if bias is None else torch.addmm(_as(bias, base_dtype), xb, w.t())
                xl = _as(rows, lora_dtype)
                if drop is not None:
                    xl = _dropped(xl, drop, own=xl is not rows and xl.is_contiguous())
                a, b = _as(lora_a, lora_dtype), _as(lora_b, lora_dtype)
                h = xl @ a.t()
                if base_dtype == lora_dtype:
                    y.addmm_(h, b.t(), alpha=scale)
                else:
                    y += (h @ b.t()).mul_(scale).to(base_dtype)
            ctx.save_for_backward(weight, lora_a, lora_b, xl, h, drop)
            ctx.scale, ctx.base_dtype, ctx.lora_dtype = scale, base_dtype, lora_dtype
            ctx.x_dtype, ctx.bias_dtype = x.dtype, None if bias is None else bias.dtype
            return y.view(*x.shape[:-1], y.shape[-1])

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, ...]:
            weight, lora_a, lora_b, xl, h, drop = ctx.saved_tensors
            needs = ctx.needs_input_grad
            with _no_autocast(grad):
                rows = grad.reshape(-1, grad.shape[-1])
                gl = _as(rows, ctx.lora_dtype)
                grad_b = _as((gl.t() @ h).mul_(ctx.scale), lora_b.dtype) if needs[4] else None
                gh = (gl @ _as(lora_b, ctx.lora_dtype)).mul_(ctx.scale)
                grad_a = _as(gh.t() @ xl, lora_a.dtype) if needs[3] else None
                grad_x = grad_bias = None
                if needs[0]:
                    back = gh @ _as(lora_a, ctx.lora_dtype)
                    if drop is not None:
                        back = _dropped(back, drop, own=True)
                    if ctx.base_dtype == ctx.lora_dtype == ctx.x_dtype:
                        grad_x = back.addmm_(_as(rows, ctx.base_dtype), _as(weight, ctx.base_dtype))
                    else:
                        grad_x = _as(rows, ctx.base_dtype) @ _as(weight, ctx.base_dtype)
                        grad_x = (grad_x + back.to(ctx.base_dtype)).to(ctx.x_dtype)
                    grad_x = grad_x.view(*grad.shape[:-1], grad_x.shape[-1])
                if ctx.bias_dtype is not None and needs[2]:
                    grad_bias = _as(rows.sum(0), ctx.bias_dtype)
            return grad_x, None, grad_bias, grad_a, grad_b, None, None, None, None

    return LoraLinearFunction


def lora_linear(x: Any, weight: Any, bias: Any, lora_a: Any, lora_b: Any, scale: float, drop: Any = None,
                base_dtype: Any = None, lora_dtype: Any = None) -> Any:
    """The fused LoRA linear map. `drop` is the dropout: a `keep_mask` or `dropped_positions` of x's elements; the
    caller folds 1/(1-p) into `scale`."""
    return _function().apply(x, weight, bias, lora_a, lora_b, drop, scale, base_dtype or weight.dtype,
                             lora_dtype or lora_a.dtype)


@functools.cache
def fused_class() -> type:
    """A subclass of PEFT's `lora.Linear` whose forward takes the fused path when it can."""
    import torch
    from peft.tuners.lora.layer import Linear

    class FusedLinear(Linear):
        def fused_adapter(self, args: tuple, kwargs: dict) -> str | None:
            """The one active adapter if this call can take the fused path, else None."""
            if args or kwargs or self.merged or self.disable_adapters or len(self.active_adapters) != 1:
                return None
            name = self.active_adapters[0]
            if (name not in self.lora_A or name in self.lora_variant or self.lora_bias.get(name, False)
                    or type(self.base_layer) is not torch.nn.Linear or self.base_layer.weight.requires_grad
                    or not isinstance(self.lora_dropout[name], (torch.nn.Dropout, torch.nn.Identity))):
                return None
            return name

        def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
            name = self.fused_adapter(args, kwargs)
            if name is None:
                return super().forward(x, *args, **kwargs)
            base, lora_a, lora_b = self.base_layer, self.lora_A[name].weight, self.lora_B[name].weight
            device = x.device.type
            if torch.is_autocast_enabled(device):
                base_dtype = lora_dtype = torch.get_autocast_dtype(device)
            else:
                base_dtype, lora_dtype = base.weight.dtype, lora_a.dtype
            dropout, scale = self.lora_dropout[name], self.scaling[name]
            drop = None
            if self.training and isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                if x.device.type == "cpu":  # finding where the draws end costs a device sync elsewhere
                    drop, p = dropped_positions(x.numel(), dropout.p, x.device), dropout.p
                else:
                    drop, p = keep_mask(x.shape, dropout.p, x.device, lora_dtype)
                scale = scale / (1 - p)
            return lora_linear(x, base.weight, base.bias, lora_a, lora_b, scale, drop, base_dtype, lora_dtype)

    return FusedLinear


def fuse(model: Any) -> int:
    """Switch every PEFT `lora.Linear` of the model to the fused forward; returns how many layers were switched."""
    from peft.tuners.lora.layer import Linear

    fused = fused_class()
    count = 0
    for module in model.modules():
        if type(module) is Linear:
            module.__class__ = fused
            count += 1
    return count
