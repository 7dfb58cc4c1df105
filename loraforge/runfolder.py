"""The run folder: every file a run keeps there, named once; whose folder it is; the lock and the checkpoints;
the start-or-resume decision; what a restart clears; the report.

    <run folder>/
      recipe.toml              the resolved recipe: `loraforge run` of it re-runs exactly
      run.lock.json            what the checkpoints depend on; a resume that would change any of it is refused
      plan.json                `loraforge plan`'s estimate (kept on restart: compared with the run's real time)
      log.jsonl                the Trainer's log, a line per logging step
      checkpoints/checkpoint-N the Trainer's checkpoints
      predictions-<split>.jsonl every generation, with the file and line of its record
      loss.png                 the loss curve (the `plot` extra)
      <export dirs>/           one per [[export]]: adapter/, merged/ ...
      eval/                    `loraforge eval` of the saved adapter: a run folder of its own
      metrics.json             written last: a folder with one holds a finished run

The lock records the resolved recipe sections that shape the model and the data, content hashes of the data files
and the tokenizer, and package versions. Options that only affect reporting (logging, checkpoint cadence,
evaluation, export) may change across a resume.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import RecipeError, RunError
from .files import digest, file_digest, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from .recipe import Recipe
    from .run import Run

RECIPE = "recipe.toml"
LOCK = "run.lock.json"
PLAN = "plan.json"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
PREDICTIONS = "predictions-{split}.jsonl"
LOSS_CURVE = "loss.png"
EVAL = "eval"
METRICS = "metrics.json"
#: what a restart (or the start of a run over a finished one) removes: everything the last run wrote but its plan;
#: recipe.toml and the lock are written anew
CLEARED = (LOCK, LOG, CHECKPOINTS, PREDICTIONS, LOSS_CURVE, EVAL, METRICS)

#: files the Trainer writes into a checkpoint; one missing means the save was interrupted
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
#: sections that only affect evaluation, export or output: a resume may change them
FREE_SECTIONS = {"evaluation", "export", "output", "sweep"}
#: training options that do not change what a checkpoint means
FREE_TRAINING_KEYS = {"logging_steps", "save_steps", "save_total_limit", "eval_loss", "dataloader_workers"}
PACKAGES = ("loraforge", "torch", "transformers", "peft", "bitsandbytes", "accelerate")


def default_out_dir(recipe: Recipe) -> Path:
    if recipe.output.dir:
        return recipe.resolve_path("output.dir", recipe.output.dir)
    return (Path("runs") / recipe.name).resolve()


def predictions(folder: Path, split: str) -> Path:
    return folder / PREDICTIONS.format(split=split)


def _matches(name: str, entry: str) -> bool:
    return re.fullmatch(re.escape(entry).replace(r"\{split\}", ".+"), name) is not None


# ----------------------------------------------------------------------------------------------- whose folder


def check_ours(run: Run) -> None:
    """Refuse a folder that is not ours to write: another recipe's run, a finished run, or outside the tree."""
    out, recipe = run.out_dir, run.recipe
    if not run.out_dir_explicit and not recipe.output.allow_outside and not out.is_relative_to(Path.cwd()):
        raise RecipeError(f"the run folder {out} is outside the working directory {Path.cwd()}", file=recipe.path,
                          key="output.dir", hint="Set `allow_outside = true` in [output] if that is intended, or "
                                                 "pass --output DIR.")
    previous = out / RECIPE
    if not previous.exists():
        return
    import tomllib

    try:
        other = tomllib.loads(previous.read_text()).get("name")
    except tomllib.TOMLDecodeError:
        other = None
    if other != recipe.name:
        raise RunError(f"the run folder holds a run of another recipe ('{other}')", file=out,
                       key="output.dir", hint="Choose another folder: --output DIR or [output] dir.")
    if (out / METRICS).exists() and not recipe.output.overwrite and run.resume != "restart":
        raise RunError("the run folder already holds a finished run of this recipe", file=out, key="output.dir",
                       hint="Use --output DIR for a new run, or --restart (or --set output.overwrite=true) to "
                            "replace it.")


# ------------------------------------------------------------------------------------------ start or resume


def settle(run: Run, export_dirs: list[str]) -> None:
    """Decide between a fresh start and a resume, check the run lock, then write recipe.toml and the lock."""
    from .recipe import dump

    out = run.out_dir
    lock = make_lock(run)
    old = read_lock(out)
    if run.resume == "restart" or (out / METRICS).exists():
        clear(run, export_dirs)
    elif run.resume != "auto":
        path = Path(run.resume).resolve()
        if path not in checkpoints(path.parent.parent if path.parent.name == CHECKPOINTS else out):
            raise RunError(f"{path} is not a complete checkpoint of a run", key="--resume",
                           hint=f"Pick one of {out / CHECKPOINTS}/checkpoint-*.")
        run.resume_from = path
    elif checkpoints(out):
        run.resume_from = checkpoints(out)[-1]
    if run.resume_from is not None:
        changed = changes(old, lock) if old else ["no run lock in the folder"]
        if changed:
            raise RunError("cannot resume: " + "; ".join(changed), file=out,
                           hint="Undo the change, start over with --restart, or use --output DIR for a new run.")
        for note in package_changes(old, lock):
            run.warn(f"resuming with another package version: {note}")
    if run.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        for partial in out.glob(".*.partial"):  # left by a run killed mid-export
            shutil.rmtree(partial, ignore_errors=True)
        write_text_atomic(out / RECIPE, dump(run.recipe))
        write_json_atomic(out / LOCK, lock)


