"""Loading a recipe: TOML files, the `extends` chain, `--set` overrides, and the dump written into run folders.

Pure data handling: loading never imports or executes anything.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import Problem, RecipeError, did_you_mean
from ..files import package_reference, package_root
from ..schema import parse
from .sections import COMPONENTS, SECTIONS, ComponentSpec, Recipe, _canonical_origins



def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; syntax errors name the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("file not found", file=path,
                          hint="Check the path; recipes shipped with loraforge live in recipes/.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read: {exc}", file=path) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line, column = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
        raise RecipeError(f"invalid TOML: {message}", file=path, line=line, column=column,
                          hint="Fix the syntax there (strings need quotes, tables [name], lists [a, b]).") from None


def _layers(path: Path, chain: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """The `extends` chain as (file, table) pairs, base first."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise RecipeError(f"`extends` forms a cycle: {cycle}", file=chain[-1], key="extends",
                          hint="Remove one of the `extends` lines.")
    table = read_toml(path)
    parent = table.pop("extends", None)
    if parent is None:
        return [(path, table)]
    if not isinstance(parent, str):
        raise RecipeError("must be a string: the path of the recipe this one builds on", file=path, key="extends")
    parent_path = locate(parent, path.parent, file=path, key="extends")
    if not parent_path.exists():
        raise RecipeError(f"extends '{parent}', which does not exist (looked at {parent_path.resolve()})",
                          file=path, key="extends", hint="Paths in `extends` are relative to the recipe itself.")
    return [*_layers(parent_path, (*chain, path)), (path, table)]


def locate(ref: str | Path, base: Path, *, file: object = None, key: str | None = None) -> Path:
    """A recipe reference as a path: `pkg:recipes/x.toml` (inside an installed package) or a path from `base`."""
    reference = package_reference(str(ref)) if not Path(str(ref)).exists() else None
    if reference is None:
        return base / Path(str(ref)).expanduser()
    package, inner = reference
    root = package_root(package)
    if root is None:
        raise RecipeError(f"'{ref}' names package '{package}', which is not installed", file=file, key=key,
                          hint="Install the package that ships it (pip install ...); `loraforge recipes` lists "
                               "the recipes installed plugins ship.")
    return root / inner


def _merge(base: dict[str, Any], over: dict[str, Any], origins: dict[str, str], source: str,
           prefix: str = "") -> None:
    for key, value in over.items():
        path = f"{prefix}{key}"
        current = base.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            selector = COMPONENTS.get(key, (None,))[0] if not prefix else None
            if selector and selector in value and value[selector] != current.get(selector):
                base[key] = {}  # another component: the old options do not apply
                for k in [k for k in origins if k.startswith(f"{path}.")]:
                    del origins[k]
            _merge(base[key], value, origins, source, f"{path}.")
        else:
            base[key] = value
            for k in [k for k in origins if k.startswith(f"{path}.") or k.startswith(f"{path}[")]:
                del origins[k]
            _record(origins, path, value, source)


def _record(origins: dict[str, str], path: str, value: Any, source: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _record(origins, f"{path}.{k}", v, source)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _record(origins, f"{path}[{i}]", v, source)
    else:
        origins[path] = source


UNSET = object()


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` → (["section", "key"], value). Values are TOML; bare words are strings; an empty value
    (`section.key=`) is UNSET: the key is removed, so its default applies again."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected section.key=value", hint="For example: --set adapter.r=8")
    key, _, value = text.partition("=")
    parts = key.strip().split(".")
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in parts):
        raise RecipeError(f"--set {text!r}: '{key}' is not a key path like training.learning_rate")
    if not value.strip():
        return parts, UNSET
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Load and resolve a recipe (a path or `pkg:path`); raise one RecipeError listing every problem found."""
    path = locate(path, Path.cwd())
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for file, table in _layers(path):
        _merge(merged, table, origins, str(file))
    for text in overrides:
        parts, value = parse_override(text)
        if value is UNSET:
            _unset(merged, origins, parts)
            continue
        nested: Any = value
        for p in reversed(parts):
            nested = {p: nested}
        _merge(merged, nested, origins, f"--set {text}")
    return _build(path.resolve(), merged, origins)


def recipe_from_table(table: dict[str, Any], path: Path) -> Recipe:
    """A recipe from a table already in memory, as if read from `path` (which need not exist); no `extends`."""
    import copy

    return _build(path, copy.deepcopy(table), {})


def _unset(merged: dict[str, Any], origins: dict[str, str], parts: list[str]) -> None:
    table = merged
    for p in parts[:-1]:
        table = table.get(p)
        if not isinstance(table, dict):
            return
    table.pop(parts[-1], None)
    origins.pop(".".join(parts), None)


def _build(path: Path, merged: dict[str, Any], origins: dict[str, str]) -> Recipe:
    problems: list[Problem] = []
    top = dict(merged)
    name = top.pop("name", path.stem)
    description = top.pop("description", "")
    requires = top.pop("requires", [])
    for key, value, kind in (("name", name, str), ("description", description, str)):
        if not isinstance(value, kind):
            problems.append(Problem("must be a string", key=key))
    if not (isinstance(requires, list) and all(isinstance(r, str) for r in requires)):
        problems.append(Problem('must be a list of package requirements, e.g. ["loraforge-jsonx>=0.3"]',
                                key="requires"))
    parsed: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        table = top.pop(section, {})
        if not isinstance(table, dict):
            problems.append(Problem("must be a table", key=section))
            continue
        parsed[section], found = parse(cls, table, section)
        problems += found
        _canonical_origins(origins, section, cls)
    components: dict[str, Any] = {}
    for section, (selector, _, default) in COMPONENTS.items():
        value = top.pop(section, None)
        if section == "export":
            tables = value if value is not None else []
            if not isinstance(tables, list):
                problems.append(Problem("must be an array of tables: [[export]]", key="export"))
                tables = []
            components["exports"] = [_spec(section, f"export[{i}]", t, selector, default, problems)
                                     for i, t in enumerate(tables)]
        else:
            components[section] = _spec(section, section, value if value is not None else {}, selector, default,
                                        problems)
    raw_sections = {}
    for key, value in top.items():
        if isinstance(value, dict):
            raw_sections[key] = value
        else:
            known_keys = ["name", "description", "requires", "extends", *SECTIONS, *COMPONENTS]
            problems.append(Problem(f"unknown key{did_you_mean(key, known_keys)}", key=key))
    if problems:
        raise RecipeError(problems, file=path)
    return Recipe(path=path, name=name, description=description, requires=list(requires),
                  raw_sections=raw_sections, origins=origins, **parsed, **components)


def _spec(section: str, key: str, table: Any, selector: str, default: str | None,
          problems: list[Problem]) -> ComponentSpec:
    if not isinstance(table, dict):
        problems.append(Problem("must be a table", key=key))
        table = {}
    raw = dict(table)
    name = raw.pop(selector, default)
    if name is None:
        problems.append(Problem(f"is required: which {COMPONENTS[section][1]} to use", key=f"{key}.{selector}"))
        name = ""
    elif not isinstance(name, str):
        problems.append(Problem("must be a string", key=f"{key}.{selector}"))
        name = ""
    return ComponentSpec(section=section, key=key, name=name, raw=raw)


def dump(recipe: Recipe) -> str:
    import tomli_w

    return tomli_w.dumps(recipe.to_dict())
