"""Sweeps: one training per grid point, each in its own run folder, then the reference case's comparison table.

`loraforge sweep RECIPE --grid adapter.r=8,16,32` (or a `[sweep.grid]` table in the recipe). A point whose folder
already holds metrics.json is not run again, and a point cut short resumes from its checkpoints, so a half-done
sweep picks up where it stopped. The base model's k-shot score (`evaluation.baseline_shots`) is measured once, with
the first point, and becomes the table's first column.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RecipeError
from .files import write_json_atomic, write_text_atomic
from .recipe import Recipe, load_recipe, parse_override
from .schema import option


@dataclass
class SweepSection:
    grid: dict[str, Any] = option(factory=dict, help='Values to try per key path, e.g. "adapter.r" = [8, 16, 32]; '
                                                     "every combination is one training.")

    def check(self) -> list[tuple[str, str]]:
        problems = []
        for key, values in self.grid.items():
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", key):
                problems.append((f"grid.{key}", "must be a key path like adapter.r"))
            elif not isinstance(values, list) or not values:
                problems.append((f"grid.{key}", "must be a non-empty list of values"))
        return problems


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`["adapter.r=8,16,32"]` → {"adapter.r": [8, 16, 32]}; each value is TOML (bare words are strings)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, _, values = item.partition("=")
        if not values:
            raise RecipeError(f"--grid {item!r}: expected key=value1,value2,...", hint="e.g. --grid adapter.r=8,16,32")
        grid[key.strip()] = [parse_override(f"{key}={v}")[1] for v in values.split(",")]
    return grid


def points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_name(point: dict[str, Any]) -> str:
    """A readable, filesystem-safe folder name: {"adapter.r": 8} → "r=8"."""
    short = {k.rsplit(".", 1)[1] for k in point}
    use_short = len(short) == len(point)
    parts = [f"{k.rsplit('.', 1)[1] if use_short else k}={'+'.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in point.items()]
    return re.sub(r"[^\w.=,+-]", "_", ",".join(parts))


def _override(key: str, value: Any) -> str:
    """A `--set` string whose value is written as TOML, so it parses back to the same value."""
    import tomli_w

    return f"{key}={tomli_w.dumps({'v': value}).strip().removeprefix('v = ')}"


@dataclass
class PointResult:
    name: str
    folder: Path
    metrics: dict[str, Any]
    reused: bool


def run_sweep(path: Path, overrides: list[str], grid: dict[str, list[Any]], out_dir: Path | None,
              observers: tuple[object, ...] = ()) -> tuple[Path, list[PointResult]]:
    from .engine import located, run_recipe
    from .runfolder import METRICS, default_out_dir

    base = load_recipe(path, overrides)
    grid = grid or _recipe_grid(base)
    if not grid:
        raise RecipeError("nothing to sweep: no --grid and no [sweep.grid] table", file=base.path,
                          hint="e.g. loraforge sweep RECIPE --grid adapter.r=8,16,32")
    folder = out_dir or default_out_dir(base).with_name(f"{base.name}-sweep")
    results = []
    for i, point in enumerate(points(grid)):
        name = point_name(point)
        target = folder / name
        metrics_file = target / METRICS
        if metrics_file.exists():
            results.append(PointResult(name, target, json.loads(metrics_file.read_text()), True))
            continue
        recipe = load_recipe(path, [*overrides, *(_override(k, v) for k, v in point.items())])
        if i > 0 and not _needs_baseline(results):
            recipe.evaluation.baseline_shots = None  # measured once, with the first point
        with located(recipe):
            run_recipe(recipe, observers, out_dir=target)
        results.append(PointResult(name, target, json.loads(metrics_file.read_text()), False))
    write_report(folder, base, results)
    return folder, results


def _needs_baseline(results: list[PointResult]) -> bool:
    return not any("baseline" in r.metrics.get("metrics", {}) for r in results)


def _recipe_grid(recipe: Recipe) -> dict[str, list[Any]]:
    """`[sweep.grid]`, validated as every registered recipe section is (`[sweep]` is a builtin's)."""
    from .plugins import Registry, get_plugin_manager

    recipe.bind(Registry(get_plugin_manager()))
    section = recipe.sections.get("sweep")
    return section.grid if section is not None else {}


def comparison(results: list[PointResult], measure: str = "f1") -> tuple[dict[str, dict[str, Any]], str | None]:
    """Columns for the comparison table: base k-shot (when measured), then each point's per-class scores."""
    columns: dict[str, dict[str, Any]] = {}
    split = None
    for r in results:
        base = r.metrics.get("metrics", {}).get("baseline")
        if base and not any(k.startswith("base") for k in columns):
            columns[f"base {base['shots']}-shot"] = base["scores"]
            split = base["split"]
    for r in results:
        scored = {k: v for k, v in r.metrics.get("metrics", {}).items() if k != "baseline"}
        if scored:
            split = split or next(iter(scored))
            columns[r.name] = scored.get(split, {})
    return columns, split


def write_report(folder: Path, recipe: Recipe, results: list[PointResult]) -> None:
    """sweep.json, sweep.md (rows: class, columns: base and points) and sweep.png."""
    from . import plots

    columns, split = comparison(results)
    metric_names = sorted({m for scores in columns.values() for m in scores})
    data = {"recipe": recipe.name, "split": split, "points": [
        {"name": r.name, "folder": str(r.folder), "train": r.metrics.get("train"),
         "wall_time_s": r.metrics.get("wall_time_s")} for r in results], "scores": columns}
    write_json_atomic(folder / "sweep.json", data)
    lines = [f"# {recipe.name}: sweep on {split}", ""]
    for metric in metric_names:
        per_model = {name: s[metric] for name, s in columns.items() if "per_class" in s.get(metric, {})}
        if not per_model:
            continue
        lines += [f"## {metric} F1 by class", "", "| class | " + " | ".join(per_model) + " |",
                  "| --- |" + " ---: |" * len(per_model)]
        classes = list(next(iter(per_model.values()))["per_class"])
        for label in classes:
            lines.append(f"| {label} | " + " | ".join(
                f"{r['per_class'].get(label, {}).get('f1', 0.0):.3f}" for r in per_model.values()) + " |")
        for avg in ("micro", "macro"):
            lines.append(f"| **{avg}** | " + " | ".join(
                f"{r.get(avg, {}).get('f1', 0.0):.3f}" for r in per_model.values()) + " |")
        lines.append("")
        plots.grouped_bars({name: {c: r["per_class"][c]["f1"] for c in classes} for name, r in per_model.items()},
                           folder / f"sweep-{metric}.png", "F1", f"{recipe.name}: {metric} F1 by class")
    write_text_atomic(folder / "sweep.md", "\n".join(lines))
