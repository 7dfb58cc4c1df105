"""Generative text classification: the model reads the allowed labels and a text, and writes one label.

The target is the label itself, so the loss is spent on a couple of tokens per record. Parsing is lenient about
layout (case, surrounding whitespace and punctuation, a `Label:` echo, text after the first line) and strict
about content: a generation that names no declared label is the sentinel `INVALID`, never a guess. The
`classification` metric counts those separately, so a model that rambles is told apart from one that is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ...components import Example, Metric, Record, Task
from ...constraints import Choice
from ...errors import did_you_mean
from ...hookspecs import hookimpl
from ...run import Run
from ...schema import option

#: what `parse` returns when a generation names no declared label (and the confusion-matrix column for it)
INVALID = "invalid"

DEFAULT_INSTRUCTION = "Classify the text into one of the labels. Answer with the label only."

#: a generation is cut here: end-of-sequence markers a tokenizer may leave in decoded text
_EOS = re.compile(r"</s>|<\|?(?:end|eos|eot|im_end)[a-z_|]*>", re.IGNORECASE)
#: an echoed field name before the answer ("Label: urgent")
_PREFIX = re.compile(r"^\s*(?:label|answer|category|class)\s*[:=\-]\s*", re.IGNORECASE)
_NON_WORD = re.compile(r"[\W_]+")
_MAX_GENERATED = 10_000  # bounds parse time on runaway generations


def normalize_label(text: str) -> str:
    """Case- and punctuation-insensitive key: lower case, every run of non-alphanumerics one space.

    "**Urgent.**", " urgent " and "URGENT!" all become "urgent"; "Follow-up" and "follow up" both "follow up".
    """
    return _NON_WORD.sub(" ", text.lower()).strip()


class ClassificationTask(Task):
    """One label per text, written by the model after the list of allowed labels."""

    @dataclass
    class Options:
        labels: list[str] = option(help="Labels the model may answer, e.g. [\"urgent\", \"routine\"]; each record's "
                                        "label must be one of them.")
        instruction: str = option(DEFAULT_INSTRUCTION, help="First line of every prompt; the labels follow it.")
        text_field: str = option("text", help="Record key (or CSV column) holding the text.")
        label_field: str = option("label", help="Record key (or CSV column) holding the gold label.")

        def check(self) -> Iterator[tuple[str, str]]:
            """Labels are listed comma-separated in the prompt and matched case- and punctuation-insensitively,
            so they must stay distinct under that matching and must not be the invalid sentinel."""
            if not self.labels:
                yield "labels", "must list at least one label"
            seen: dict[str, str] = {}
            for label in self.labels:
                key = normalize_label(label)
                if not label.strip() or label != label.strip() or "\n" in label or "," in label:
                    yield "labels", (f"label {label!r} must be non-empty, on one line, without commas or "
                                     "surrounding spaces")
                elif not key:
                    yield "labels", f"label {label!r} needs at least one letter or digit"
                elif key == INVALID:
                    yield "labels", f"label {label!r} is reserved: '{INVALID}' marks generations that name no label"
                elif key in seen:
                    yield "labels", (f"labels {seen[key]!r} and {label!r} are the same once case and "
                                     "punctuation are ignored")
                else:
                    seen[key] = label
            if self.text_field == self.label_field:
                yield "label_field", f"is the same key as text_field ({self.text_field!r})"

    default_metrics: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._labels = frozenset(self.options.labels)
        self._by_key = {normalize_label(label): label for label in self.options.labels}

    # ------------------------------------------------------------------ records
    def check(self, record: Record) -> None:
        """The text must be a non-empty string and the label one of `labels` (exactly, as written there)."""
        o = self.options

        data = record.data if isinstance(record.data, dict) else {}
        keys = ", ".join(map(str, data)) or "none"
        for name, key in (("text", o.text_field), ("label", o.label_field)):
            value = data.get(key)
            if not isinstance(value, str):
                got = "missing" if key not in data else f"a {type(value).__name__}, not a string"
                raise record.error(f"field '{key}' is {got}",
                     f"each record needs the {name} under '{key}' (keys found: {keys}); set "
                     f"`task.{name}_field` in the recipe if it is stored under another key")
            if not value.strip():
                raise record.error(f"field '{key}' is empty", f"give every record a {name}, or drop this record")
        label = data[o.label_field]
        if label not in self._labels:
            close = self._by_key.get(normalize_label(label))
            suggestion = f"; did you mean '{close}'?" if close else did_you_mean(label, o.labels)
            raise record.error(f"label {label!r} is not declared{suggestion}",
                 f"labels must match `task.labels` exactly (declared: {', '.join(o.labels)}); add it there or fix "
                 "the data")

    # ------------------------------------------------------------------ text
    def format(self, record: Record) -> Example:
        """Prompt: instruction, 'Labels: a, b, c', 'Text: ...', then 'Label:' and a newline; target: the label."""
        o = self.options
        prompt = (f"{o.instruction}\nLabels: {', '.join(o.labels)}\n"
                  f"Text: {record.data[o.text_field]}\nLabel:\n")
        return Example(prompt=prompt, target=record.data[o.label_field])

    def reference(self, record: Record) -> str:
        return record.data[self.options.label_field]

    def constraint(self, record: Record) -> Choice:
        """The answer is one declared label, written exactly."""
        return Choice(self.options.labels)

    def parse(self, generated: str, record: Record) -> str:
        """A declared label, or INVALID. Exact match first, then case/space/punctuation-insensitive on the whole
        answer, then on its first non-empty line; an echoed 'Label:' is skipped. Never raises."""
        if not isinstance(generated, str):
            return INVALID
        if generated in self._labels:
            return generated
        text = generated[:_MAX_GENERATED]
        eos = _EOS.search(text)
        if eos:
            text = text[:eos.start()]
        text = text.strip()
        candidates = [text]
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if first != text:
            candidates.append(first)
        for candidate in candidates:
            for variant in (candidate, _PREFIX.sub("", candidate, count=1).strip()):
                if variant in self._labels:
                    return variant
                found = self._by_key.get(normalize_label(variant))
                if found is not None:
                    return found
        return INVALID


# ---------------------------------------------------------------------------------------------- metric


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


class ClassificationMetric(Metric):
    """Accuracy, macro and per-class precision/recall/F1, a confusion matrix, and the invalid-answer rate.

    Classes are the task's declared labels (in their order), then any other gold label met in the data. A
    prediction that is not one of those classes (INVALID, None, anything else) counts as invalid: wrong for
    accuracy and recall, predicted for no class. Macro averages run over the classes that occur in the gold labels
    or in the predictions (as scikit-learn does by default), so a declared label absent from a small split does
    not pull macro-F1 down. Precision, recall or F1 with a zero denominator is 0.
    """

    def compute(self, run: Run, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        declared = [str(x) for x in (getattr(getattr(run.task, "options", None), "labels", None) or [])]
        gold = [str(r) for r in references]
        classes = declared + sorted({g for g in gold if g not in declared})
        known = set(classes)
        guess = [p if isinstance(p, str) and p in known and p != INVALID else INVALID for p in predictions]

        confusion = {g: {c: 0 for c in (*classes, INVALID)} for g in classes}
        for g, p in zip(gold, guess):
            confusion[g][p] += 1
        per_class: dict[str, dict[str, Any]] = {}
        for c in classes:
            tp = confusion[c][c]
            support = sum(confusion[c].values())
            predicted = sum(row[c] for row in confusion.values())
            precision, recall = _ratio(tp, predicted), _ratio(tp, support)
            per_class[c] = {"precision": precision, "recall": recall,
                            "f1": _ratio(2 * precision * recall, precision + recall), "support": support,
                            "predicted": predicted}
        active = [c for c in classes if per_class[c]["support"] or per_class[c]["predicted"]]
        macro = {k: _ratio(sum(per_class[c][k] for c in active), len(active)) for k in ("precision", "recall", "f1")}
        n = len(gold)
        invalid = guess.count(INVALID)
        return {
            "accuracy": _ratio(sum(g == p for g, p in zip(gold, guess)), n),
            "macro_f1": macro["f1"],
            "records": n,
            "macro": macro,
            "per_class": per_class,
            "invalid": {"count": invalid, "rate": _ratio(invalid, n)},
            "confusion": confusion,
        }


@hookimpl
def register_tasks(register: Any) -> None:
    register("classification", ClassificationTask)


@hookimpl
def register_metrics(register: Any) -> None:
    register("classification", ClassificationMetric)
