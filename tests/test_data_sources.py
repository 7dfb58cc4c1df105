"""Data sources beyond one JSONL file: brat folders through the engine, splits carved by document, long records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loraforge import engine
from loraforge.errors import DataError
from loraforge.recipe import load_recipe
from loraforge.run import Run
from loraforge.testing import QUICK_TRAINING, quick_recipe

from conftest import LABELS, ner_recipe, ner_records

MAP = {"Drug": "MEDICATION", "Amount": "DOSAGE", "Disease": "CONDITION", "Sign": "CONDITION"}


def brat_corpus(folder: Path, documents: int = 10) -> Path:
    """`documents` small case reports: two passages each, a mapped, an unmapped and a discontinuous span."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(documents):
        lines = [f"Patient {d} took aspirin 81 mg for angina.", f"Fever and left arm pain on day {d}."]
        text = "\n".join(lines) + "\n"
        second = len(lines[0]) + 1
        aspirin = lines[0].index("aspirin")
        spans = [("Drug", aspirin, aspirin + 7), ("Amount", aspirin + 8, aspirin + 13),
                 ("Disease", lines[0].index("angina"), lines[0].index("angina") + 6),
                 ("Sign", second, second + 5), ("Date", second + lines[1].index("day"), second + len(lines[1]) - 1)]
        ann = [f"T{i}\t{label} {s} {e}\t{text[s:e]}" for i, (label, s, e) in enumerate(spans, 1)]
        arm = second + lines[1].index("left")
        pain = second + lines[1].index("pain")
        ann.append(f"T9\tSign {arm} {arm + 4};{pain} {pain + 4}\tleft pain")
        ann.append("R1\tCause Arg1:T4 Arg2:T3")
        (folder / f"doc{d:02d}.txt").write_text(text)
        (folder / f"doc{d:02d}.ann").write_text("\n".join(ann) + "\n")
    return folder


def built(make_recipe, task: dict | None = None, **sections) -> Run:
    table = quick_recipe(task or {"type": "ner", "labels": LABELS}, name="brat",
                         **{"evaluation": {"split": "none"}, **sections})
    return engine.build(load_recipe(make_recipe(table)))


def test_a_brat_folder_trains_as_passages_with_the_label_map_and_a_report(tmp_path: Path, make_recipe) -> None:
    brat_corpus(tmp_path / "corpus", 4)
    run = built(make_recipe, data={"train": "corpus"}, task={"type": "ner", "labels": LABELS, "label_map": MAP})
    records = run.records["train"]
    assert len(records) == 8 and {Path(r.file).name for r in records} == {f"doc0{d}.txt" for d in range(4)}
    first = run.task.reference(records[0])
    assert [(first.text[s:e], label) for s, e, label in first] == [
        ("aspirin", "MEDICATION"), ("81 mg", "DOSAGE"), ("angina", "CONDITION")]
    report = run.summary["data"]["train"]
    assert report.startswith("4 documents, 8 passages, 16 entities kept; dropped: 4 unmapped (Date 4)")
    assert report.endswith("4 discontinuous (dropped)")
    assert any(w.startswith("train data: 4 documents") for w in run.warnings)


def test_test_and_validation_are_carved_by_document_with_a_seed(tmp_path: Path, make_recipe) -> None:
    brat_corpus(tmp_path / "corpus", 10)
    data = {"train": "corpus", "test_split": 0.2, "validation_split": 0.1}
    task = {"type": "ner", "labels": LABELS, "label_map": MAP}
    split_docs = {}
    for seed in (0, 0, 1):
        run = built(make_recipe, data={**data, "split_seed": seed}, task=task)
        docs = {split: {Path(r.file).stem for r in records} for split, records in run.records.items()}
        assert (len(docs["train"]), len(docs["test"]), len(docs["validation"])) == (7, 2, 1)
        assert not (docs["train"] & docs["test"] or docs["train"] & docs["validation"]
                    or docs["test"] & docs["validation"])
        assert all(len(run.records[s]) == 2 * len(docs[s]) for s in docs)  # both passages of each document
        split_docs.setdefault(seed, []).append(docs)
    assert split_docs[0][0] == split_docs[0][1] and split_docs[0][0] != split_docs[1][0]


def test_records_without_documents_are_carved_from_the_end(make_recipe) -> None:
    records = ner_records(8)
    run = engine.build(load_recipe(make_recipe(ner_recipe(data={"test_split": 0.25}), data={"train": records})))
    assert [r.data for r in run.records["test"]] == records[6:]
    assert [r.data for r in run.records["train"]] == records[:6]


def test_carving_by_document_keeps_at_least_one_to_train_on(tmp_path: Path, make_recipe) -> None:
    brat_corpus(tmp_path / "corpus", 2)
    with pytest.raises(DataError, match="test_split 0.8 of 2 documents leaves none to train on"):
        built(make_recipe, data={"train": "corpus", "test_split": 0.8}, task={"type": "ner", "labels": LABELS,
                                                                             "label_map": MAP})


@pytest.mark.parametrize("skip", [False, True])
def test_a_record_longer_than_max_length_stops_the_run_unless_skipped(tmp_path: Path, make_recipe,
                                                                     skip: bool) -> None:
    records = ner_records(6)
    records[3] = {**records[3], "text": records[3]["text"] + " and more words" * 40}
    training = {**QUICK_TRAINING, "max_length": 160, **({"long_records": "skip"} if skip else {})}
    table = ner_recipe(training=training, evaluation={"split": "none"})
    run = engine.build(load_recipe(make_recipe(table, data={"train": records, "validation": records[:3]})))
    engine.load_model(run)
    if not skip:
        with pytest.raises(DataError, match=r"train.jsonl: line 4.*longer than training.max_length \(160\)"):
            engine.tokenize(run)
        return
    datasets = engine.tokenize(run)
    assert len(datasets["train"]) == 5 and len(datasets["validation"]) == 3
    assert run.summary["skipped_long"] == {"train": 1}
    assert "1 of 6 train records are longer than training.max_length (160)" in " ".join(run.warnings)
