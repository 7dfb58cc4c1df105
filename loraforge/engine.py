"""The one place that builds a run's components and orders its stages. Stage logic lives in data, train and
evaluate, the run folder in runfolder, and everything else in the plugins.

1 recipe (given) → 2 plugins → 3 validate names, options and data → 4 tokenizer and model → 5 adapter →
6 tokenize → 7 train → 8 evaluate → 9 export → 10 metrics.json and summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import data as data_mod
from . import runfolder
from .errors import LoraforgeError, RecipeError, RunError
from .files import atomic_dir
from .plugins import Registry, get_plugin_manager
from .recipe import Recipe
from .run import Components, Run


def assemble(recipe: Recipe, observers: tuple[object, ...] = (), out_dir: Path | None = None,
             resume: str = "auto") -> Run:
    """Stages 2-3a: plugins, the recipe's names and options, its components built and configured. Nothing is
    read or loaded."""
    pm = get_plugin_manager(extra=observers)
    registry = Registry(pm)
    check_requires(recipe)
    recipe.bind(registry)
    run = Run(recipe=recipe, registry=registry, out_dir=out_dir or runfolder.default_out_dir(recipe),
              components=build_components(recipe, registry), resume=resume, out_dir_explicit=out_dir is not None)
    for component in run.components:
        component.configure(run)
    return run


def build(recipe: Recipe, observers: tuple[object, ...] = (), out_dir: Path | None = None,
          resume: str = "auto") -> Run:
    """Stages 2-3: `assemble`, then the records, read and checked by the task. No weights are touched."""
    run = assemble(recipe, observers, out_dir, resume)
    notes: dict[str, str] = {}
    run.records = data_mod.load_splits(recipe, run.task, notes)
    if notes:
        run.summary["data"] = notes
        for split, note in notes.items():
            run.warn(f"{split} data: {note}")
    run.train_examples = [run.task.format(r) for r in run.records["train"]]
    if recipe.evaluation.split != "none" and recipe.evaluation.split not in run.records:
        raise RecipeError(f"evaluation split '{recipe.evaluation.split}' has no data file", file=recipe.path,
                          key="evaluation.split", hint=f"Set data.{recipe.evaluation.split} or evaluation.split.")
    return run


def build_components(recipe: Recipe, registry: Registry) -> Components:
    """Each component from its registered factory and the options parsed from the table that names it."""
    from .recipe import COMPONENTS

    def built(spec: Any) -> Any:
        return registry.get(COMPONENTS[spec.section][1], spec.name).factory(spec.options)

    task = built(recipe.task)
    metrics = {name: registry.get("metric", name, key=f"evaluation.metrics[{i}]", file=recipe.path).factory()
               for i, name in enumerate(recipe.evaluation.metrics or task.default_metrics)}
    return Components(model=built(recipe.model), task=task, adapter=built(recipe.adapter),
                      quantization=built(recipe.quantization), metrics=metrics,
                      exporters=[built(spec) for spec in recipe.exports])


def check_requires(recipe: Recipe) -> None:
    """Stop before any work when a package the recipe names is missing, with the pip line that fixes it."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    missing = []
    for i, text in enumerate(recipe.requires):
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise RecipeError(f"not a package requirement: {exc}", file=recipe.path, key=f"requires[{i}]") from None
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(text)
    if missing:
        quoted = " ".join(f"'{m}'" for m in missing)
        raise RecipeError(f"needs {', '.join(missing)}, which is not installed", file=recipe.path, key="requires",
                          hint=f"Install it: pip install {quoted}")


def export_dirs(run: Run) -> list[str]:
    """The folder name of each [[export]], in order: its `dir` option, or the exporter's default."""
    return [exporter.folder for exporter in run.components.exporters]


def execute(run: Run) -> Run:
    """Stages 4-10. Observers hear about every phase; the run folder only ever holds complete files."""
    from . import train

    runfolder.check_ours(run)
    with lifecycle(run):
        load_model(run)
        datasets = tokenize(run)
        runfolder.settle(run, export_dirs(run))
        run.summary["train"] = train.train(run, datasets)
        if run.is_main_process:  # other ranks are done once the Trainer is
            if run.recipe.evaluation.split != "none":
                evaluate_stage(run, run.recipe.evaluation.split)
            export(run)
            finish(run)
    return run


@contextmanager
def lifecycle(run: Run) -> Iterator[None]:
    """on_run_start, then the stages; the error, if any, is on the run when on_run_end fires."""
    run.hook.on_run_start(run=run)
    try:
        yield
    except BaseException as exc:
        run.error = exc
        raise
    finally:
        run.hook.on_run_end(run=run)


def evaluate_stage(run: Run, split: str) -> None:
    from . import evaluate

    run.enter("evaluate")
    began = time.perf_counter()
    run.metrics = evaluate.evaluate(run, split)
    run.summary["evaluate_s"] = round(time.perf_counter() - began, 2)
    run.hook.on_evaluate(run=run)


def load_model(run: Run, adapter_dir: Path | None = None) -> None:
    """Tokenizer, base model (quantized if asked) and adapter: a new one, or the one saved in `adapter_dir`."""
    from .train import resolve_precision

    run.enter("load")
    recipe = run.recipe
    run.precision = run.summary["precision"] = resolve_precision(recipe.training.precision)
    loader, quantizer = run.components.model, run.components.quantization
    if loader.trusts_remote_code:
        run.warn(f"trust_remote_code is on: modelling code shipped with '{loader.describe()}' will run")
    quantizer.check_supported(run)
    run.tokenizer = loader.load_tokenizer(run)
    run.encoder = data_mod.make_encoder(run.tokenizer)
    model = quantizer.prepare(run, loader.load_model(run, **quantizer.load_kwargs(run)))
    if adapter_dir is not None:
        run.model = load_adapter(model, adapter_dir, loader.describe())
    else:
        from transformers import set_seed

        set_seed(recipe.training.seed)  # the adapter's initial weights depend on the seed alone
        run.model = run.components.adapter.attach(run, model)
    trainable, total = run.model.get_nb_trainable_parameters()
    run.summary["params"] = {"trainable": int(trainable), "total": int(total)}


