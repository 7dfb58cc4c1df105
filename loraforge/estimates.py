"""The estimates behind `loraforge plan`: small pure functions over numbers from a model config, a recipe and
the data. Parameters are checked against PEFT on meta-device models in the tests; docs/plan.md gives the formulas.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from .devices import GIB
from .errors import RecipeError

#: assumption for the timeline: records one annotator collects and labels per day
RECORDS_PER_PERSON_DAY = 200
# ------------------------------------------------------------------------------------------ parameter math


@dataclass(frozen=True)
class Layer:
    """One module as PEFT sees it. Embeddings: d = num_embeddings, k = embedding_dim."""

    name: str
    kind: str  # "linear", "embedding" or "other"
    d: int = 0
    k: int = 0
    params: int = 0  # every parameter under the module (what a modules_to_save copy holds)
    bias: int = 0  # its own bias


@dataclass(frozen=True)
class Shapes:
    layers: tuple[Layer, ...]
    total: int  # base parameters (tied weights once)
    bias_params: int  # parameters with "bias" in their name: what bias="all" trains
    output: str | None  # the LM head: never quantized, never in "all-linear"


def meta_shapes(model: Any) -> Shapes:
    """Module shapes of a (meta) model: all the parameter and memory formulas need."""
    import torch
    from transformers.pytorch_utils import Conv1D

    layers = []
    for name, m in model.named_modules():
        params = sum(p.numel() for p in m.parameters())
        bias = getattr(m, "bias", None)
        bias = bias.numel() if isinstance(bias, torch.Tensor) else 0
        if isinstance(m, torch.nn.Linear):
            layers.append(Layer(name, "linear", m.in_features, m.out_features, params, bias))
        elif isinstance(m, Conv1D):  # GPT-2 style: weight is (in, out)
            layers.append(Layer(name, "linear", *m.weight.shape, params, bias))
        elif isinstance(m, torch.nn.Embedding):
            layers.append(Layer(name, "embedding", m.num_embeddings, m.embedding_dim, params))
        else:
            layers.append(Layer(name, "other", params=params, bias=bias))
    head = model.get_output_embeddings()
    output = next((n for n, m in model.named_modules() if m is head), None) if head is not None else None
    return Shapes(tuple(layers), sum(p.numel() for p in model.parameters()),
                  sum(p.numel() for n, p in model.named_parameters() if "bias" in n), output)


def saved_modules(shapes: Shapes, modules_to_save: list[str]) -> list[Layer]:
    """Modules PEFT copies and trains in full: names ending with an entry (PEFT's plain suffix test), outermost."""
    found: list[Layer] = []
    for layer in shapes.layers:
        if layer.name and any(layer.name.endswith(t) for t in modules_to_save) and \
                not any(layer.name.startswith(f"{f.name}.") for f in found):
            found.append(layer)
    return found


def lora_targets(shapes: Shapes, target_modules: list[str] | str, modules_to_save: list[str]) -> list[Layer]:
    """The layers PEFT adapts, with PEFT's matching: exact name or `.suffix`; a string is a full regex, except
    "all-linear" (every linear layer but the LM head); modules to save are never adapted."""
    if isinstance(target_modules, str) and target_modules.lower() == "all-linear":
        target_modules = [l.name for l in shapes.layers if l.kind == "linear" and l.name != shapes.output]
    found = []
    for layer in shapes.layers:
        if isinstance(target_modules, str):
            hit = re.fullmatch(target_modules, layer.name) is not None
        else:
            hit = layer.name in target_modules or any(layer.name.endswith(f".{t}") for t in target_modules)
        if not hit or any(re.match(rf"(^|.*\.){m}($|\..*)", layer.name) for m in modules_to_save):
            continue
        if layer.kind == "other":
            raise RecipeError(f"'{layer.name}' is not a linear or embedding layer; LoRA cannot adapt it",
                              key="adapter.target_modules")
        found.append(layer)
    return found


def lora_params(layer: Layer, r: int, use_dora: bool = False) -> int:
    """A (r×d) and B (k×r): r·(d+k); DoRA adds a magnitude per output feature (k)."""
    return r * (layer.d + layer.k) + (layer.k if use_dora else 0)


@dataclass(frozen=True)
class ParamCount:
    base: int
    lora: int  # A and B matrices
    dora: int  # magnitude vectors
    saved: int  # full copies of modules_to_save
    bias: int  # base biases made trainable by `bias`

    @property
    def trainable(self) -> int:
        return self.lora + self.dora + self.saved + self.bias

    @property
    def total(self) -> int:
        """PEFT's "all params": the base plus every parameter the adapter adds (copies included)."""
        return self.base + self.lora + self.dora + self.saved


def count_params(shapes: Shapes, r: int, target_modules: list[str] | str, modules_to_save: list[str] = (),
                 use_dora: bool = False, bias: str = "none") -> ParamCount:
    targets = lora_targets(shapes, target_modules, list(modules_to_save))
    trained_bias = {"none": 0, "all": shapes.bias_params, "lora_only": sum(l.bias for l in targets)}[bias]
    return ParamCount(shapes.total, sum(lora_params(l, r) for l in targets),
                      sum(l.k for l in targets) if use_dora else 0,
                      sum(l.params for l in saved_modules(shapes, list(modules_to_save))), trained_bias)


def param_rows(shapes: Shapes, r: int, target_modules: list[str] | str, modules_to_save: list[str] = (),
               use_dora: bool = False) -> list[dict[str, Any]]:
    """One row per target module type and shape: count, d×k, r, LoRA per module, totals, compression ratio."""
    groups: dict[tuple[str, int, int], list[Layer]] = {}
    for layer in lora_targets(shapes, target_modules, list(modules_to_save)):
        groups.setdefault((layer.name.rsplit(".", 1)[-1], layer.d, layer.k), []).append(layer)
    rows = []
    for (module, d, k), layers in groups.items():
        per = lora_params(layers[0], r, use_dora)
        full = sum(l.d * l.k for l in layers)
        rows.append(dict(module=module, count=len(layers), d=d, k=k, r=r, per_module=per, lora=per * len(layers),
                         full=full, ratio=full / (per * len(layers))))
    for layer in saved_modules(shapes, list(modules_to_save)):
        rows.append(dict(module=f"{layer.name} (saved in full)", count=1, d=layer.d, k=layer.k, r=None,
                         per_module=layer.params, lora=layer.params, full=layer.params, ratio=1.0))
    return rows


# --------------------------------------------------------------------------------------------- memory math


@dataclass(frozen=True)
class MemoryInputs:
    quantizable: int  # linear weights bitsandbytes quantizes: every linear layer but the LM head
    other: int  # embeddings, LM head, norms, biases
    trainable: int
    weight_bytes: float  # per unquantized base parameter
    bits: int | None  # 4 or 8 when quantized
    double_quant: bool
    optimizer_bytes: float  # optimizer state per trainable parameter
    layers: int
    hidden: int
    heads: int
    vocab: int
    batch: int
    seq: int
    logit_positions: int  # positions per sequence the LM head computes
    act_bytes: int  # bytes per activation value: 2 under bf16/fp16, 4 in fp32
    checkpointing: bool
    overhead: float


def quantized_bytes(n: int, bits: int, double_quant: bool) -> float:
    """NF4: 4 bits a weight plus one fp32 absmax per 64-block (0.5 bit/param); double quantization stores that
    absmax in 8 bits with an fp32 constant per 256 blocks (8/64 + 32/(64·256) ≈ 0.127 bit). 8-bit: 1 byte +
    an fp32 scale per row (ignored)."""
    if bits == 8:
        return float(n)
    return n / 2 + (n / 64 + 4 * n / (64 * 256) if double_quant else 4 * n / 64)


def optimizer_state_bytes(optimizer: str) -> float:
    """AdamW keeps two fp32 moments (8 bytes a parameter), 8-bit variants two bytes, plain SGD none."""
    name = optimizer.lower()
    if "8bit" in name:
        return 1.0 if "lion" in name else 2.0
    if name.startswith("sgd") or "adafactor" in name:
        return 0.0
    return 4.0 if "lion" in name else 8.0


def layer_activation_bytes(seq: int, batch: int, hidden: int, heads: int, act_bytes: int = 2) -> float:
    """Korthikanti et al. 2022: one transformer layer keeps s·b·h·(34 + 5·a·s/h) bytes at 16 bits for backward
    (the second term is the attention score matrices of eager attention; an upper bound under SDPA/flash)."""
    return seq * batch * hidden * (34 + 5 * heads * seq / hidden) * act_bytes / 2


def activation_bytes(m: MemoryInputs) -> float:
    """All layers; with gradient checkpointing only each layer's input (2·s·b·h at 16 bits) plus one layer
    recomputed in full during backward."""
    one = layer_activation_bytes(m.seq, m.batch, m.hidden, m.heads, m.act_bytes)
    if m.checkpointing:
        return m.layers * m.seq * m.batch * m.hidden * m.act_bytes + one
    return m.layers * one


def memory_breakdown(m: MemoryInputs) -> dict[str, float]:
    """Bytes per component at the training peak. Trainable parameters are fp32 (PEFT casts adapters up)."""
    weights = m.other * m.weight_bytes + (quantized_bytes(m.quantizable, m.bits, m.double_quant) if m.bits
                                          else m.quantizable * m.weight_bytes)
    return {
        "base weights": weights,
        "adapter weights": 4.0 * m.trainable,
        "gradients": 4.0 * m.trainable,
        "optimizer states": m.optimizer_bytes * m.trainable,
        "activations": activation_bytes(m),
        # fp32 log-softmax kept for backward, plus its gradient of the same size at the backward peak
        "logits": 8.0 * m.batch * m.logit_positions * m.vocab,
        "framework overhead": m.overhead,
    }


def fit_verdict(total: float, memory_gib: float) -> str:
    """Under 90 % fits; the last 10 % is "tight" (allocator fragmentation, longer outliers)."""
    return "fits" if total <= 0.9 * memory_gib * GIB else "tight" if total <= memory_gib * GIB else "does not fit"


def knobs(m: MemoryInputs, memory_gib: float, grad_accum: int, longest: int | None) -> list[dict[str, Any]]:
    """Recipe changes that cut memory, each alone, then all together, with the total each leaves."""
    options: list[tuple[list[str], MemoryInputs]] = []
    if not m.checkpointing:
        options.append((["training.gradient_checkpointing=true"], replace(m, checkpointing=True)))
    b = m.batch // 2
    while b > 1 and fit_verdict(sum(memory_breakdown(replace(m, batch=b)).values()), memory_gib) != "fits":
        b //= 2  # the largest batch that fits; more accumulation keeps the effective batch
    if b >= 1:
        accumulate = f"training.gradient_accumulation_steps={grad_accum * m.batch // b}"
        options.append(([f"training.batch_size={b}", accumulate], replace(m, batch=b)))
    if longest and longest < m.seq:  # the longest record of this data
        options.append(([f"training.max_length={longest}"],
                        replace(m, seq=longest, logit_positions=min(m.logit_positions, longest))))
    if m.bits != 4:
        options.append((["quantization.type=qlora", "quantization.bits=4"],
                        replace(m, bits=4, double_quant=True, weight_bytes=4.0)))
    if m.optimizer_bytes > 2:
        options.append((["training.optimizer=paged_adamw_8bit"], replace(m, optimizer_bytes=2.0)))
    if len(options) > 1:
        changed = {f: getattr(t, f) for _, t in options for f in MemoryInputs.__dataclass_fields__
                   if getattr(t, f) != getattr(m, f)}
        options.append(([a for sets, _ in options for a in sets], replace(m, **changed)))
    return [dict(set=sets, bytes=total, verdict=fit_verdict(total, memory_gib))
            for sets, t in options for total in [sum(memory_breakdown(t).values())]]


# ----------------------------------------------------------------------------------------------- time math


class EpochPositions(NamedTuple):
    """Positions of one epoch of training batches."""

    padded: int  # every row padded to its batch's longest
    head: int  # where the LM head runs
    shared: int  # saved by running each batch's common prefix once
    last_layer_skipped: int  # where the last layer of a shared-prefix batch runs no MLP (it feeds the LM head only)


def simulate_batches(lengths: list[int], prompts: list[int], batch: int, group_by_length: bool,
                     seed: int = 42, shared_prefix: int = 0) -> EpochPositions:
    """Each batch pads to its longest record; the Trainer's length-grouped sampler sorts shuffled mega-batches of
    up to 50 batches (fewer on small sets, so that there are at least 4). Logits start one before the batch's earliest target (prompts are masked out of the loss). A prefix of
    `shared_prefix` tokens common to every prompt runs once per batch, up to one before the batch's earliest
    target; such a batch computes logits, and its last layer's MLP, only where a target token follows."""
    from .data import shared_prefix_length

    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    if group_by_length:  # as transformers' get_length_grouped_indices
        mega = batch * max(1, min(len(order) // (4 * batch), 50))
        order = [i for s in range(0, len(order), mega)
                 for i in sorted(order[s:s + mega], key=lambda i: -lengths[i])]
    padded = head = shared = skipped = 0
    for s in range(0, len(order), batch):
        rows = order[s:s + batch]
        longest, first_target = max(lengths[i] for i in rows), min(prompts[i] for i in rows)
        padded += longest * len(rows)
        prefix = shared_prefix_length(shared_prefix, first_target) if len(rows) > 1 else 0
        if prefix:
            targets = sum(lengths[i] - prompts[i] for i in rows)
            head += targets
            shared += prefix * (len(rows) - 1)
            skipped += prefix + (longest - prefix) * len(rows) - targets
        else:
            head += (longest - max(first_target - 1, 0)) * len(rows)
    return EpochPositions(padded, head, shared, skipped)


def train_flops(padded: float, positions: float, body: int, head: int, lora: int, saved: int,
                attention: float, checkpointing: bool, head_trained: bool = False) -> float:
    """LoRA training FLOPs. Forward 2N per token; backward 2N for activation gradients only (frozen weights get
    no weight gradients), so ≈ 4N, not the 6N of full fine-tuning; adapters cost 6 per parameter (forward, input
    and weight gradients) and linear weights trained in full (`saved`) 2 more; checkpointing re-runs the layers'
    forward (≈ 6N). The head (N = body + head) runs only at `positions`; `attention` is the per-token forward
    attention cost (its backward is twice that)."""
    body_fwd = 2 * body + attention + 2 * lora
    per_token = 2 * body_fwd + attention + 2 * lora + 2 * saved + (body_fwd if checkpointing else 0)
    return padded * per_token + positions * (6 if head_trained else 4) * head


def data_prep_weeks(records: int, per_day: float = RECORDS_PER_PERSON_DAY) -> float:
    """Collecting and labelling every record by one person, five days a week (an assumption, not a measure)."""
    return records / per_day / 5
