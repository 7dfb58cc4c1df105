"""The small contracts every plugin component implements.

A plugin registers *factories* (usually the class itself) under a name; the engine builds a component by
calling `factory(options)` where `options` is an instance of the factory's `Options` dataclass, parsed from the
recipe section that named it. Heavy libraries (torch, transformers, peft) are imported inside methods so that
`--help`, `validate`, `plugins` and `plan` start fast.

One context for every kind: a method that needs more than its own options receives the run (`loraforge.run.Run`)
as its first argument: the recipe (`run.recipe`), the resolved precision, the tokenizer, the other components, the
split being scored. A task's record methods (`format`, `parse`, ...) are pure functions of their options and the
record, and receive no run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import DataError
from .schema import NoOptions

if TYPE_CHECKING:
    from .constraints import Constraint
    from .run import Run


@dataclass(frozen=True)
class Record:
    """One input record and where it came from, so data errors can name file and line."""

    data: dict[str, Any]
    file: str
    line: int

    def error(self, message: str, hint: str | None = None) -> DataError:
        """A DataError located at this record: `raise record.error("...", hint="...")`."""
        return DataError(message, file=self.file, line=self.line, hint=hint)


@dataclass(frozen=True)
class Example:
    """A record formatted for a causal LM: the loss is computed on `target` only."""

    prompt: str
    target: str


class Component:
    """Common shape: typed options, built from the recipe section that names the component."""

    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def configure(self, run: Run) -> None:
        """Called once every component is built, before any data is read (by `run`, `validate` and `plan` alike).

        Options come from the component's own table; override this to read what lies elsewhere, such as a plugin's
        own recipe section (`run.recipe.sections["name"]`). Raise RecipeError for a problem, naming the key.
        """

    def describe(self) -> str:
        """A few words for tables and messages (the model's name, "lora r=16", "qlora 4-bit")."""
        return type(self).__name__


class Task(Component, ABC):
    """Formats records into prompt/target text and parses generations back into structure."""

    #: metric names used when `[evaluation] metrics` is not given
    default_metrics: ClassVar[tuple[str, ...]] = ()
    #: file formats this task reads itself (e.g. "conll"), beyond jsonl and csv
    formats: ClassVar[tuple[str, ...]] = ()

    def read(self, path: Path, fmt: str) -> Iterable[Record]:
        """Read a file in one of `formats`; jsonl and csv are read by the core."""
        raise NotImplementedError(fmt)

    def read_report(self, path: Path) -> str | None:
        """After `read(path, ...)` was consumed: one line on what was kept and dropped (shown to the user and kept
        in metrics.json), or None."""
        return None

    def check(self, record: Record) -> None:
        """Raise DataError (naming record.file and record.line) when a record cannot be used."""

    @abstractmethod
    def format(self, record: Record) -> Example:
        """Prompt and target text; the prompt goes through the tokenizer's chat template when it has one."""

    @abstractmethod
    def reference(self, record: Record) -> Any:
        """The gold structure a metric compares predictions against."""

    @abstractmethod
    def parse(self, generated: str, record: Record) -> Any:
        """The structure of a generation; must never raise on malformed text (count it as a miss)."""

    def constraint(self, record: Record) -> Constraint | None:
        """The well-formed answers to this record, for constrained decoding (`evaluation.constrained`); None leaves
        generation free. See `loraforge.constraints`."""
        return None

    def stops(self, generated: str) -> bool:
        """True ends a generation now, before its token budget: for answers a model may repeat without end (a
        k-shot base model caught in a loop). Asked at every new token with the text so far; by default never."""
        return False

    def max_new_tokens(self, examples: Sequence[Example], count_tokens: Any) -> int:
        """Bound for generation: by default 1.5x the longest training target, plus a margin."""
        longest = max((count_tokens(e.target) for e in examples), default=32)
        return int(longest * 1.5) + 8


class Metric(Component, ABC):
    #: set True for metrics that run the model themselves (`run.evaluation.target_nll(...)` for adapted-vs-base
    #: likelihoods); they are left out of the base-model baseline
    needs_model: ClassVar[bool] = False

    @abstractmethod
    def compute(self, run: Run, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        """A JSON-serialisable dict. Per-class scores go under "per_class": {label: {name: value}}.

        `run.task` parsed the predictions; `run.evaluation` is the split being scored (`split`, `records`,
        `train_references()` for seen-vs-unseen breakdowns)."""


@dataclass(frozen=True)
class LowRank:
    """What `plan`'s parameter formula needs of a LoRA-shaped adapter."""

    r: int
    target_modules: list[str] | str
    modules_to_save: list[str]
    use_dora: bool
    bias: str


class Adapter(Component, ABC):
    @abstractmethod
    def attach(self, run: Run, model: Any) -> Any:
        """Wrap `model` (a transformers model) and return the trainable PEFT model."""

    def low_rank(self) -> LowRank | None:
        """The shape of a LoRA-like update, for `plan`'s per-module table; None: `plan` counts what PEFT reports
        on the meta model, without a formula."""
        return None


# How activation checkpointing is switched on (`gradient_checkpointing_kwargs`): non-reentrant, the mode torch
# recommends; it needs no input that requires grad and supports torch.autograd.grad.
CHECKPOINTING = {"use_reentrant": False}


class Quantizer(Component, ABC):
    """How the base weights are held: `[quantization] type = "none"` is a quantizer too, the one that keeps them."""

    @property
    def bits(self) -> int | None:
        """Bits per quantized base weight (for `plan`'s memory and the merged export's check); None: the weights
        stay in the loader's dtype."""
        return None

    @property
    def double_quant(self) -> bool:
        """The quantization constants are quantized too (for `plan`'s memory)."""
        return False

    @property
    def compute_dtype_name(self) -> str:
        """Dtype of the de-quantized matmuls, for `plan`: "auto" follows training.precision."""
        return "auto"

    def check_supported(self, run: Run) -> None:
        """Raise RunError with the fix when this machine or library cannot quantize this way."""

    @abstractmethod
    def load_kwargs(self, run: Run) -> dict[str, Any]:
        """Extra `from_pretrained` keyword arguments (e.g. quantization_config)."""

    @abstractmethod
    def prepare(self, run: Run, model: Any) -> Any:
        """Make the loaded model trainable (e.g. prepare_model_for_kbit_training), switching on activation
        checkpointing as CHECKPOINTING says when `run.recipe.training.gradient_checkpointing` asks for it."""


class ModelLoader(Component, ABC):
    """Loads the tokenizer and the base model, and answers `plan` without weights: `config`, `config_source`,
    `offline_tokenizer`, `chat_template_tokens`, `dtype`."""

    @abstractmethod
    def load_tokenizer(self, run: Run) -> Any:
        """The tokenizer, its chat template set as the loader's options say (or removed)."""

    @abstractmethod
    def load_model(self, run: Run, **load_kwargs: Any) -> Any:
        """The base model; `load_kwargs` are the quantizer's extra `from_pretrained` arguments."""

    @property
    def dtype(self) -> str:
        """The dtype the base weights load in: "auto" (the checkpoint's) or a torch dtype name."""
        return "auto"

    @property
    def trusts_remote_code(self) -> bool:
        """Modelling code shipped with the model runs (the run warns; `plan` builds its skeleton with it)."""
        return False

    def config(self, run: Run) -> Any:
        """The model's transformers config, without weights (for `plan`)."""
        raise NotImplementedError

    def config_source(self, run: Run) -> str:
        """Where `config` comes from, in a few words for `plan`'s output."""
        return "model loader"

    def offline_tokenizer(self, run: Run) -> Any | None:
        """The tokenizer when it loads without network or weights (for `plan`'s token counts); None otherwise."""
        return None

    def chat_template_tokens(self, run: Run) -> int:
        """Without an offline tokenizer, `plan` counts a prompt as characters / 4 plus this many tokens the chat
        template adds around one user turn (0: no template)."""
        return 0


class Exporter(Component, ABC):
    #: folder name under the run's output directory
    default_dir: ClassVar[str] = "export"
    #: the folder holds a PEFT adapter (`PeftModel.from_pretrained` loads it): `loraforge eval` scores it by default
    writes_adapter: ClassVar[bool] = False

    @property
    def folder(self) -> str:
        """The folder under the run folder: the exporter's `dir` option where its options have one, else
        `default_dir`."""
        return getattr(self.options, "dir", None) or self.default_dir

    @abstractmethod
    def export(self, run: Run, target: Path) -> dict[str, Any]:
        """Write into `target` (a fresh temporary folder, renamed when this returns) and return a summary."""
