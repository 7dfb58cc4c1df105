"""Typed options from plain TOML data.

Every section of a recipe, and every component's options, is a dataclass whose fields are declared with
`option(...)`: a default, a help text, and simple constraints. `parse` turns a TOML table into an instance and
collects *every* problem (unknown key with a did-you-mean, wrong type, out of range) instead of stopping at the
first, so one `validate` shows the whole list. Cross-field rules live on the class as `check(self)`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

from .errors import Problem, did_you_mean

T = TypeVar("T")


def option(
    default: Any = MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    choices: tuple[Any, ...] | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    aliases: tuple[str, ...] = (),
) -> Any:
    """Declare one typed option. Constraints are checked by `parse` and documented by `describe`."""
    meta = {"help": help, "choices": choices, "gt": gt, "ge": ge, "lt": lt, "le": le, "aliases": aliases}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str
    help: str
    aliases: tuple[str, ...]


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is list:
        (inner,) = get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin is dict:
        return "table"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, getattr(tp, "__name__", str(tp)))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe(cls: type) -> list[FieldDoc]:
    """Field documentation for the recipe reference and `loraforge plugins --options`."""
    hints = _hints(cls)
    docs = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        if f.default is not MISSING:
            default = _toml_literal(f.default)
        elif f.default_factory is not MISSING:
            default = _toml_literal(f.default_factory())
        else:
            default = "(required)"
        docs.append(FieldDoc(f.name, _type_name(hints[f.name]), default, f.metadata.get("help", ""),
                             tuple(f.metadata.get("aliases", ()))))
    return docs


def _toml_literal(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_literal(v)}" for k, v in value.items()) + "}"
    return str(value)


def _coerce(value: Any, tp: Any, key: str) -> tuple[Any, str | None]:
    """Return (value, None) when `value` fits `tp`, else (None, message)."""
    origin = get_origin(tp)
    if tp is Any:
        return value, None
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in get_args(tp):
            if arm is type(None):
                if value is None:
                    return None, None
                continue
            out, err = _coerce(value, arm, key)
            if err is None:
                return out, None
            errors.append(err)
        return None, errors[0] if errors else "unsupported value"
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value, None
        hint = did_you_mean(str(value), [str(a) for a in allowed])
        return None, f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}{hint}"
    if origin is list:
        (inner,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            return None, f"must be a list of {_type_name(inner)}, got {_describe_value(value)}"
        out = []
        for i, item in enumerate(value):
            v, err = _coerce(item, inner, f"{key}[{i}]")
            if err:
                return None, f"item {i}: {err}"
            out.append(v)
        return out, None
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return None, f"must be a table, got {_describe_value(value)}"
        return dict(value), None
    if tp is bool:
        if isinstance(value, bool):
            return value, None
        return None, f"must be true or false, got {_describe_value(value)}"
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        return None, f"must be an integer, got {_describe_value(value)}"
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value), None
        return None, f"must be a number, got {_describe_value(value)}"
    if tp is str:
        if isinstance(value, str):
            return value, None
        return None, f"must be a string, got {_describe_value(value)}"
    raise TypeError(f"unsupported option type {tp!r} for {key}")


def _describe_value(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def _check_range(value: Any, meta: dict[str, Any]) -> str | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    for v in values:
        if meta.get("choices") is not None and v not in meta["choices"]:
            hint = did_you_mean(str(v), [str(c) for c in meta["choices"]])
            return f"must be one of {', '.join(repr(c) for c in meta['choices'])}, got {v!r}{hint}"
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        for bound, op, word in (("gt", float.__gt__, ">"), ("ge", float.__ge__, ">="),
                                ("lt", float.__lt__, "<"), ("le", float.__le__, "<=")):
            limit = meta.get(bound)
            if limit is not None and not op(float(v), float(limit)):
                return f"must be {word} {limit:g}, got {v!r}"
    return None


def aliases(cls: type) -> dict[str, str]:
    """alias → field name, for the fields of `cls` that accept another spelling."""
    return {a: f.name for f in dataclasses.fields(cls) for a in f.metadata.get("aliases", ())}


def parse(cls: type[T], data: dict[str, Any], prefix: str) -> tuple[T | None, list[Problem]]:
    """Build `cls` from a TOML table; return the instance (None on errors) and every problem found."""
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    alias_of = aliases(cls)
    problems: list[Problem] = []
    kwargs: dict[str, Any] = {}
    seen_from: dict[str, str] = {}
    for raw_key, value in data.items():
        name = alias_of.get(raw_key, raw_key)
        key = f"{prefix}.{raw_key}" if prefix else raw_key
        if name not in fields:
            hint = did_you_mean(raw_key, list(fields) + list(alias_of)) or f" (known: {', '.join(fields)})"
            problems.append(Problem(f"unknown key{hint}", key=key))
            continue
        if name in seen_from:
            problems.append(Problem(f"given twice, also as '{seen_from[name]}'", key=key))
            continue
        seen_from[name] = raw_key
        out, err = _coerce(value, hints[name], key)
        if err is None:
            err = _check_range(out, fields[name].metadata)
        if err:
            problems.append(Problem(err, key=key))
        else:
            kwargs[name] = out
    for name, f in fields.items():
        if name not in kwargs and f.default is MISSING and f.default_factory is MISSING:
            if not any(p.key and p.key.endswith(f".{name}") for p in problems):
                problems.append(Problem("is required", key=f"{prefix}.{name}" if prefix else name))
    if problems:
        return None, problems
    instance = cls(**kwargs)
    check = getattr(instance, "check", None)
    if check is not None:
        for key, message in check():
            problems.append(Problem(message, key=f"{prefix}.{key}" if prefix else key))
    return (None if problems else instance), problems


def to_dict(instance: Any) -> dict[str, Any]:
    """A TOML-writable dict of an options instance (None values dropped: TOML has no null)."""
    return {k: v for k, v in dataclasses.asdict(instance).items() if v is not None and not k.startswith("_")}


@dataclass
class NoOptions:
    """For components that take no options."""
