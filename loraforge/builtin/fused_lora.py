"""Fused LoRA layers: PEFT's `lora.Linear`, with the base matmul, adapter dropout and B·A update in one autograd node.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling` as separate modules, so each LoRA layer records
about seven autograd nodes and draws a float dropout mask with `bernoulli_`. On a CPU, for the small matrices of
LoRA, that bookkeeping and the mask cost as much as the matmuls. `FusedLinear.forward` computes the same function
with one `torch.autograd.Function` and a cheaper mask:

* the mask is drawn as 16-bit integers from torch's own generator (one 64-bit draw yields four), so seeding,
  checkpoint recomputation and resuming behave exactly as for `nn.Dropout`; the drop probability is rounded to a
  multiple of 1/65536 (0.05 becomes 0.0500031). The comparison writes the mask as 0/1 in the compute dtype, as
  multiplying by a boolean mask would convert it on every use (on a CPU that conversion costs three times the
  multiply);
* the 1/(1-p) rescale is folded into the LoRA scaling rather than applied to the activations;
* backward is written out: the gradients of A and B, and of the input only when something upstream needs it.

Parameters, names and state dict are PEFT's own, so saving, loading and merging are unchanged. A layer takes the
fused path only when it is plain LoRA on a `torch.nn.Linear` with one active adapter (not DoRA, not quantized, not
merged, no LoRA bias, base weight frozen); anything else goes through PEFT's forward. Under autocast both matmuls
run in the autocast dtype, as they would with PEFT.
"""

from __future__ import annotations

import functools
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


@functools.cache
def _function() -> Any:
    import torch

    class LoraLinearFunction(torch.autograd.Function):
        """y = x·Wᵀ + bias + scale·((x ⊙ keep)·Aᵀ)·Bᵀ; W in `base_dtype`, A and B in `lora_dtype`."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, bias: Any, lora_a: Any, lora_b: Any, keep: Any, scale: float,
                    base_dtype: Any, lora_dtype: Any) -> Any:
            with torch.autocast(x.device.type, enabled=False):
                rows = x.reshape(-1, x.shape[-1])
                w = weight.to(base_dtype)
                xb = rows.to(base_dtype)
                y = xb @ w.t() if bias is None else torch.addmm(bias.to(base_dtype), xb, w.t())
                xl = rows.to(lora_dtype)
                if keep is not None:
                    xl = xl * keep.reshape(xl.shape)
                a, b = lora_a.to(lora_dtype), lora_b.to(lora_dtype)
                h = xl @ a.t()
                if base_dtype == lora_dtype:
                    y.addmm_(h, b.t(), alpha=scale)
                else:
                    y += (h @ b.t()).mul_(scale).to(base_dtype)
            ctx.save_for_backward(weight, lora_a, lora_b, xl, h, keep)
            ctx.scale, ctx.base_dtype, ctx.lora_dtype = scale, base_dtype, lora_dtype
            ctx.x_dtype, ctx.bias_dtype = x.dtype, None if bias is None else bias.dtype
            return y.view(*x.shape[:-1], y.shape[-1])

        @staticmethod
        def backward(ctx: Any, grad: Any) -> tuple[Any, ...]:
            weight, lora_a, lora_b, xl, h, keep = ctx.saved_tensors
            needs = ctx.needs_input_grad
            with torch.autocast(grad.device.type, enabled=False):
                rows = grad.reshape(-1, grad.shape[-1])
                gl = rows.to(ctx.lora_dtype)
                b = lora_b.to(ctx.lora_dtype)
                grad_b = (gl.t() @ h).mul_(ctx.scale).to(lora_b.dtype) if needs[4] else None
                gh = (gl @ b).mul_(ctx.scale)
                grad_a = (gh.t() @ xl).to(lora_a.dtype) if needs[3] else None
                grad_x = grad_bias = None
                if needs[0]:
                    back = gh @ lora_a.to(ctx.lora_dtype)
                    if keep is not None:
                        back = back * keep.reshape(back.shape)
                    grad_x = rows.to(ctx.base_dtype) @ weight.to(ctx.base_dtype)
                    grad_x = (grad_x + back.to(ctx.base_dtype)).to(ctx.x_dtype)
                    grad_x = grad_x.view(*grad.shape[:-1], grad_x.shape[-1])
                if ctx.bias_dtype is not None and needs[2]:
                    grad_bias = rows.sum(0).to(ctx.bias_dtype)
            return grad_x, None, grad_bias, grad_a, grad_b, None, None, None, None

    return LoraLinearFunction


def lora_linear(x: Any, weight: Any, bias: Any, lora_a: Any, lora_b: Any, scale: float, keep: Any = None,
                base_dtype: Any = None, lora_dtype: Any = None) -> Any:
    """The fused LoRA linear map. `keep` is the dropout mask; the caller folds 1/(1-p) into `scale`."""
    return _function().apply(x, weight, bias, lora_a, lora_b, keep, scale, base_dtype or weight.dtype,
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
            keep = None
            if self.training and isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                keep, p = keep_mask(x.shape, dropout.p, x.device, lora_dtype)
                scale = scale / (1 - p)
            return lora_linear(x, base.weight, base.bias, lora_a, lora_b, scale, keep, base_dtype, lora_dtype)

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
