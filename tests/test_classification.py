"""The classification task and metric: options, record checks, prompt/target format, lenient parsing into a
label or the invalid sentinel, hand-computed scores, the shipped data set and recipe, and one real quick run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, cli

from loraforge.builtin.tasks.classification import (
    DEFAULT_INSTRUCTION,
    INVALID,
    ClassificationMetric,
    ClassificationTask,
    normalize_label,
    register_metrics,
    register_tasks,
)
from loraforge.components import Record
from loraforge.data import read_records
from loraforge.errors import DataError
from loraforge.schema import parse
from loraforge.testing import quick_recipe, scoring_run

LABELS = ["urgent", "routine", "administrative"]
DATA = ROOT / "data" / "classification"
RECIPE = ROOT / "recipes" / "classification_tiny.toml"


@pytest.fixture
def task() -> ClassificationTask:
    return ClassificationTask(ClassificationTask.Options(labels=list(LABELS)))


def rec(text: str = "Chest pain since noon.", label: str = "urgent", line: int = 1) -> Record:
    return Record({"text": text, "label": label}, file="data.jsonl", line=line)


# ---------------------------------------------------------------- options and registration
def test_registers_task_and_metric() -> None:
    found: dict[str, object] = {}
    register_tasks(register=found.__setitem__)
    register_metrics(register=lambda name, f: found.__setitem__(f"metric:{name}", f))
    assert found == {"classification": ClassificationTask, "metric:classification": ClassificationMetric}
    assert ClassificationTask.default_metrics == ("classification",)


def test_options_defaults_and_required_labels() -> None:
    opts, problems = parse(ClassificationTask.Options, {"labels": ["a", "b"]}, "task")
    assert problems == [] and opts.instruction == DEFAULT_INSTRUCTION
    assert (opts.text_field, opts.label_field) == ("text", "label")
    _, problems = parse(ClassificationTask.Options, {}, "task")
    assert [(p.key, p.message) for p in problems] == [("task.labels", "is required")]


@pytest.mark.parametrize("labels, message", [
    ([], "at least one label"),
    (["urgent", "Urgent"], "are the same once case and punctuation are ignored"),
    (["follow-up", "Follow up"], "are the same once case and punctuation are ignored"),
    (["yes", "Invalid"], "is reserved"),
    (["a, b", "c"], "without commas"),
    ([" a", "b"], "surrounding spaces"),
    (["?!", "b"], "at least one letter or digit"),
])
def test_options_reject_labels_that_cannot_be_told_apart(labels: list[str], message: str) -> None:
    _, problems = parse(ClassificationTask.Options, {"labels": labels}, "task")
    assert problems and all(p.key == "task.labels" for p in problems)
    assert any(message in p.message for p in problems), problems


def test_options_reject_same_text_and_label_field() -> None:
    _, problems = parse(ClassificationTask.Options, {"labels": ["a"], "label_field": "text"}, "task")
    assert [p.key for p in problems] == ["task.label_field"]


# ---------------------------------------------------------------- format and parse
def test_format_lists_labels_then_text_and_targets_the_label(task: ClassificationTask) -> None:
    ex = task.format(rec("Wants to book the annual physical.", "routine"))
    assert ex.prompt == (f"{DEFAULT_INSTRUCTION}\nLabels: urgent, routine, administrative\n"
                         "Text: Wants to book the annual physical.\nLabel:\n")
    assert ex.target == "routine"
    assert task.reference(rec(label="routine")) == "routine"


def test_custom_fields_and_instruction() -> None:
    task = ClassificationTask(ClassificationTask.Options(labels=["pos", "neg"], instruction="Sentiment?",
                                                         text_field="review", label_field="y"))
    r = Record({"review": "Great", "y": "pos"}, "f.csv", 2)
    task.check(r)
    assert task.format(r).prompt == "Sentiment?\nLabels: pos, neg\nText: Great\nLabel:\n"
    assert task.format(r).target == task.reference(r) == "pos"


@pytest.mark.parametrize("label", LABELS)
def test_round_trip(task: ClassificationTask, label: str) -> None:
    r = rec(label=label)
    assert task.parse(task.format(r).target, r) == task.reference(r) == label


@pytest.mark.parametrize("generated, expected", [
    ("urgent", "urgent"),
    ("URGENT", "urgent"),
    ("  Routine \n", "routine"),
    ("urgent.", "urgent"),
    ("**Administrative**", "administrative"),
    ('"routine"', "routine"),
    ("Label: urgent", "urgent"),
    ("answer = Routine!", "routine"),
    ("urgent\nThe patient has chest pain.", "urgent"),
    ("\n\n administrative \nrouting to front desk", "administrative"),
    ("routine</s>garbage", "routine"),
    ("routine<|end_of_text|>", "routine"),
    ("ADMINISTRATIVE   ", "administrative"),
    # anything that is not one label is invalid, never a guess
    ("", INVALID),
    ("   \n ", INVALID),
    ("urgently", INVALID),
    ("urgent routine", INVALID),
    ("This looks urgent to me", INVALID),
    ("Label:", INVALID),
    ("emergency", INVALID),
    ("invalid", INVALID),
    ("x" * 50_000, INVALID),
])
def test_parse_edge_cases(task: ClassificationTask, generated: str, expected: str) -> None:
    assert task.parse(generated, rec()) == expected


def test_parse_never_raises_on_non_text(task: ClassificationTask) -> None:
    assert task.parse(None, rec()) == INVALID  # type: ignore[arg-type]
    assert task.parse(42, rec()) == INVALID  # type: ignore[arg-type]


def test_parse_prefers_an_exact_match() -> None:
    """The whole answer is matched (exactly, then normalised) before an echoed field name is stripped, so a
    label that starts with such a word still matches itself."""
    task = ClassificationTask(ClassificationTask.Options(labels=["Class A", "A"]))
    assert task.parse("Class A", rec(label="A")) == "Class A"
    assert task.parse("class: a", rec(label="A")) == "Class A"
    assert task.parse("Label: a", rec(label="A")) == "A"
    assert normalize_label("Follow-Up!") == "follow up"


# ---------------------------------------------------------------- record checks through the real reader
def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_check_accepts_jsonl_and_csv(tmp_path: Path, task: ClassificationTask) -> None:
    jl = tmp_path / "a.jsonl"
    jl.write_text(json.dumps({"text": "Refill please", "label": "routine"}) + "\n")
    cs = write_csv(tmp_path / "a.csv", [["text", "label"], ["Chest pain, sweating", "urgent"]])
    assert [r.data["label"] for r in read_records(jl, "auto", task, "train")] == ["routine"]
    records = read_records(cs, "auto", task, "train")
    assert records[0].data == {"text": "Chest pain, sweating", "label": "urgent"} and records[0].file == str(cs)


@pytest.mark.parametrize("record, line, message, hint", [
    ({"label": "urgent"}, 2, "field 'text' is missing", "keys found: label"),
    ({"text": 3, "label": "urgent"}, 2, "field 'text' is a int, not a string", "task.text_field"),
    ({"text": "x"}, 2, "field 'label' is missing", "task.label_field"),
    ({"text": "  ", "label": "urgent"}, 2, "field 'text' is empty", "drop this record"),
    ({"text": "x", "label": "emergency"}, 2, "label 'emergency' is not declared",
     "declared: urgent, routine, administrative"),
    ({"text": "x", "label": "Urgent"}, 2, "did you mean 'urgent'?", "match `task.labels` exactly"),
    ({"text": "x", "label": "rutine"}, 2, "did you mean 'routine'?", "add it there"),
])
def test_check_errors_name_file_line_and_fix(tmp_path: Path, task: ClassificationTask, record: dict, line: int,
                                             message: str, hint: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "fine", "label": "routine"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError) as exc:
        read_records(path, "auto", task, "train")
    err = exc.value
    assert err.file == str(path) and err.problems[0].line == line
    assert message in err.problems[0].message and hint in (err.hint or "")


def test_csv_with_other_columns_names_them(tmp_path: Path, task: ClassificationTask) -> None:
    path = write_csv(tmp_path / "t.csv", [["note", "category"], ["Fever", "urgent"]])
    with pytest.raises(DataError, match="field 'text' is missing") as exc:
        read_records(path, "auto", task, "train")
    assert "keys found: note, category" in exc.value.hint and exc.value.file == str(path)


def test_csv_empty_label_cell_is_an_error(tmp_path: Path, task: ClassificationTask) -> None:
    path = write_csv(tmp_path / "t.csv", [["text", "label"], ["Fever", "urgent"], ["Refill", ""]])
    with pytest.raises(DataError, match="field 'label' is empty") as exc:
        read_records(path, "auto", task, "train")
    assert exc.value.problems[0].line == 3


# ---------------------------------------------------------------- metric, by hand
def test_metric_against_hand_computed_numbers() -> None:
    task = ClassificationTask(ClassificationTask.Options(labels=["a", "b", "c", "d"]))
    gold = ["a", "a", "a", "b", "b", "c", "c", "c"]
    pred = ["a", "a", "b", "b", INVALID, "c", "a", "c"]
    m = ClassificationMetric().compute(scoring_run(task), pred, gold)
    assert m["records"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["invalid"] == {"count": 1, "rate": pytest.approx(1 / 8)}
    assert m["confusion"] == {
        "a": {"a": 2, "b": 1, "c": 0, "d": 0, INVALID: 0},
        "b": {"a": 0, "b": 1, "c": 0, "d": 0, INVALID: 1},
        "c": {"a": 1, "b": 0, "c": 2, "d": 0, INVALID: 0},
        "d": {"a": 0, "b": 0, "c": 0, "d": 0, INVALID: 0},
    }
    pc = m["per_class"]
    assert pc["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3, "predicted": 3})
    assert pc["b"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2, "predicted": 2})
    assert pc["c"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3, "predicted": 2})
    assert pc["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0}
    # macro over the classes that occur (d neither in gold nor predicted is left out, as scikit-learn does)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0.8) / 3)
    assert m["macro"] == pytest.approx({"precision": (2 / 3 + 1 / 2 + 1) / 3, "recall": (2 / 3 + 1 / 2 + 2 / 3) / 3,
                                        "f1": (2 / 3 + 1 / 2 + 0.8) / 3})
    json.dumps(m)  # JSON-serialisable


def test_metric_counts_unknown_predictions_as_invalid_and_keeps_undeclared_gold() -> None:
    task = ClassificationTask(ClassificationTask.Options(labels=["a", "b"]))
    m = ClassificationMetric().compute(scoring_run(task), ["a", None, "zzz", "b"], ["a", "b", "b", "x"])
    assert m["invalid"] == {"count": 2, "rate": 0.5}
    assert list(m["confusion"]) == ["a", "b", "x"]
    assert m["confusion"]["b"][INVALID] == 2 and m["confusion"]["x"]["b"] == 1
    assert m["accuracy"] == 0.25
    # an undeclared label is a class only where it is gold: predicted elsewhere, it is still wrong, not invalid
    m = ClassificationMetric().compute(scoring_run(task), ["x", "x"], ["a", "x"])
    assert m["confusion"]["a"]["x"] == 1 and m["invalid"]["count"] == 0 and m["per_class"]["x"]["precision"] == 0.5


def test_metric_on_no_records_and_length_mismatch(task: ClassificationTask) -> None:
    m = ClassificationMetric().compute(scoring_run(task), [], [])
    assert m["accuracy"] == 0.0 and m["records"] == 0 and m["invalid"] == {"count": 0, "rate": 0.0}
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        ClassificationMetric().compute(scoring_run(task), ["a", "b"], ["a"])


def test_perfect_predictions_score_one(task: ClassificationTask) -> None:
    gold = ["urgent", "routine", "administrative", "routine"]
    m = ClassificationMetric().compute(scoring_run(task), list(gold), gold)
    assert m["accuracy"] == m["macro_f1"] == 1.0 and m["invalid"]["rate"] == 0.0


# ---------------------------------------------------------------- shipped data and recipe
def load(split: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text().splitlines()]


def test_shipped_data_regenerates_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(DATA / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for split in ("train", "validation", "test"):
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (DATA / f"{split}.jsonl").read_bytes(), split


def test_shipped_data_sizes_labels_and_no_repeats(task: ClassificationTask) -> None:
    splits = {s: load(s) for s in ("train", "validation", "test")}
    assert {s: len(r) for s, r in splits.items()} == {"train": 600, "validation": 100, "test": 150}
    texts = [r["text"] for records in splits.values() for r in records]
    assert len(set(texts)) == len(texts)
    for records in splits.values():
        counts = Counter(r["label"] for r in records)
        assert set(counts) == set(LABELS) and max(counts.values()) / len(records) <= 0.45
        for i, r in enumerate(records):
            task.check(Record(r, "x", i))


def test_shipped_recipe_validates() -> None:
    done = cli("validate", str(RECIPE))
    assert done.returncode == 0, done.stderr
    assert "classification_tiny: valid" in done.stdout and "600 records" in done.stdout


# ---------------------------------------------------------------- a real quick run
@pytest.mark.slow
def test_quick_run_from_csv_writes_classification_metrics(tmp_path: Path, make_recipe) -> None:
    from loraforge.engine import run_recipe
    from loraforge.recipe import load_recipe

    train, test = load("train")[:24], load("test")[:10]
    write_csv(tmp_path / "train.csv", [["text", "label"], *[[r["text"], r["label"]] for r in train]])
    table = quick_recipe({"type": "classification", "labels": LABELS}, name="quick_classification",
                         evaluation={"batch_size": 16, "max_new_tokens": 6}, export=[],
                         data={"train": str(tmp_path / "train.csv")})
    run = run_recipe(load_recipe(make_recipe(table, data={"test": test})))
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3
    m = metrics["metrics"]["test"]["classification"]
    assert m["records"] == 10 and 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
    assert set(m["per_class"]) == set(LABELS) and sum(c["support"] for c in m["per_class"].values()) == 10
    assert sum(n for row in m["confusion"].values() for n in row.values()) == 10
    assert m["invalid"]["rate"] == pytest.approx(m["invalid"]["count"] / 10)
    generated = [json.loads(line) for line in (run.out_dir / "predictions-test.jsonl").read_text().splitlines()]
    parsed = [run.task.parse(g["generated"], r) for g, r in zip(generated, run.records["test"])]
    assert sum(p == INVALID for p in parsed) == m["invalid"]["count"]
    # decoding is constrained to the labels: each answer is one, or one cut short by max_new_tokens
    assert all(any(label.startswith(g["generated"]) for label in LABELS) for g in generated), generated


def test_constraint_allows_exactly_the_labels(task: ClassificationTask) -> None:
    c = task.constraint(Record({"text": "x", "label": LABELS[0]}, "t.jsonl", 1))
    for label in LABELS:
        assert c.can_end(c.advance(c.start(), label.encode()))
        assert not c.can_end(c.advance(c.start(), label[:-1].encode()))
    for wrong in (LABELS[0] + " ", " " + LABELS[0], LABELS[0].upper(), "invalid"):
        assert c.advance(c.start(), wrong.encode()) is None
