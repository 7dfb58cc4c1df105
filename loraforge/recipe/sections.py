"""The typed sections of a recipe and the `Recipe` they make up; `loading` builds one from TOML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import Problem, RecipeError, did_you_mean
from ..schema import aliases, option, parse, to_dict

#: component sections and the key that selects their plugin
COMPONENTS: dict[str, tuple[str, str, str | None]] = {
    # section: (selector key, registry kind, default selector)
    "model": ("loader", "model loader", "hf"),
    "task": ("type", "task", None),
    "adapter": ("type", "adapter", "lora"),
    "quantization": ("type", "quantizer", "none"),
    "export": ("type", "exporter", None),
}


@dataclass
class DataSection:
    train: str = option(help="Training records: .jsonl, .csv, or a file or folder in a format the task reads "
                             "(e.g. .conll, or a brat folder of .txt + .ann files).")
    validation: str | None = option(None, help="Validation records; when unset, `validation_split` of train.")
    test: str | None = option(None, help="Test records, evaluated after training; when unset, `test_split` of "
                                         "train.")
    format: str = option("auto", help="File format; `auto` picks by extension (.jsonl, .csv, .conll, .bio) or, for "
                                      "a folder holding .ann files, brat.")
    validation_split: float = option(0.0, ge=0.0, lt=1.0,
                                     help="Fraction of train held out for validation when no file is given: whole "
                                          "documents when records name their `document` (brat records do), else "
                                          "the last records.")
    test_split: float = option(0.0, ge=0.0, lt=1.0,
                               help="Fraction of train held out for testing when no test file is given, carved "
                                    "before validation and in the same way.")
    split_seed: int = option(0, help="Seed that draws the documents held out by `test_split` and "
                                     "`validation_split`.")
    max_records: int | None = option(None, ge=1, help="Use only the first N records of each split (quick runs).")


@dataclass
class TrainingSection:
    epochs: float = option(3.0, gt=0, help="Passes over the training set.", aliases=("num_epochs",))
    max_steps: int | None = option(None, ge=1, help="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float = option(2e-4, gt=0, help="Peak learning rate.", aliases=("lr",))
    batch_size: int = option(4, ge=1, help="Sequences per device per step.",
                             aliases=("per_device_train_batch_size", "micro_batch_size"))
    gradient_accumulation_steps: int = option(1, ge=1, help="Micro-batches per optimizer step.")
    max_length: int = option(512, ge=8, help="Longest tokenized prompt+target (see `long_records`).",
                             aliases=("sequence_len", "max_seq_length"))
    long_records: Literal["error", "skip"] = option(
        "error", help="A record longer than `max_length`: `error` stops before training, naming its file and line; "
                      "`skip` leaves it out of training and validation and reports how many per split (never "
                      "truncated: a cut target would teach the model to stop mid-answer).")
    seed: int = option(42, help="Seed for weights of new layers, dropout, shuffling.")
    warmup_ratio: float = option(0.03, ge=0.0, lt=1.0, help="Fraction of steps spent warming up the LR.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
                       "polynomial"] = option("cosine", help="Learning-rate schedule (transformers names).",
                                              aliases=("lr_scheduler", "lr_scheduler_type"))
    optimizer: str = option("adamw_torch_fused", help="Optimizer (transformers `optim` names, e.g. paged_adamw_8bit).",
                            aliases=("optim",))
    weight_decay: float = option(0.0, ge=0.0, help="Decoupled weight decay.")
    max_grad_norm: float = option(1.0, ge=0.0, help="Gradient clipping norm (0 disables).")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = option(
        "auto", help="Mixed precision; `auto` uses bf16 where the device supports it, else fp32.")
    gradient_checkpointing: bool = option(False, help="Recompute activations in backward to save memory.")
    group_by_length: bool = option(True, help="Batch records of similar length to cut padding (the Trainer's "
                                              "sampler); batches of similar records can cost accuracy on short runs.")
    logits_on_targets: bool = option(True, help="Compute the LM head only where the loss needs it (targets "
                                                "follow prompts): the same loss with less work.")
    share_prefix: bool = option(True, help="Run the prompt tokens a whole batch has in common (an instruction "
                                           "template) once per batch, not once per row, and the last layer's "
                                           "attention and MLP only where the loss reads; also under gradient "
                                           "checkpointing and DDP, not under FSDP or DeepSpeed, and not on models "
                                           "with sliding-window attention.")
    logging_steps: int = option(10, ge=1, help="Optimizer steps between loss reports.")
    save_steps: int = option(0, ge=0, help="Checkpoint every N steps; 0 checkpoints at the end of each epoch.")
    save_total_limit: int = option(2, ge=1, help="Checkpoints kept in the run folder.")
    eval_loss: bool = option(True, help="Compute validation loss at each checkpoint (needs validation data).")
    dataloader_workers: int = option(0, ge=0, help="Data-loading worker processes.")


@dataclass
class EvaluationSection:
    split: Literal["test", "validation", "none"] = option("test", help="Split scored after training.")
    metrics: list[str] | None = option(None, help="Metric names; default: the task's own metrics.")
    batch_size: int = option(16, ge=1, help="Sequences generated at once.")
    max_new_tokens: int | None = option(None, ge=1,
                                        help="Tokens each answer may run to; default: per record, from the training "
                                             "answers to prompts no longer than its own (docs/tasks.md).")
    max_records: int | None = option(None, ge=1, help="Score only the first N records of the split.")
    constrained: bool = option(True, help="Keep generations to well-formed answers, where the task defines them "
                                          "(NER: declared labels, mentions from the text); see docs/tasks.md.")
    baseline_shots: int | None = option(None, ge=0, help="Also score the base model (adapter off) prompted with "
                                                          "this many training examples (0 = zero-shot).")


@dataclass
class OutputSection:
    dir: str | None = option(None, help="Run folder, relative to this recipe; default `runs/<recipe name>` in the "
                                        "working directory.")
    overwrite: bool = option(False, help="Replace a finished run of this recipe in the run folder.")
    allow_outside: bool = option(False, help="Allow a run folder outside the working directory.")


SECTIONS: dict[str, type] = {
    "data": DataSection,
    "training": TrainingSection,
    "evaluation": EvaluationSection,
    "output": OutputSection,
}


@dataclass
class ComponentSpec:
    """A recipe table that names a plugin component, plus its raw options (typed once bound)."""

    section: str
    key: str  # key path for messages: "adapter", "export[1]"
    name: str
    raw: dict[str, Any]
    options: Any = None


@dataclass
class Recipe:
    path: Path
    name: str
    data: DataSection
    training: TrainingSection
    evaluation: EvaluationSection
    output: OutputSection
    model: ComponentSpec
    task: ComponentSpec
    adapter: ComponentSpec
    quantization: ComponentSpec
    exports: list[ComponentSpec]
    description: str = ""
    requires: list[str] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    raw_sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def components(self) -> list[ComponentSpec]:
        return [self.model, self.task, self.adapter, self.quantization, *self.exports]

    def resolve_path(self, key: str, value: str) -> Path:
        """A path from the recipe, relative to the file that set it (or the working directory for --set)."""
        p = Path(value).expanduser()
        if p.is_absolute():
            return p
        origin = self.origins.get(key, str(self.path))
        base = Path.cwd() if origin.startswith("--set") else Path(origin).parent
        return (base / p).resolve()

    def data_path(self, split: str) -> Path | None:
        value = getattr(self.data, split)
        return None if value is None else self.resolve_path(f"data.{split}", value)

    def bind(self, registry: Any) -> None:
        """Type every component section with its plugin's options; raise one error listing every problem."""
        from ..errors import LoraforgeError

        problems: list[Problem] = []
        for spec in self.components():
            selector, kind, _ = COMPONENTS[spec.section]
            try:
                reg = registry.get(kind, spec.name, key=f"{spec.key}.{selector}")
            except LoraforgeError as exc:
                problems += exc.problems
                continue
            spec.options, found = parse(reg.options, spec.raw, spec.key)
            problems += found
            _canonical_origins(self.origins, spec.key, reg.options)
        for name, table in self.raw_sections.items():
            reg = registry.find("recipe section", name)
            if reg is None:
                sections = list(SECTIONS) + list(COMPONENTS) + registry.names("recipe section")
                problems.append(Problem(f"unknown section{did_you_mean(name, sections)}", key=name))
                continue
            self.sections[name], found = parse(reg.factory, table, name)
            problems += found
        if problems:
            raise RecipeError(problems, file=self.path)

    def explain(self) -> list[tuple[str, Any, str]]:
        """Every resolved value with where it came from: a file, a `--set`, or the default."""
        rows = []
        for key, value in _flatten(self.to_dict()):
            source = self.origins.get(key) or self.origins.get(key.rsplit(".", 1)[0] if "[" in key else "")
            rows.append((key, value, source or "default"))
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as TOML data: defaults filled in, paths absolute, no `extends`."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.requires:
            out["requires"] = list(self.requires)
        for spec in (self.model, self.task, self.adapter, self.quantization):
            selector = COMPONENTS[spec.section][0]
            out[spec.section] = {selector: spec.name, **_options_dict(spec)}
        data = to_dict(self.data)
        for split in ("train", "validation", "test"):
            if data.get(split):
                data[split] = str(self.data_path(split))
        out["data"] = data
        for name in ("training", "evaluation", "output"):
            out[name] = to_dict(getattr(self, name))
        out["export"] = [{"type": spec.name, **_options_dict(spec)} for spec in self.exports]
        for name, value in self.sections.items():
            out[name] = to_dict(value)
        return out


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, f"{path}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, item in enumerate(value):
                out += _flatten(item, f"{path}[{i}].")
        else:
            out.append((path, value))
    return out


def _canonical_origins(origins: dict[str, str], prefix: str, cls: type) -> None:
    """Record where a value came from under its canonical name (`adapter.alpha` → `adapter.lora_alpha`)."""
    for alias, name in aliases(cls).items():
        if f"{prefix}.{alias}" in origins:
            origins[f"{prefix}.{name}"] = origins.pop(f"{prefix}.{alias}")


def _options_dict(spec: ComponentSpec) -> dict[str, Any]:
    return to_dict(spec.options) if spec.options is not None else dict(spec.raw)
