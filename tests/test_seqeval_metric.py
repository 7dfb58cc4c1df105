"""The seqeval metric on hand-built cases whose numbers are computed by hand."""

from __future__ import annotations

import json
import warnings

import pytest

from loraforge.builtin.metrics import SeqevalMetric, bio_tags, mention_recall, register_metrics
from loraforge.builtin.tasks.ner import NerTask, Spans
from loraforge.testing import scoring_run

TEXT = "John Smith lives in Paris, near Acme Corp."
JOHN, PARIS, ACME = (0, 10, "PER"), (20, 25, "LOC"), (32, 41, "ORG")


@pytest.fixture
def task() -> NerTask:
    return NerTask(NerTask.Options(labels=["PER", "LOC", "ORG", "MISC"]))


def score(task: NerTask, predictions: list, references: list) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning noise in run logs
        out = SeqevalMetric().compute(scoring_run(task), predictions, references)
    assert json.loads(json.dumps(out)) == out
    return out


def s(*spans: tuple[int, int, str], text: str = TEXT) -> Spans:
    return Spans(text, tuple(sorted(spans)))


def prf(p: float, r: float, f: float) -> dict:
    return {"precision": pytest.approx(p), "recall": pytest.approx(r), "f1": pytest.approx(f)}


def test_registered() -> None:
    found: dict = {}
    register_metrics(lambda name, factory: found.setdefault(name, factory))
    assert found == {"seqeval": SeqevalMetric}


def test_perfect(task: NerTask) -> None:
    gold = [s(JOHN, PARIS, ACME), s(JOHN)]
    out = score(task, list(gold), gold)
    assert out["micro"] == prf(1, 1, 1) and out["macro"] == prf(1, 1, 1) and out["records"] == 2
    assert out["per_class"]["PER"] == {**prf(1, 1, 1), "support": 2}
    assert out["per_class"]["MISC"] == {**prf(0, 0, 0), "support": 0}


def test_one_missed_entity(task: NerTask) -> None:
    out = score(task, [s(JOHN)], [s(JOHN, PARIS)])
    assert out["micro"] == prf(1, 0.5, 2 / 3)
    assert out["macro"] == prf(0.5, 0.5, 0.5)  # mean over PER (1, 1, 1) and LOC (0, 0, 0)
    assert out["per_class"]["LOC"] == {**prf(0, 0, 0), "support": 1}


def test_one_wrong_label(task: NerTask) -> None:
    out = score(task, [s(JOHN, (20, 25, "ORG"))], [s(JOHN, PARIS)])
    assert out["micro"] == prf(0.5, 0.5, 0.5)
    assert out["macro"] == prf(1 / 3, 1 / 3, 1 / 3)  # PER, LOC and ORG take part
    assert out["per_class"]["ORG"] == {**prf(0, 0, 0), "support": 0}
    assert out["per_class"]["LOC"] == {**prf(0, 0, 0), "support": 1}
    assert out["per_class"]["PER"] == {**prf(1, 1, 1), "support": 1}


def test_empty_predictions(task: NerTask) -> None:
    out = score(task, [s(), None], [s(JOHN, PARIS), s(ACME)])
    assert out["micro"] == prf(0, 0, 0) and out["macro"] == prf(0, 0, 0)
    assert {k: v["support"] for k, v in out["per_class"].items()} == {"PER": 1, "LOC": 1, "ORG": 1, "MISC": 0}


def test_nothing_anywhere(task: NerTask) -> None:
    out = score(task, [s(text="a b")], [s(text="a b")])
    assert out["micro"] == prf(0, 0, 0) and out["records"] == 1 and set(out["per_class"]) == {
        "PER", "LOC", "ORG", "MISC"}
    assert score(task, [], [])["records"] == 0


