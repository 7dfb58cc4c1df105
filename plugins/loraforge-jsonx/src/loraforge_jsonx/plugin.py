"""The module the `loraforge` entry point names: hook implementations only, the components live beside it.

- `register_tasks`           → task "jsonx"            (`[task] type = "jsonx"`)
- `register_metrics`         → metric "jsonx"          (the task's default metric)
- `register_recipe_sections` → table `[jsonx]`         (the field schema, validated like a builtin section)
- `register_recipes`         → recipe "jsonx_tiny"     (`extends = "loraforge_jsonx:recipes/jsonx_tiny.toml"`)

The task reads `[jsonx]` itself, in `JsonxTask.configure(run)`; no lifecycle hook is needed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from loraforge.hookspecs import hookimpl

from .metric import JsonxMetric
from .task import SECTION, JsonxSection, JsonxTask


def recipe_path(name: str) -> Path:
    """A recipe shipped inside this package (package data), as a file path."""
    return Path(str(resources.files(__package__).joinpath("recipes", f"{name}.toml")))


@hookimpl
def register_tasks(register: Any) -> None:
    register("jsonx", JsonxTask)


@hookimpl
def register_metrics(register: Any) -> None:
    register("jsonx", JsonxMetric)


@hookimpl
def register_recipe_sections(register: Any) -> None:
    register(SECTION, JsonxSection)


@hookimpl
def register_recipes(register: Any) -> None:
    register("jsonx_tiny", recipe_path("jsonx_tiny"))

