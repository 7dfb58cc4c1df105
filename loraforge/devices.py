"""What a device offers to `loraforge plan`: listed accelerators, this machine's CPU, time on them, calibration.

The table holds vendor datasheet numbers (dense bf16/fp16 tensor throughput without sparsity, memory, memory
bandwidth). The CPU is measured: a matmul loop bounded in size and in wall time for FLOP/s (or
`LORAFORGE_CPU_TFLOPS`), a copy loop for bandwidth (or `LORAFORGE_CPU_GBPS`), the machine's RAM for memory. bf16 on
a CPU without AVX512-BF16/AMX (`LORAFORGE_CPU_BF16=0` pretends so) is an emulation, not measured and not timed.
Times are FLOPs over peak × an assumed utilisation range (`loraforge.calibration` measures real steps instead).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from .errors import RecipeError, did_you_mean

GIB = 2**30


@dataclass(frozen=True)
class Device:
    name: str
    memory_gib: float
    #: dense 16-bit tensor throughput (TFLOP/s); None when unknown (a bare memory size)
    tflops: float | None
    #: memory bandwidth (GB/s), bounds decoding speed; None when unknown
    bandwidth_gbs: float | None
    gpu: bool = True
    bf16: bool = True
    note: str = ""

    @property
    def overhead_bytes(self) -> float:
        """Memory a training process holds beyond tensors: CUDA context and workspaces, or Python + libraries."""
        return (0.75 if self.gpu else 0.5) * GIB


#: name → (memory GiB, dense bf16 TFLOP/s, GB/s); vendor datasheets, SXM parts where there are two
DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("a100-40gb", 40, 312, 1555),
    Device("a100-80gb", 80, 312, 2039),
    Device("h100-80gb", 80, 989, 3350),
    Device("h200", 141, 989, 4800),
    Device("l4", 24, 121, 300),
    Device("rtx4090", 24, 165, 1008),
    Device("rtx3090", 24, 71, 936),
    Device("t4", 16, 65, 320, bf16=False, note="fp16: no bf16 tensor cores"),
)}


def resolve_device(text: str, *, bf16: bool | None = None) -> Device:
    """`cpu`, a table name, or `GiB[:TFLOPS]` (a GPU of that size; without TFLOP/s no time is predicted)."""
    name = text.strip().lower()
    if name == "cpu":
        return cpu_device(bf16)
    if name in DEVICES:
        return DEVICES[name]
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(?:gib|gb)?(?::(\d+(?:\.\d+)?))?", name)
    if m:
        tflops = float(m.group(2)) if m.group(2) else None
        return Device(f"{m.group(1)} GiB GPU", float(m.group(1)), tflops, None,
                      note="" if tflops else "no TFLOP/s given (use GiB:TFLOPS)")
    raise RecipeError(f"unknown device '{text}'{did_you_mean(name, [*DEVICES, 'cpu'])}", key="--device",
                      hint=f"Use one of: cpu, {', '.join(DEVICES)}; or a memory size in GiB, e.g. 48 or 48:200 "
                           "(GiB:TFLOPS).")


def cpu_memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


#: said wherever bf16 is asked of a CPU that only emulates it (over a hundred times slower than its fp32)
BF16_EMULATED = "bf16 is emulated on this CPU (no AVX512-BF16/AMX)"
BF16_FIX = "plan and run with --set training.precision=fp32 (or auto, which picks fp32 here)"


def cpu_device(bf16: bool | None = None) -> Device:
    """This machine: RAM, and throughput measured here unless LORAFORGE_CPU_TFLOPS / _GBPS configure it. bf16
    that the CPU only emulates gets no peak: its matmuls run at a sliver of fp32's, so a time from them would be
    days nobody should plan on, and measuring them alone could take minutes."""
    from .train import cpu_has_bf16

    native = cpu_has_bf16()
    bf16 = native if bf16 is None else bf16
    emulated = bf16 and not native
    configured = os.environ.get("LORAFORGE_CPU_TFLOPS")
    if configured or emulated:
        tflops = float(configured) if configured else None
    else:
        tflops = measure_matmul_tflops("bfloat16" if bf16 else "float32")
    gbps = os.environ.get("LORAFORGE_CPU_GBPS")
    return Device("cpu", round(cpu_memory_gib(), 1), tflops, float(gbps) if gbps else measure_bandwidth_gbs(),
                  gpu=False, bf16=bf16 and native, note=cpu_note(bool(configured), bf16, emulated))


def cpu_note(configured: bool, bf16: bool, emulated: bool) -> str:
    """Where the CPU's peak comes from, and, for emulated bf16, that no time follows from it and what to do."""
    if emulated and not configured:
        return f"{BF16_EMULATED}: no training time predicted; {BF16_FIX}"
    note = f"{'configured' if configured else 'measured'} {'bf16' if bf16 else 'fp32'} matmul, {os.cpu_count()} cores"
    return f"{note}; {BF16_EMULATED}: {BF16_FIX}" if emulated else note


