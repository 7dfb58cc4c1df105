"""`loraforge plan --calibrate`: a few real training steps of a recipe on this machine, timed.

They run through the engine's own stages (`engine.trial`), with the arguments, collator and precision a run uses;
the first step is warm-up and is not timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .errors import RecipeError, RunError
from .recipe import Recipe


@dataclass
class Calibration:
    steps: int  # optimizer steps timed (the first one excluded)
    seconds: float
    padded_tokens: int  # tokens (padding included) the timed steps processed
    device: str
    params: dict[str, int]  # PEFT's count on the real model: {"trainable", "total"}

    @property
    def seconds_per_token(self) -> float:
        return self.seconds / self.padded_tokens


def measure_training(recipe: Recipe, steps: int) -> Calibration:
    """Run `steps` real optimizer steps of `recipe` here and time every step after the first (warm-up)."""
    import torch
    from transformers import TrainerCallback

    from . import engine

    if steps < 2:
        raise RecipeError("must be at least 2: the first step is warm-up and is not timed", key="--calibrate-steps")
    marks: list[float] = []
    sizes: list[int] = []  # padded size of every micro-batch, in order

    class Timer(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            marks.append(time.perf_counter())

    run = engine.trial(recipe, steps, [Timer()], lambda batch: sizes.append(int(batch["input_ids"].numel())))
    if len(marks) < 2:  # the Trainer stopped early (e.g. a non-finite loss)
        raise RunError(f"calibration ran {len(marks)} of {steps} steps; nothing to time", key="--calibrate-steps")
    per_step = recipe.training.gradient_accumulation_steps
    timed = sum(sizes[per_step:per_step * len(marks)])
    return Calibration(len(marks) - 1, marks[-1] - marks[0], timed, "cuda" if torch.cuda.is_available() else "cpu",
                       run.summary["params"])
