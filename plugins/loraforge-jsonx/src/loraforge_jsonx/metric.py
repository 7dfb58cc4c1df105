"""The `jsonx` metric: whole-object exact match, per-field accuracy and the valid-JSON rate.

Fields are `[jsonx] fields` when the task is configured (always, in a run), else every key met in the references.
How values compare follows `[jsonx] strict_types`:

- strict: same JSON type (null, boolean, number, string, array, object) and equal; `14` and `14.0` are the same
  number, `"14"` is not; a missing key is wrong even when the gold value is null.
- lenient (the default): numbers and numeric strings compare as numbers, strings ignore case and runs of spaces,
  a missing key counts as null.

A prediction that is not an object (INVALID) is wrong on every field. An object is an exact match when every
field is right and, unless `[jsonx] allow_extra_fields`, it has no other keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from loraforge.components import Metric
from loraforge.run import Run

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_MISSING = object()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _lenient(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = " ".join(value.split()).casefold()
        return float(text) if _NUMBER.fullmatch(text) else text
    if isinstance(value, list):
        return [_lenient(v) for v in value]
    if isinstance(value, dict):
        return {k: _lenient(v) for k, v in value.items()}
    return value


def same_value(predicted: Any, gold: Any, *, strict: bool) -> bool:
    """Whether one predicted field value counts as right (`_MISSING` when the prediction lacks the key)."""
    if strict:
        return predicted is not _MISSING and _kind(predicted) == _kind(gold) and predicted == gold
    if predicted is _MISSING:
        predicted = None
    try:
        return _lenient(predicted) == _lenient(gold)
    except (OverflowError, ValueError):  # e.g. a 400-digit number string
        return False


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


class JsonxMetric(Metric):
    """Exact match of whole objects, accuracy per field (under "per_class") and the valid-JSON rate."""

    def compute(self, run: Run, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        schema = getattr(run.task, "schema", None)
        strict = bool(getattr(schema, "strict_types", False))
        allow_extra = bool(getattr(schema, "allow_extra_fields", False))
        refs = [r if isinstance(r, dict) else {} for r in references]
        if schema is not None:
            fields = list(schema.fields)
        else:
            fields = sorted({k for r in refs for k in r})
        right = {f: 0 for f in fields}
        support = {f: 0 for f in fields}
        exact = valid = 0
        for pred, ref in zip(predictions, refs):
            is_object = isinstance(pred, dict)
            valid += is_object
            whole = is_object and (allow_extra or all(k in fields for k in pred))
            for f in fields:
                if f not in ref:
                    continue
                support[f] += 1
                ok = is_object and same_value(pred.get(f, _MISSING), ref[f], strict=strict)
                right[f] += ok
                whole = whole and ok
            exact += whole
        n = len(refs)
        per_class = {f: {"accuracy": _ratio(right[f], support[f]), "support": support[f]} for f in fields}
        return {
            "exact_match": _ratio(exact, n),
            "field_accuracy": _ratio(sum(right.values()), sum(support.values())),
            "valid_json": _ratio(valid, n),
            "records": n,
            "per_class": per_class,
        }