def measure_matmul_tflops(dtype: str = "float32", seconds: float = 0.4, max_size: int = 2048) -> float:
    """Best square-matmul throughput: what dense layers can reach here, at most. Bounded in wall time whatever
    the dtype: from 64×64, the matrices double only while the next size's one multiply (≈ 8× the last) fits in
    half the time left, and the rest of the budget repeats the last size; a dtype the CPU emulates stops small
    after about `seconds` instead of running for minutes."""
    import torch

    kind, deadline, size, best = getattr(torch, dtype), time.perf_counter() + seconds, 64, 0.0
    while True:
        a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
        took = _matmul_seconds(a, b)  # the first one also starts the thread pool
        best = max(best, 2 * size**3 / took)
        if size >= max_size or 8 * took > (deadline - time.perf_counter()) / 2:
            break
        size *= 2
    while took < deadline - time.perf_counter():
        took = _matmul_seconds(a, b)
        best = max(best, 2 * size**3 / took)
    return best / 1e12


def _matmul_seconds(a: Any, b: Any) -> float:
    start = time.perf_counter()
    a @ b
    return max(time.perf_counter() - start, 1e-9)


def measure_bandwidth_gbs(mib: int = 64, repeats: int = 3) -> float:
    """Copy throughput (read + write) of a buffer larger than the caches: what bounds token-by-token decoding."""
    import torch

    src = torch.empty(mib * 2**20, dtype=torch.uint8)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() / best / 1e9


# --------------------------------------------------------------------------------------------- time on a device

#: model FLOPs utilisation assumed (low, high); on the CPU, of the measured matmul throughput, where a small model's
#: elementwise ops, attention and autograd bookkeeping weigh as much as its matmuls (the demo recipe trains at 22%
#: of the 2-core fp32 peak, the bench's plain Trainer+PEFT script at 13%); bf16 on a CPU with AMX peaks far higher
#: on large square matmuls than a model's steps reach (SmolLM2-135M on MACCROBAT: about 7% of it, bench/README.md)
MFU = {"gpu": (0.30, 0.60), "gpu-4bit": (0.20, 0.45), "gpu-8bit": (0.10, 0.30), "cpu": (0.15, 0.45),
       "cpu-bf16": (0.04, 0.12)}
#: eager `generate` costs at least this per decoding step (its Python loop) plus this per layer (kernel launches);
#: measured ≈ 3.8 ms a step for the 2-layer tiny model on this project's CPU machine
DECODE_STEP_S, DECODE_LAYER_S = 2e-3, 0.5e-3


def mfu_range(device: Device, bits: int | None = None) -> tuple[float, float]:
    """Training reaches 30-60 % of a GPU's peak; de-quantizing 4-bit weights before each matmul costs some,
    LLM.int8's outlier decomposition more."""
    if not device.gpu:
        return MFU["cpu-bf16" if device.bf16 else "cpu"]
    return MFU[{4: "gpu-4bit", 8: "gpu-8bit"}.get(bits, "gpu")]


def seconds_range(flops: float, tflops: float | None, mfu: tuple[float, float]) -> list[float] | None:
    """[fast, slow]: the FLOPs at the high and at the low end of the assumed utilisation."""
    return None if not tflops else [flops / (tflops * 1e12 * mfu[1]), flops / (tflops * 1e12 * mfu[0])]


def eval_seconds(records: int, batch: int, prompt_tokens: float, new_tokens: tuple[float, float], matmul: int,
                 layers: int, weight_bytes: float, device: Device, mfu: tuple[float, float]) -> list[float] | None:
    """Greedy decoding: a prefill of the prompts, then one step per new token that reads every weight once
    (bandwidth-bound), computes 2N per sequence (compute-bound), or waits on eager PyTorch's Python loop and
    kernel launches (2 ms + 0.5 ms a layer), whichever is slowest. Steps: from the mean training target length
    (typical answers) to max_new_tokens (the bound)."""
    if not device.tflops or not records:
        return None if records else [0.0, 0.0]
    out = []
    for steps, util in ((new_tokens[0], mfu[1]), (new_tokens[1], mfu[0])):
        peak = device.tflops * 1e12 * util
        step = max(weight_bytes / (device.bandwidth_gbs * 1e9) if device.bandwidth_gbs else 0.0,
                   2 * matmul * batch / peak, DECODE_STEP_S + layers * DECODE_LAYER_S)
        out.append(math.ceil(records / batch) * (2 * matmul * batch * prompt_tokens / peak + steps * step))
    return out
