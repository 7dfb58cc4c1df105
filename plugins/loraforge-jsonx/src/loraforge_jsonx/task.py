"""JSON extraction: the model reads a short text and writes its structured fields as one compact JSON object.

Records are `{"text": "...", "fields": {"name": value, ...}}`. The target is
`json.dumps(fields, sort_keys=True, separators=(",", ":"))`, so there is exactly one right string per record and
the loss is spent on values, not on layout. Parsing is lenient about layout (text around the object, code fences,
spaces inside it) and strict about content: the first balanced `{...}` that is a JSON object is the prediction,
anything else is the sentinel `INVALID`, never a guess.

The field schema lives in the recipe's own `[jsonx]` table (`JsonxSection`), registered by this plugin through
`register_recipe_sections`. Components are built from their own table only (`factory(options)`), so the plugin's
`on_run_start` hook hands the parsed section to the task (`JsonxTask.bind`). The engine reads and checks records
and formats the training examples *before* that hook fires, so nothing the task does at that point depends on the
schema: every record must carry the same field names as the first one read, and the prompt lists the record's own
(sorted) field names. `bind` then checks every record against `[jsonx] fields`; once that passes, the prompts
written before and after binding are identical.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from loraforge.components import Example, Record, Task
from loraforge.errors import DataError
from loraforge.schema import option

#: what `parse` returns when a generation holds no JSON object
INVALID = "invalid"

DEFAULT_INSTRUCTION = "Extract the fields from the text as one compact JSON object (null when not stated)."

_MAX_GENERATED = 20_000  # bounds parse time on runaway generations


def target_json(fields: dict[str, Any]) -> str:
    """The one canonical answer: sorted keys, no spaces."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _balanced_end(text: str, start: int) -> int | None:
    """Index of the `}` closing the `{` at `start` (braces inside JSON strings ignored), or None."""
    depth = 0
    in_string = escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def extract_object(generated: Any) -> dict[str, Any] | str:
    """The first balanced `{...}` of `generated` that `json.loads` reads as an object, else INVALID.

    Balanced groups are tried left to right; one that is not valid JSON is skipped as a whole (an object nested
    inside a broken one is not taken for the answer). A `{` that is never closed (a truncated generation) ends
    the search. Never raises.
    """
    if not isinstance(generated, str):
        return INVALID
    text = generated[:_MAX_GENERATED]
    start = text.find("{")
    while start != -1:
        end = _balanced_end(text, start)
        if end is None:
            return INVALID
        try:
            value = json.loads(text[start:end + 1])
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", end + 1)
    return INVALID


@dataclass
class JsonxSection:
    """The `[jsonx]` recipe table: the fields every record carries and the model must write, and how to score."""

    fields: list[str] = option(help="Field names of the JSON object, e.g. [\"age\", \"sex\"]. Every record's "
                                    "fields object has exactly these keys (null where the text does not say).")
    strict_types: bool = option(False, help="Score a value as right only when its JSON type matches too (34 and "
                                            "\"34\" differ). Off: numbers and numeric strings compare as numbers, "
                                            "strings ignore case and spacing, a missing key counts as null.")
    allow_extra_fields: bool = option(False, help="A prediction with keys beyond `fields` can still be an exact "
                                                  "match (the extra keys are ignored). Off: extra keys make the "
                                                  "object wrong.")

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.fields:
            yield "fields", "must list at least one field"
        seen: set[str] = set()
        for name in self.fields:
            if not name.strip() or name != name.strip():
                yield "fields", f"field {name!r} must be non-empty, without surrounding spaces"
            elif name in seen:
                yield "fields", f"field {name!r} is listed twice"
            seen.add(name)


