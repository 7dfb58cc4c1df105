"""The run context: what every stage, hook and component receives.

It sits below the stages (it imports none of them), so every module, hookspec and component can name its type.
Plugins read a Run; only the engine and the stages write it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .components import Adapter, Component, Example, Exporter, Metric, ModelLoader, Quantizer, Record, Task

if TYPE_CHECKING:
    from .evaluate import EvalContext
    from .plugins import Registry
    from .recipe import Recipe


@dataclass
class Progress:
    """Work advancing inside a phase (`on_progress`)."""

    done: int
    total: int
    unit: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepInfo:
    """The latest training log step (`on_step`)."""

    step: int
    max_steps: int
    epoch: float
    loss: float | None = None
    learning_rate: float | None = None
    eta_s: float | None = None
    tokens_per_s: float | None = None


@dataclass
class Components:
    """The run's components, each built once from the recipe table that names it."""

    model: ModelLoader
    task: Task
    adapter: Adapter
    quantization: Quantizer
    metrics: dict[str, Metric]  # by name, in the recipe's order
    exporters: list[Exporter]  # one per [[export]] table, in order

    def __iter__(self) -> Iterator[Component]:
        yield from (self.model, self.task, self.adapter, self.quantization, *self.metrics.values(), *self.exporters)


@dataclass
class Run:
    """Everything a stage, an observer or a component may look at."""

    recipe: Recipe
    registry: Registry
    out_dir: Path
    components: Components
    phase: str = "start"
    progress: Progress | None = None
    step: StepInfo | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    exports: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: BaseException | None = None
    started: float = field(default_factory=time.time)
    records: dict[str, list[Record]] = field(default_factory=dict)
    train_examples: list[Example] = field(default_factory=list)
    tokenizer: Any = None
    encoder: Any = None
    model: Any = None
    #: "bf16", "fp16" or "fp32": `training.precision` resolved for this machine when the model loads
    precision: str = "fp32"
    #: the split being scored while evaluation runs (its records, the training references); None otherwise
    evaluation: EvalContext | None = None
    #: what metrics.json reports besides the metrics: params, train and evaluation figures, data notes
    summary: dict[str, Any] = field(default_factory=dict)
    #: "auto" resumes from the latest checkpoint, "restart" starts over, anything else is a checkpoint path
    resume: str = "auto"
    resume_from: Path | None = None
    #: the run folder was given on the command line (so it may lie outside the working directory)
    out_dir_explicit: bool = False

    @property
    def hook(self) -> Any:
        return self.registry.pm.hook

    @property
    def rank(self) -> int:
        return int(os.environ.get("RANK", "0"))

    @property
    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def task(self) -> Task:
        return self.components.task

    def enter(self, phase: str) -> None:
        self.phase, self.progress = phase, None
        self.hook.on_phase(run=self)

    def report(self, done: int, total: int, unit: str, **info: Any) -> None:
        self.progress = Progress(done, total, unit, info)
        self.hook.on_progress(run=self)

    def warn(self, message: str) -> None:
        """Something the user should know that does not stop the run: kept for metrics.json, sent to `on_warning`."""
        self.warnings.append(message)
        self.hook.on_warning(run=self)