def clear(run: Run, export_dirs: list[str]) -> None:
    """Start over: remove what the last run of this recipe wrote (`CLEARED`, and the exports)."""
    if not run.is_main_process or not run.out_dir.exists():
        return
    for path in run.out_dir.iterdir():
        if path.name in export_dirs or any(_matches(path.name, entry) for entry in CLEARED):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()


def make_lock(run: Run) -> dict[str, Any]:
    from .data import tokenizer_fingerprint

    resolved = run.recipe.to_dict()
    training = {k: v for k, v in resolved["training"].items() if k not in FREE_TRAINING_KEYS}
    sections = {name: value for name, value in resolved.items()
                if isinstance(value, dict) and name not in FREE_SECTIONS}
    sections["training"] = training
    sections["data"] = {k: v for k, v in sections["data"].items() if k != "test"}  # scored after training only
    data = {split: file_digest(path) for split in ("train", "validation")
            if (path := run.recipe.data_path(split)) is not None}
    return {
        "recipe": sections,
        "data": data,
        "tokenizer": tokenizer_fingerprint(run.tokenizer),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_lock(out_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out_dir / LOCK).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences that make old checkpoints meaningless for the new run."""
    out = []
    for section in sorted(set(old.get("recipe", {})) | set(new.get("recipe", {}))):
        a, b = old.get("recipe", {}).get(section, {}), new.get("recipe", {}).get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: {_show(a.get(key))} → {_show(b.get(key))}")
    for split in sorted(set(old.get("data", {})) | set(new.get("data", {}))):
        if old.get("data", {}).get(split) != new.get("data", {}).get(split):
            out.append(f"data.{split}: the file's content changed")
    if old.get("tokenizer") != new.get("tokenizer"):
        out.append("tokenizer: a different vocabulary or special tokens")
    return out


def package_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = old.get("packages", {}), new.get("packages", {})
    return [f"{name} {a.get(name)} → {b.get(name)}" for name in PACKAGES if a.get(name) != b.get(name)]


def _show(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value)


def checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a checkpoint cut short by a kill is skipped)."""
    folder = out_dir / CHECKPOINTS
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if m and all((path / f).is_file() for f in CHECKPOINT_FILES) and any(path.glob("adapter_model.*")):
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]


# ----------------------------------------------------------------------------------------------------- report


def recipe_digest(recipe: Recipe) -> str:
    """What a plan in a run folder was made for: the resolved recipe, overrides included."""
    return digest(recipe.to_dict())


def write_plan(recipe: Recipe, estimate: dict[str, Any]) -> None:
    """Put `loraforge plan`'s estimate where a later run of the same recipe reports it beside the real time."""
    write_json_atomic(default_out_dir(recipe) / PLAN, {**estimate, "recipe_digest": recipe_digest(recipe)})


def write_report(run: Run, **extra: Any) -> None:
    """metrics.json: the recipe, the model, `extra`, the run's summary (wall time included), metrics, warnings."""
    run.summary["wall_time_s"] = round(time.time() - run.started, 1)
    write_json_atomic(run.out_dir / METRICS, {
        "recipe": run.recipe.name, "model": run.components.model.describe(), **extra, **run.summary,
        "metrics": run.metrics, "warnings": run.warnings})


def predicted_vs_actual(run: Run) -> dict[str, Any]:
    """When `loraforge plan` wrote its estimate into this run folder, compare it with the measured time."""
    try:
        plan = json.loads((run.out_dir / PLAN).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if plan.get("recipe_digest") != recipe_digest(run.recipe):
        run.warn(f"{PLAN} in the run folder was planned for a different recipe or other --set values; "
                 "not compared with this run (run `loraforge plan` with the same arguments to compare)")
        return {}
    # the plan predicts the training steps: their time without the validation-loss passes between epochs
    actual = run.summary.get("train", {}).get("training_s")
    out = {"predicted_train_s": plan.get("predicted_train_seconds"), "actual_train_s": actual}
    if plan.get("calibrated_train_seconds"):
        out["calibrated_train_s"] = round(plan["calibrated_train_seconds"], 1)
        if actual:
            out["calibrated_error"] = round(plan["calibrated_train_seconds"] / actual - 1, 3)
    return {"plan": out}
