"""The module the `loraforge` entry point names: hook implementations only, the components live beside it.

- `register_tasks`           → task "jsonx"            (`[task] type = "jsonx"`)
- `register_metrics`         → metric "jsonx"          (the task's default metric)
- `register_recipe_sections` → table `[jsonx]`         (the field schema, validated like a builtin section)
- `register_recipes`         → recipe "jsonx_tiny"     (`extends = "loraforge_jsonx:recipes/jsonx_tiny.toml"`)
- `on_run_start`             → hands `[jsonx]` to the task, which checks the records against it
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from loraforge.errors import RecipeError
from loraforge.hookspecs import hookimpl

from .metric import JsonxMetric
from .task import JsonxSection, JsonxTask

SECTION = "jsonx"


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


@hookimpl
def on_run_start(run: Any) -> None:
    """Components are built from their own table only, so the task gets `[jsonx]` here, before any model loads.

    The records were read and checked (against the first record's field names) before this hook; `bind` checks
    them again against the declared fields, so a schema that does not match the data stops the run here.
    """
    task = run.components.get("task")
    if not isinstance(task, JsonxTask):
        return
    schema = run.recipe.sections.get(SECTION)
    if schema is None:
        raise RecipeError(f"the jsonx task needs a [{SECTION}] table declaring its fields", key=SECTION,
                          file=run.recipe.path,
                          hint=f'Add to the recipe:\n[{SECTION}]\nfields = ["age", "sex"]   # the keys of each '
                               "record's fields object")
    task.bind(schema, [record for records in run.records.values() for record in records])
