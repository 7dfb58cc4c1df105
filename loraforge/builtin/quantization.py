"""Builtin quantizers: `none` keeps the base weights as the loader loads them; `qlora` holds them in bitsandbytes
4-bit (NF4/FP4, double quantization) or 8-bit.

It runs on CUDA, and on the CPU where the installed bitsandbytes has CPU kernels for the chosen bit width
(bitsandbytes >= 0.49 trains 4-bit on the CPU). Support is probed by quantizing and running one tiny layer, so the
answer reflects the real library on the real machine rather than a version table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from ..components import CHECKPOINTING, Quantizer
from ..run import Run
from ..errors import RunError
from ..hookspecs import hookimpl
from ..schema import option


@dataclass
class QloraOptions:
    bits: Literal[4, 8] = option(4, help="Bits per base weight.")
    quant_type: Literal["nf4", "fp4"] = option("nf4", help="4-bit data type (NF4 is QLoRA's).")
    double_quant: bool = option(True, help="Quantize the quantization constants too (~0.4 bit/param saved).",
                                aliases=("use_double_quant",))
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", help="Dtype of the de-quantized matmuls; `auto` follows training.precision.")


@functools.cache
def _probe(bits: int, device: str) -> str | None:
    """None when bitsandbytes can run a `bits`-bit layer forward and backward on `device`, else the reason."""
    try:
        import bitsandbytes as bnb
        import torch
    except ImportError as exc:
        return f"bitsandbytes is not installed ({exc})"
    try:
        layer = torch.nn.Linear(64, 64, bias=False)
        if bits == 4:
            q = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
            q.weight = bnb.nn.Params4bit(layer.weight.data, requires_grad=False, quant_type="nf4")
        else:
            q = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False)
            q.weight = bnb.nn.Int8Params(layer.weight.data, requires_grad=False)
        q = q.to(device)
        x = torch.randn(2, 64, device=device, requires_grad=True)
        q(x).sum().backward()
        return None
    except Exception as exc:  # any failure means "cannot here"; the message says which
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


class FullPrecision(Quantizer):
    """`[quantization] type = "none"`: the weights in the loader's dtype, nothing added to `from_pretrained`."""

    def describe(self) -> str:
        return "not quantized"

    def load_kwargs(self, run: Run) -> dict[str, Any]:
        return {}

    def prepare(self, run: Run, model: Any) -> Any:
        if run.recipe.training.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)
        return model


class QloraQuantizer(Quantizer):
    Options = QloraOptions

    @property
    def bits(self) -> int:
        return self.options.bits

    @property
    def double_quant(self) -> bool:
        return self.options.bits == 4 and self.options.double_quant

    @property
    def compute_dtype_name(self) -> str:
        return self.options.compute_dtype

    def describe(self) -> str:
        return f"qlora {self.options.bits}-bit"

    @staticmethod
    def device() -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def check_supported(self, run: Run) -> None:
        device = self.device()
        reason = _probe(self.options.bits, device)
        if reason is not None:
            raise RunError(f"{self.options.bits}-bit quantization cannot run on this machine's {device}: {reason}",
                           key="quantization.type",
                           hint='Run on a CUDA GPU, try bits = 4 (which newer bitsandbytes runs on CPUs), or '
                                'train without quantization: --set quantization.type=none')

    def compute_dtype(self, run: Run) -> Any:
        import torch

        name = self.options.compute_dtype
        if name == "auto":
            name = {"bf16": "bfloat16", "fp16": "float16"}.get(run.precision, "float32")
        return getattr(torch, name)

    def load_kwargs(self, run: Run) -> dict[str, Any]:
        import os

        from transformers import BitsAndBytesConfig

        o = self.options
        if o.bits == 4:
            config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=o.quant_type,
                                        bnb_4bit_use_double_quant=o.double_quant,
                                        bnb_4bit_compute_dtype=self.compute_dtype(run))
        else:
            config = BitsAndBytesConfig(load_in_8bit=True)
        device = self.device()
        where = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if device == "cuda" else "cpu"
        return {"quantization_config": config, "device_map": {"": where}}

    def prepare(self, run: Run, model: Any) -> Any:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=run.recipe.training.gradient_checkpointing,
            gradient_checkpointing_kwargs=CHECKPOINTING)


@hookimpl
def register_quantizers(register: Any) -> None:
    register("none", FullPrecision)
    register("qlora", QloraQuantizer)
