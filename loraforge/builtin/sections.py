"""Builtin recipe sections that belong to no component: `[sweep]` (read by `loraforge sweep`)."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from ..sweep import SweepSection


@hookimpl
def register_recipe_sections(register: Any) -> None:
    register("sweep", SweepSection)
