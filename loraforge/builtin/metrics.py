"""Builtin metrics.

`seqeval` scores entity spans the way the NER literature does (entity-level, exact match of tokens and label),
so numbers are comparable with published CoNLL results. Predictions and references are character spans; they
are projected onto one token grid per text (words and single punctuation marks), turned into BIO tags, and
handed to seqeval. Spans that cut a word count for the whole word, as a token tagger would have to.

It also splits recall by whether a gold mention's text was *seen* as an entity in the training split or is
*unseen* there: a model that only memorised its training vocabulary scores well on the first and near zero on
the second, so the pair tells memory from generalisation.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

from ..components import Metric
from ..hookspecs import hookimpl
from ..run import Run

_TOKEN = re.compile(r"\w+|[^\w\s]")

Span = tuple[int, int, str]


def _spans(item: Any) -> list[Span]:
    """Spans of a prediction or reference; None (a failed generation) means no entities."""
    if item is None:
        return []
    return sorted((int(s), int(e), str(label)) for s, e, label in item)


def _grid(text: str | None, spans: Iterable[Span]) -> list[tuple[int, int]]:
    """Token boundaries: regex tokens of the text, or (without a text) the segments between span edges."""
    if text is not None:
        return [m.span() for m in _TOKEN.finditer(text)]
    edges = sorted({p for s, e, _ in spans for p in (s, e)})
    return list(zip(edges, edges[1:]))


def bio_tags(tokens: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[str]:
    """B-X on the first token overlapping span X, I-X on the next ones; a token already tagged keeps its tag."""
    tags = ["O"] * len(tokens)
    ends = [te for _, te in tokens]
    for start, end, label in sorted(spans):
        first = True
        for i in range(bisect_right(ends, start), len(tokens)):
            if tokens[i][0] >= end:
                break
            if tags[i] != "O":
                continue
            tags[i] = ("B-" if first else "I-") + label
            first = False
    return tags


def _prf(values: Any) -> dict[str, float]:
    p, r, f, _ = values
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def _mention(text: str, start: int, end: int) -> str:
    return " ".join(text[start:end].lower().split())


def mention_recall(predictions: Sequence[Any], references: Sequence[Any],
                   train_references: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Recall of exact gold spans, split by whether the mention text (case- and space-insensitive) occurs as an
    entity of any label in the training references: {"seen": {...}, "unseen": {...}}, each with per-label recall."""
    known = {_mention(ref.text, s, e) for ref in train_references for s, e, _ in _spans(ref)}
    counts: dict[tuple[str, str], list[int]] = {}
    for pred, ref in zip(predictions, references):
        guess = set(_spans(pred))
        for span in _spans(ref):
            kind = "seen" if _mention(ref.text, span[0], span[1]) in known else "unseen"
            for key in ((kind, ""), (kind, span[2])):
                hit_total = counts.setdefault(key, [0, 0])
                hit_total[0] += span in guess
                hit_total[1] += 1
    result: dict[str, dict[str, Any]] = {}
    for kind in ("seen", "unseen"):
        hits, total = counts.get((kind, ""), (0, 0))
        result[kind] = {"recall": hits / total if total else 0.0, "support": total,
                        "per_class": {label: {"recall": h / n, "support": n}
                                      for (k, label), (h, n) in sorted(counts.items()) if k == kind and label}}
    return result


class SeqevalMetric(Metric):
    """Entity-level precision, recall and F1 (micro, macro and per label) via seqeval's default mode, and recall
    on mentions seen and unseen in training."""

    def compute(self, run: Run, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        y_true: list[list[str]] = []
        y_pred: list[list[str]] = []
        for pred, ref in zip(predictions, references):
            gold, guess = _spans(ref), _spans(pred)
            text = getattr(ref, "text", None)
            if text is None:
                text = getattr(pred, "text", None)
            tokens = _grid(text, gold + guess)
            y_true.append(bio_tags(tokens, gold))
            y_pred.append(bio_tags(tokens, guess))

        declared = list(getattr(getattr(run.task, "options", None), "labels", None) or [])
        seen = {t for t, _, _ in get_entities(y_true)} | {t for t, _, _ in get_entities(y_pred)}
        labels = declared + sorted(seen - set(declared))
        zeros = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        per_class = {label: {**zeros, "support": 0} for label in labels}
        result: dict[str, Any] = {"micro": dict(zeros), "macro": dict(zeros), "per_class": per_class,
                                  "records": len(references)}
        if not seen:
            return result
        kwargs = {"zero_division": 0}
        if run.evaluation is not None and all(hasattr(r, "text") for r in references):
            result["mentions"] = mention_recall(predictions, references, run.evaluation.train_references())
        result["micro"] = _prf(precision_recall_fscore_support(y_true, y_pred, average="micro", **kwargs))
        result["macro"] = _prf(precision_recall_fscore_support(y_true, y_pred, average="macro", **kwargs))
        p, r, f, support = precision_recall_fscore_support(y_true, y_pred, average=None, **kwargs)
        for i, label in enumerate(sorted(seen)):  # seqeval orders classes by name
            per_class[label] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                "support": int(support[i])}
        return result


@hookimpl
def register_metrics(register: Any) -> None:
    register("seqeval", SeqevalMetric)
