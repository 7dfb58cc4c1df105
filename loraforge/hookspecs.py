"""The plugin contract. Each hook's docstring is its documentation (docs/hooks.md is generated from here).

Registration hooks receive a `register(name, factory)` callable. `factory(options)` must build the component;
its `Options` attribute (a dataclass declared with `loraforge.schema.option`) types the recipe keys it accepts.
A name registered twice is an error naming both plugins.

Lifecycle hooks receive one `run` argument (a `loraforge.run.Run`), so new fields never break old plugins.
Components receive the same run as the first argument of every method that needs more than its own options
(`loraforge.components`): one context for every kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .run import Run

hookspec = pluggy.HookspecMarker("loraforge")
hookimpl = pluggy.HookimplMarker("loraforge")


@hookspec
def register_model_loaders(register: Any) -> None:
    """Register model loaders, selected by `[model] loader = "name"`.

    A loader is a `loraforge.components.ModelLoader`: `load_tokenizer(run)` and `load_model(run, **kwargs)` load
    the tokenizer and the base model (with the quantizer's extra `from_pretrained` arguments); `config(run)` and
    `offline_tokenizer(run)` answer `plan` without weights.
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

    An adapter is a `loraforge.components.Adapter`: `attach(run, model)` returns the trainable PEFT model.
    """


@hookspec
def register_quantizers(register: Any) -> None:
    """Register quantizers, selected by `[quantization] type = "name"` (`"none"` loads full precision).

    A quantizer is a `loraforge.components.Quantizer`: `check_supported(run)` stops a machine that cannot run it,
    `load_kwargs(run)` adds arguments to `from_pretrained`, `prepare(run, model)` makes the loaded model trainable,
    and `bits` says how many bits a base weight is held in. `"none"` is the builtin that keeps full precision.
    """


@hookspec
def register_metrics(register: Any) -> None:
    """Register metrics, listed in `[evaluation] metrics` (default: the task's `default_metrics`).

    A metric is a `loraforge.components.Metric`: `compute(run, predictions, references)` returns a dict; per
    class scores go under "per_class". `run.evaluation` is the split being scored.
    """


@hookspec
def register_exporters(register: Any) -> None:
    """Register exporters, selected by `[[export]] type = "name"`.

    An exporter is a `loraforge.components.Exporter`: `export(run, folder)` writes into a fresh folder that is
    renamed into place only when it returns, so an interrupted export never looks complete.
    """


@hookspec
def on_run_start(run: Run) -> None:
    """Called once `loraforge run` has resolved the recipe, built the components and read the records, before
    any model is loaded or anything is written to the run folder."""


@hookspec
def on_phase(run: Run) -> None:
    """Called when the run enters a new phase; `run.phase` names it ("load", "data", "train", ...)."""


@hookspec
def on_progress(run: Run) -> None:
    """Called as work advances inside a phase; `run.progress` has `done`, `total`, `unit` and `info`."""


@hookspec
def on_warning(run: Run) -> None:
    """Called when the run notes something that does not stop it (data dropped, a package changed on resume);
    `run.warnings[-1]` is the message. All of them are kept in metrics.json."""


@hookspec
def on_step(run: Run) -> None:
    """Called at each training log step; `run.step` holds step, max_steps, epoch, loss, learning rate."""


@hookspec
def on_evaluate(run: Run) -> None:
    """Called after evaluation; `run.metrics` holds every metric's result by split and model."""


@hookspec
def on_export(run: Run) -> None:
    """Called after each exporter finishes; `run.exports[-1]` describes what was written."""


@hookspec
def on_run_end(run: Run) -> None:
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
