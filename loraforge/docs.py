"""Reference docs generated from the code, so they cannot drift: `python -m loraforge.docs` rewrites them.

- docs/recipes.md: every recipe section and every builtin component's options (from the typed dataclasses).
- docs/hooks.md: every hook with its signature and docstring (from hookspecs.py).
tests/test_docs.py fails when the committed files differ from what this module renders.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from . import hookspecs
from .plugins import KINDS, Registry, get_plugin_manager
from .recipe import COMPONENTS, SECTIONS
from .schema import describe

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _options_table(cls: type) -> list[str]:
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for doc in describe(cls):
        name = f"`{doc.name}`" + (" (also " + ", ".join(f"`{a}`" for a in doc.aliases) + ")" if doc.aliases else "")
        rows.append(f"| {name} | {doc.type} | `{doc.default}` | {doc.help.replace('|', '/')} |")
    return rows


def render_recipes() -> str:
    registry = Registry(get_plugin_manager(entry_points=False))
    out = ["# Recipe reference", "",
           "Generated from the typed options in the code (`python -m loraforge.docs`); do not edit by hand.", "",
           "Top level: `name` (default: the file name), `description`, `extends` (a recipe this one builds on: a "
           "path relative to this file, or `package:path` inside an installed package), `requires` (plugin "
           "packages the recipe needs, e.g. `[\"loraforge-jsonx>=0.3\"]`).", ""]
    for name, cls in SECTIONS.items():
        out += [f"## [{name}]", ""] + _options_table(cls) + [""]
    for section, (selector, kind, default) in COMPONENTS.items():
        header = f"[[{section}]]" if section == "export" else f"[{section}]"
        out += [f"## {header}", "",
                f"`{selector}` names the {kind}" + (f" (default `\"{default}\"`)" if default else " (required)")
                + "; the other keys are that component's options. Changing `" + selector + "` in an extending "
                "recipe replaces the whole table.", ""]
        for reg_name in registry.names(kind):
            reg = registry.get(kind, reg_name)
            out += [f"### {selector} = \"{reg_name}\"", ""]
            doc = inspect.getdoc(reg.factory)
            if doc:
                out += [doc.splitlines()[0], ""]
            out += _options_table(reg.options) + [""]
    return "\n".join(out).rstrip() + "\n"


def render_hooks() -> str:
    out = ["# Hook reference", "",
           "Generated from `loraforge/hookspecs.py` (`python -m loraforge.docs`); do not edit by hand.", "",
           "Implement a hook with `@loraforge.hookspecs.hookimpl` in a module named by an entry point of the "
           "`loraforge` group. Registration hooks:", ""]
    out += [f"- `{hook}` registers {kind}s" for kind, hook in KINDS.items()] + [""]
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if not hasattr(fn, "loraforge_spec"):
            continue
        params = ", ".join(inspect.signature(fn).parameters)
        out += [f"## {name}({params})", "", inspect.getdoc(fn) or "", ""]
    return "\n".join(out).rstrip() + "\n"


PAGES = {"recipes.md": render_recipes, "hooks.md": render_hooks}


def main() -> int:
    for name, render in PAGES.items():
        (DOCS / name).write_text(render(), encoding="utf-8")
        print(f"wrote {DOCS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