def test_spurious_prediction_and_boundary_error(task: NerTask) -> None:
    # gold: John Smith, Paris; predicted: "John" only (boundary error) plus spurious "Acme Corp"
    out = score(task, [s((0, 4, "PER"), ACME)], [s(JOHN, PARIS)])
    assert out["micro"] == prf(0, 0, 0)
    out = score(task, [s(JOHN, PARIS, ACME)], [s(JOHN, PARIS)])
    assert out["micro"] == prf(2 / 3, 1, 0.8)


def test_micro_pools_records(task: NerTask) -> None:
    out = score(task, [s(JOHN, PARIS, ACME), s()], [s(JOHN, PARIS, ACME), s(JOHN)])
    assert out["micro"] == prf(1, 0.75, 6 / 7)
    assert out["per_class"]["PER"] == {**prf(1, 0.5, 2 / 3), "support": 2}


def test_partial_word_span_counts_for_the_word(task: NerTask) -> None:
    # "Pari" covers the token "Paris": same token-level entity, so it is a hit
    out = score(task, [s((20, 24, "LOC"))], [s(PARIS)])
    assert out["micro"] == prf(1, 1, 1)


def test_bio_tags_on_regex_tokens() -> None:
    text = "Acme-Corp's CEO met U.S. officials."
    tokens = [(0, 4), (4, 5), (5, 9), (9, 10), (10, 11), (12, 15), (16, 19), (20, 21), (21, 22), (22, 23),
              (23, 24), (25, 34), (34, 35)]
    tags = bio_tags(tokens, [(0, 9, "ORG"), (20, 24, "LOC")])
    assert tags == ["B-ORG", "I-ORG", "I-ORG", "O", "O", "O", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "O", "O"]
    assert text[tokens[2][0]:tokens[2][1]] == "Corp"
    # adjacent entities of one label stay two entities
    assert bio_tags([(0, 1), (2, 3)], [(0, 1, "PER"), (2, 3, "PER")]) == ["B-PER", "B-PER"]


def test_adjacent_same_label_entities_are_distinct(task: NerTask) -> None:
    text = "Ann Bob"
    out = score(task, [s((0, 7, "PER"), text=text)], [s((0, 3, "PER"), (4, 7, "PER"), text=text)])
    assert out["micro"] == prf(0, 0, 0)
    assert out["per_class"]["PER"]["support"] == 2


def test_plain_span_lists_without_text(task: NerTask) -> None:
    out = score(task, [[(0, 4, "PER")], [(3, 5, "LOC")]], [[(0, 4, "PER")], [(3, 6, "LOC")]])
    assert out["micro"] == prf(0.5, 0.5, 0.5)


def test_length_mismatch_is_a_bug(task: NerTask) -> None:
    with pytest.raises(ValueError):
        SeqevalMetric().compute(scoring_run(task), [s()], [])


# ---------------------------------------------------------------- seen and unseen mentions
def test_mention_recall_splits_by_training_vocabulary() -> None:
    train = [Spans("Ann met Bob.", ((0, 3, "PER"),)), Spans("In  paris.", ((4, 9, "LOC"),))]
    text = "ann saw Zed in Paris and Rome."  # case and spacing do not matter; the label does not either
    ann, zed, paris, rome = (0, 3, "PER"), (8, 11, "PER"), (15, 20, "LOC"), (25, 29, "LOC")
    gold = [Spans(text, (ann, zed, paris, rome))]
    out = mention_recall([Spans(text, (ann, rome, (8, 10, "PER")))], gold, train)
    assert out["seen"] == {"recall": 0.5, "support": 2,
                           "per_class": {"LOC": {"recall": 0.0, "support": 1}, "PER": {"recall": 1.0, "support": 1}}}
    # Zed is cut short, so only Rome of the unseen mentions counts
    assert out["unseen"]["recall"] == 0.5 and out["unseen"]["support"] == 2
    assert mention_recall([None], [Spans("x", ())], train)["unseen"] == {"recall": 0.0, "support": 0, "per_class": {}}
