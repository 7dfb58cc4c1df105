"""JSON extraction: the model reads a short text and writes its structured fields as one compact JSON object.

Records are `{"text": "...", "fields": {"name": value, ...}}`. The target is
`json.dumps(fields, sort_keys=True, separators=(",", ":"))`, so there is exactly one right string per record and
the loss is spent on values, not on layout. Parsing is lenient about layout (text around the object, code fences,
spaces inside it) and strict about content: the first balanced `{...}` that is a JSON object is the prediction,
anything else is the sentinel `INVALID`, never a guess.

The field schema lives in the recipe's own `[jsonx]` table (`JsonxSection`), registered by this plugin through
`register_recipe_sections`. The engine calls `JsonxTask.configure(run)` right after building the task, before
any record is read (for `loraforge run` and `loraforge validate` alike); the task takes `run.recipe.sections["jsonx"]`
there, so `check` holds every record to `[jsonx] fields` and the prompt lists those fields.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from loraforge.components import Example, Record, Task
from loraforge.errors import DataError, RecipeError
from loraforge.schema import option

if TYPE_CHECKING:
    from loraforge.run import Run

#: the plugin's recipe table
SECTION = "jsonx"

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
        #: the recipe's `[jsonx]` table, taken in `configure`
        self.schema: JsonxSection | None = None

    def configure(self, run: Run) -> None:
        """Take the `[jsonx]` table; a recipe without one is a RecipeError (the fields have no default)."""
        recipe = run.recipe
        schema = recipe.sections.get(SECTION)
        if schema is None:
            raise RecipeError(f"the jsonx task needs a [{SECTION}] table declaring its fields", key=SECTION,
                              file=recipe.path,
                              hint=f'Add to the recipe:\n[{SECTION}]\nfields = ["age", "sex"]   # the keys of each '
                                   "record's fields object")
        self.schema = schema

    def _declared(self) -> list[str]:
        if self.schema is None:
            raise RuntimeError("JsonxTask.configure(run) was not called: the task has no [jsonx] fields")
        return list(self.schema.fields)

    # ------------------------------------------------------------------ records
    def _fields(self, record: Record) -> dict[str, Any]:
        return record.data[self.options.fields_field]

    def field_names(self) -> list[str]:
        """The fields the prompt asks for: `[jsonx] fields`, sorted like the keys of the target."""
        return sorted(self._declared())

    def check(self, record: Record) -> None:
        """A non-empty text, and an object of JSON values with exactly the field names of `[jsonx] fields`."""
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
        declared = self._declared()
        hint = "every record carries exactly the declared fields (null where the text does not say); fix the data " \
               "or `[jsonx] fields` in the recipe"
        missing = [n for n in declared if n not in fields]
        extra = [n for n in fields if n not in declared]
        if missing or extra:
            parts = ([f"lacks {', '.join(repr(n) for n in missing)}"] if missing else []) + \
                    ([f"has {', '.join(repr(n) for n in extra)}, not there"] if extra else [])
            close = difflib.get_close_matches(extra[0], missing, n=1, cutoff=0.6) if extra and missing else []
            if close:
                hint = f"'{extra[0]}' looks like '{close[0]}': rename one of them; {hint}"
            fail(f"'{o.fields_field}' does not match `[jsonx] fields`: {'; '.join(parts)}", hint)

    # ------------------------------------------------------------------ text
    def format(self, record: Record) -> Example:
        """Prompt: instruction, 'Fields: a, b', 'Text: ...', 'JSON:' and a newline; target: the compact object."""
        o = self.options
        prompt = (f"{o.instruction}\nFields: {', '.join(self.field_names())}\n"
                  f"Text: {record.data[o.text_field]}\nJSON:\n")
        return Example(prompt=prompt, target=target_json(self._fields(record)))

    def reference(self, record: Record) -> dict[str, Any]:
        return dict(self._fields(record))

    def parse(self, generated: str, record: Record) -> dict[str, Any] | str:
        """The first JSON object in the generation, or INVALID. Never raises."""
        return extract_object(generated)
