"""The plugin contract. Each hook's docstring is its documentation (docs/hooks.md is generated from here).

Registration hooks receive a `register(name, factory)` callable. `factory(options)` must build the component;
its `Options` attribute (a dataclass declared with `loraforge.schema.option`) types the recipe keys it accepts.
A name registered twice is an error naming both plugins.

Lifecycle hooks receive one `run` argument (a `loraforge.engine.Run`), so new fields never break old plugins.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("loraforge")
hookimpl = pluggy.HookimplMarker("loraforge")


@hookspec
def register_model_loaders(register: Any) -> None:
    """Register model loaders, selected by `[model] loader = "name"`.

    A loader is a `loraforge.components.ModelLoader`: it loads the tokenizer and the base model (with the
    quantizer's extra `from_pretrained` arguments) and can build the model's config without weights for `plan`.
    """


@hookspec
def register_tasks(register: Any) -> None:
    """Register tasks, selected by `[task] type = "name"`.

    A task is a `loraforge.components.Task`: it checks records, formats them into prompt and target, parses
    generated text back into structure, and names its default metrics.
    """


@hookspec
def register_adapters(register: Any) -> None:
    """Register adapter types, selected by `[adapter] type = "name"`.

    An adapter is a `loraforge.components.Adapter`: `attach(model, recipe)` returns the trainable PEFT model.
    """


@hookspec
def register_quantizers(register: Any) -> None:
    """Register quantizers, selected by `[quantization] type = "name"` (`"none"` loads full precision).

    A quantizer is a `loraforge.components.Quantizer`: it checks the machine can run it, adds arguments to
    `from_pretrained`, and prepares the loaded model for training.
    """


@hookspec
def register_metrics(register: Any) -> None:
    """Register metrics, listed in `[evaluation] metrics` (default: the task's `default_metrics`).

    A metric is a `loraforge.components.Metric`: `compute(predictions, references, task)` returns a dict; per
    class scores go under "per_class".
    """


@hookspec
def register_exporters(register: Any) -> None:
    """Register exporters, selected by `[[export]] type = "name"`.

    An exporter is a `loraforge.components.Exporter`: `export(run, folder)` writes into a fresh folder that is
    renamed into place only when it returns, so an interrupted export never looks complete.
    """


@hookspec
def on_run_start(run: Any) -> None:
    """Called once `loraforge run` has resolved the recipe, built the components and read the records, before
    any model is loaded or anything is written to the run folder."""


@hookspec
def on_phase(run: Any) -> None:
    """Called when the run enters a new phase; `run.phase` names it ("load", "data", "train", ...)."""


@hookspec
def on_progress(run: Any) -> None:
    """Called as work advances inside a phase; `run.progress` has `done`, `total`, `unit` and `info`."""


@hookspec
def on_step(run: Any) -> None:
    """Called at each training log step; `run.step` holds step, max_steps, epoch, loss, learning rate."""


@hookspec
def on_evaluate(run: Any) -> None:
    """Called after evaluation; `run.metrics` holds every metric's result by split and model."""


@hookspec
def on_export(run: Any) -> None:
    """Called after each exporter finishes; `run.exports[-1]` describes what was written."""


@hookspec
def on_run_end(run: Any) -> None:
    """Called once at the end of a run, successful or not; `run.error` is set on failure."""


@hookspec
def register_recipe_sections(register: Any) -> None:
    """Register extra top-level recipe tables: `register("name", OptionsDataclass)`.

    The table `[name]` of a recipe is then validated as strictly as the builtin sections (unknown keys, types,
    ranges), and components read the parsed options from `recipe.sections["name"]`.
    """


@hookspec
def register_recipes(register: Any) -> None:
    """Register recipes a plugin package ships: `register("name", path_to_toml)`.

    `loraforge recipes` lists them; a recipe can build on one with `extends = "package:recipes/name.toml"`.
    """