class JsonxTask(Task):
    """Structured fields from a text, written as one compact JSON object with sorted keys."""

    @dataclass
    class Options:
        instruction: str = option(DEFAULT_INSTRUCTION, help="First line of every prompt; the field names follow.")
        text_field: str = option("text", help="Record key holding the text.")
        fields_field: str = option("fields", help="Record key holding the gold object {name: value}.")

        def check(self) -> Iterator[tuple[str, str]]:
            if self.text_field == self.fields_field:
                yield "fields_field", f"is the same key as text_field ({self.text_field!r})"

    default_metrics: ClassVar[tuple[str, ...]] = ("jsonx",)

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        #: the recipe's `[jsonx]` table, handed over by the plugin's `on_run_start` hook
        self.schema: JsonxSection | None = None
        self._first: Record | None = None  # the first record checked fixes the field names until `bind`

    def bind(self, schema: JsonxSection, records: Iterable[Record] = ()) -> None:
        """Adopt the `[jsonx]` table and check `records` (already read and checked without it) against it."""
        self.schema = schema
        for record in records:
            self.check(record)

    # ------------------------------------------------------------------ records
    def _fields(self, record: Record) -> dict[str, Any]:
        return record.data[self.options.fields_field]

    def field_names(self, record: Record) -> list[str]:
        """The fields the prompt asks for: `[jsonx] fields` once bound (checked equal to the record's), sorted."""
        return sorted(self.schema.fields if self.schema is not None else self._fields(record))

    def check(self, record: Record) -> None:
        """A non-empty text, and an object of JSON values with the declared field names (or, before the schema is
        bound, the same names as the first record read)."""
        o = self.options

        def fail(message: str, hint: str) -> NoReturn:
            raise DataError(message, file=record.file, line=record.line, hint=hint)

        data = record.data if isinstance(record.data, dict) else {}
        keys = ", ".join(map(str, data)) or "none"
        text = data.get(o.text_field)
        if not isinstance(text, str):
            got = "missing" if o.text_field not in data else f"a {type(text).__name__}, not a string"
            fail(f"field '{o.text_field}' is {got}",
                 f"each record needs the text under '{o.text_field}' (keys found: {keys}); set `task.text_field` "
                 "in the recipe if it is stored under another key")
        if not text.strip():
            fail(f"field '{o.text_field}' is empty", "give every record a text, or drop this record")
        fields = data.get(o.fields_field)
        if not isinstance(fields, dict):
            got = "missing" if o.fields_field not in data else f"a {type(fields).__name__}, not an object"
            fail(f"field '{o.fields_field}' is {got}",
                 f'give the gold values as an object under \'{o.fields_field}\', e.g. {{"age": 34, "sex": "female"}}'
                 " (JSONL; CSV cells cannot hold objects); set `task.fields_field` if it is stored under another key")
        for name, value in fields.items():
            if not name.strip():
                fail(f"'{o.fields_field}' has an empty field name", "name every field")
            try:
                json.dumps(value, allow_nan=False)
            except ValueError:
                fail(f"field '{name}' has the value {value!r}, which JSON cannot write",
                     "use finite numbers (NaN and Infinity are not JSON), or null")
        if self.schema is not None:
            declared, where = list(self.schema.fields), "`[jsonx] fields`"
            hint = "every record carries exactly the declared fields (null where the text does not say); fix the " \
                   "data or `[jsonx] fields` in the recipe"
        else:
            if self._first is None:
                self._first = record
            declared = list(self._fields(self._first))
            where = f"the first record ({self._first.file}:{self._first.line})"
            hint = "every record carries the same field names (null where the text does not say)"
        missing = [n for n in declared if n not in fields]
        extra = [n for n in fields if n not in declared]
        if missing or extra:
            parts = ([f"lacks {', '.join(repr(n) for n in missing)}"] if missing else []) + \
                    ([f"has {', '.join(repr(n) for n in extra)}, not there"] if extra else [])
            close = difflib.get_close_matches(extra[0], missing, n=1, cutoff=0.6) if extra and missing else []
            if close:
                hint = f"'{extra[0]}' looks like '{close[0]}': rename one of them; {hint}"
            fail(f"'{o.fields_field}' does not match {where}: {'; '.join(parts)}", hint)

    # ------------------------------------------------------------------ text
    def format(self, record: Record) -> Example:
        """Prompt: instruction, 'Fields: a, b', 'Text: ...', 'JSON:' and a newline; target: the compact object."""
        o = self.options
        prompt = (f"{o.instruction}\nFields: {', '.join(self.field_names(record))}\n"
                  f"Text: {record.data[o.text_field]}\nJSON:\n")
        return Example(prompt=prompt, target=target_json(self._fields(record)))

    def reference(self, record: Record) -> dict[str, Any]:
        return dict(self._fields(record))

    def parse(self, generated: str, record: Record) -> dict[str, Any] | str:
        """The first JSON object in the generation, or INVALID. Never raises."""
        return extract_object(generated)