def load_adapter(model: Any, folder: Path, model_name: str) -> Any:
    """A saved PEFT adapter on the base model; one clear error when it was trained for another model."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"the adapter does not fit the recipe's model {model_name}: {reason}", file=folder,
                       hint="Evaluate with the recipe it was trained with: its run folder holds a copy, "
                            "recipe.toml.") from None


def tokenize(run: Run) -> dict[str, Any]:
    run.enter("data")
    out = {}
    t = run.recipe.training
    for split in ("train", "validation"):
        if split not in run.records:
            continue
        records = run.records[split]
        examples = run.train_examples if split == "train" else [run.task.format(r) for r in records]
        out[split], skipped = data_mod.tokenize(examples, records, run.encoder, t.max_length, split, t.long_records)
        if skipped:
            run.summary.setdefault("skipped_long", {})[split] = skipped
            run.warn(f"{skipped} of {len(records)} {split} records are longer than training.max_length "
                     f"({t.max_length}) and were left out (training.long_records = \"skip\")")
        if len(out[split]) == 0:
            raise RunError(f"no {split} record fits training.max_length ({t.max_length})",
                           file=run.recipe.path, key="training.max_length", hint="Raise training.max_length.")
    return out


def export(run: Run) -> None:
    if not run.recipe.exports:
        return
    run.enter("export")
    for spec, exporter, folder in zip(run.recipe.exports, run.components.exporters, export_dirs(run)):
        target = run.out_dir / folder
        with atomic_dir(target) as tmp:
            result = exporter.export(run, tmp)
        run.exports.append({"type": spec.name, "path": str(target), **result})
        run.hook.on_export(run=run)


def finish(run: Run) -> None:
    from . import plots

    if plots.available():
        plots.loss_curve(run.out_dir / runfolder.LOG, run.out_dir / runfolder.LOSS_CURVE)
    else:
        run.warn("no loss curve drawn: install the plot extra (pip install 'loraforge[plot]')")
    runfolder.write_report(run, **runfolder.predicted_vs_actual(run), exports=run.exports)


def evaluate_saved(recipe: Recipe, adapter_dir: Path | None = None, observers: tuple[object, ...] = (),
                   out_dir: Path | None = None) -> Run:
    """`loraforge eval`: score a saved adapter as the recipe's [evaluation] says, without training.

    The adapter defaults to the one the recipe's own run exported (the folder of its first [[export]] whose
    exporter writes a PEFT adapter); results go to <run folder>/eval (metrics.json, predictions), never over the
    run's own files.
    """
    with located(recipe):
        home = runfolder.default_out_dir(recipe)
        run = build(recipe, observers, out_dir or home / runfolder.EVAL)
        if adapter_dir is None:
            saved = [folder for exporter, folder in zip(run.components.exporters, export_dirs(run))
                     if exporter.writes_adapter]
            if not saved:
                raise RecipeError("the recipe exports no adapter, so there is no saved one to evaluate",
                                  key="export", hint="Pass the adapter folder: --adapter DIR.")
            adapter_dir = home / saved[0]
        adapter_dir = adapter_dir.resolve()
        split = recipe.evaluation.split
        if split == "none":
            raise RecipeError('evaluation.split is "none", so there is nothing to evaluate', file=recipe.path,
                              key="evaluation.split", hint="Pass --set evaluation.split=test (or validation).")
        if not (adapter_dir / "adapter_config.json").is_file():
            raise RunError("no saved adapter here (adapter_config.json is missing)", file=adapter_dir,
                           hint="Train one first with `loraforge run RECIPE`, or pass --adapter DIR.")
        with lifecycle(run):
            load_model(run, adapter_dir)
            run.out_dir.mkdir(parents=True, exist_ok=True)
            evaluate_stage(run, split)
            runfolder.write_report(run, adapter=str(adapter_dir))
    return run


def trial(recipe: Recipe, steps: int, callbacks: Sequence[Any] = (),
          on_batch: Callable[[dict[str, Any]], None] | None = None) -> Run:
    """A run's stages up to training, then `steps` optimizer steps (`train.train_steps`) in a folder that is
    removed after: nothing is kept, evaluated or exported. For `plan --calibrate` and bench/profile_step.py."""
    import tempfile

    from . import train

    with tempfile.TemporaryDirectory(prefix="loraforge-trial-") as tmp, located(recipe):
        run = build(recipe, out_dir=Path(tmp))
        load_model(run)
        datasets = tokenize(run)
        train.train_steps(run, datasets["train"], steps, callbacks, on_batch)
    return run


def run_recipe(recipe: Recipe, observers: tuple[object, ...] = (), out_dir: Path | None = None,
               resume: str = "auto") -> Run:
    with located(recipe):
        return execute(build(recipe, observers, out_dir, resume))


@contextmanager
def located(recipe: Recipe) -> Iterator[None]:
    """An error raised by a component without a file is about this recipe: say so in its message."""
    try:
        yield
    except LoraforgeError as exc:
        if exc.file is None:
            exc.file = str(recipe.path)
        raise


__all__ = ["Run", "build", "execute", "run_recipe", "LoraforgeError"]
