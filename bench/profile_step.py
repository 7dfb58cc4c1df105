"""Where a training step goes: torch.profiler over real Trainer steps of a recipe, grouped by kind of operation.

    python bench/profile_step.py [--recipe recipes/medical_ner_smol.toml] [--steps 8] [--set key=value ...]

Runs the recipe's own stages (load, tokenize, the Trainer with loraforge's collator, loss and frozen-weight cast)
for `--steps` optimizer steps, profiles every step after the first, and prints milliseconds per step by group:
matrix multiplies, attention, dropout, norms and activations, the loss, the optimizer, and the rest, then the ten
most expensive operations. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GROUPS = [  # first match wins; names are aten operations as the profiler reports them
    ("matrix multiplies", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "aten::_softmax")),
    ("dropout", ("dropout", "bernoulli", "geometric", "uniform_", "exponential_")),
    ("norms, rotary, activations", ("aten::pow", "aten::rsqrt", "aten::mean", "aten::silu", "aten::sigmoid",
                                    "aten::cos", "aten::sin", "aten::neg", "aten::cat")),
    ("loss (logits on targets)", ("log_softmax", "nll_loss", "cross_entropy", "aten::gather")),
    ("optimizer", ("_foreach", "addcdiv", "aten::lerp", "aten::sqrt")),
    ("dtype casts and copies", ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous")),
]


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "everything else (elementwise, indexing, per-op cost)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "medical_ner_smol.toml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    import torch
    from transformers import TrainerCallback

    from loraforge import engine
    from loraforge.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    marks: list[float] = []

    class Profiled(TrainerCallback):
        def on_step_end(self, *a: object, **k: object) -> None:
            marks.append(time.perf_counter())
            if len(marks) == 1:
                profiler.start()

    run = engine.trial(recipe, args.steps, [Profiled()])  # the run's own stages, arguments and precision
    profiler.stop()
    steps = len(marks) - 1
    if steps < 1:
        print("no step after the first was profiled", file=sys.stderr)
        return 1
    per_group: dict[str, float] = defaultdict(float)
    per_op: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        if event.key.startswith("aten::") or "attention" in event.key:
            per_op[event.key] += event.self_cpu_time_total / 1e3 / steps
    for name, ms in per_op.items():
        per_group[group_of(name)] += ms
    wall = (marks[-1] - marks[0]) / steps * 1e3
    print(f"{recipe.name}: {steps} profiled steps, {wall:.0f} ms a step under the profiler "
          f"({run.precision}, batch {recipe.training.batch_size})")
    for group, ms in sorted(per_group.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<52} {ms:8.0f} ms  {ms / wall:6.1%}")
    print("top operations (self time per step):")
    for name, ms in sorted(per_op.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {name:<52} {ms:8.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
