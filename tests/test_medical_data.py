"""The shipped synthetic medical NER data: reproducible, well-formed, and with a test set of unseen entities."""

from __future__ import annotations

import importlib.util
import json
import random
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "medical_ner"
GENERATOR = DATA / "generate.py"
SPLITS = ("train", "validation", "test")
SIZES = {"train": 2200, "validation": 200, "test": 300}
LABELS = {"MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE"}
VOCABULARY_LABELS = {"MEDICATION", "CONDITION", "PROCEDURE"}


def load(split: str) -> list[dict[str, Any]]:
    with open(DATA / f"{split}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def mentions(records: list[dict[str, Any]], labels: set[str]) -> list[str]:
    return [r["text"][e["start"]:e["end"]] for r in records for e in r["entities"] if e["label"] in labels]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict[str, Any]]]:
    return {split: load(split) for split in SPLITS}


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("medical_ner_generate", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_regenerating_reproduces_the_shipped_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True)
    for split in SPLITS:
        name = f"{split}.jsonl"
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), f"{name} differs from a fresh run"


def test_split_sizes(splits: dict[str, list[dict[str, Any]]]) -> None:
    assert {split: len(records) for split, records in splits.items()} == SIZES


@pytest.mark.parametrize("split", SPLITS)
def test_records_are_well_formed(split: str) -> None:
    raw = (DATA / f"{split}.jsonl").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    for number, record in enumerate(load(split), start=1):
        where = f"{split}.jsonl line {number}"
        assert set(record) == {"text", "entities"}, where
        text = record["text"]
        assert isinstance(text, str) and text.strip() == text and text, where
        previous_end = 0
        for ent in record["entities"]:
            assert set(ent) == {"start", "end", "label"}, where
            start, end = ent["start"], ent["end"]
            assert isinstance(start, int) and isinstance(end, int), where
            assert 0 <= start < end <= len(text), where
            assert start >= previous_end, f"{where}: entities unsorted or overlapping"
            previous_end = end
            assert ent["label"] in LABELS, where
            mention = text[start:end]
            assert mention == mention.strip(), f"{where}: whitespace at the edge of {mention!r}"
            assert text.casefold().count(mention.casefold()) == 1, f"{where}: {mention!r} occurs more than once"


@pytest.mark.parametrize("split", SPLITS)
def test_every_label_is_well_represented(splits: dict[str, list[dict[str, Any]]], split: str) -> None:
    counts = Counter(e["label"] for r in splits[split] for e in r["entities"])
    assert all(counts[label] >= 50 for label in LABELS), counts


def test_some_sentences_have_no_entities(splits: dict[str, list[dict[str, Any]]]) -> None:
    empty = sum(not r["entities"] for r in splits["train"]) / len(splits["train"])
    assert 0.02 <= empty <= 0.10


def test_test_set_mostly_measures_unseen_entities(splits: dict[str, list[dict[str, Any]]]) -> None:
    seen = {m.casefold() for m in mentions(splits["train"], VOCABULARY_LABELS)}
    test = mentions(splits["test"], VOCABULARY_LABELS)
    unseen = sum(m.casefold() not in seen for m in test) / len(test)
    assert unseen >= 0.30, f"only {unseen:.1%} of test mentions are unseen in train"


def test_no_sentence_repeats_across_splits(splits: dict[str, list[dict[str, Any]]]) -> None:
    texts = [r["text"] for records in splits.values() for r in records]
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("split", SPLITS)
def test_sentences_are_short(splits: dict[str, list[dict[str, Any]]], split: str) -> None:
    assert statistics.median(len(r["text"]) for r in splits[split]) <= 140
    words = [len(r["text"].split()) for r in splits[split]]
    assert sum(8 <= n <= 25 for n in words) / len(words) >= 0.75


def test_resources_are_large_and_clean(generator: ModuleType) -> None:
    generator.check_resources()
    assert len(generator.TEMPLATES) + len(generator.PLAIN_TEMPLATES) >= 40
    assert len(generator.MEDICATIONS) >= 150
    assert len(generator.CONDITIONS) >= 150
    assert len(generator.PROCEDURES) >= 100


@pytest.mark.parametrize("split", SPLITS)
def test_no_vocabulary_term_is_left_unlabelled(generator: ModuleType, splits: dict[str, list[dict[str, Any]]],
                                                split: str) -> None:
    for record in splits[split]:
        spans = [(e["start"], e["end"]) for e in record["entities"]]
        for match in generator._ANY_TERM.finditer(record["text"]):
            assert any(s <= match.start() and match.end() <= e for s, e in spans), (record["text"], match.group(0))


def test_train_uses_only_the_train_pools(generator: ModuleType, splits: dict[str, list[dict[str, Any]]]) -> None:
    _, heldout_pools = generator.split_vocabularies(random.Random(generator.DEFAULT_SEED))
    heldout = {t.casefold() for kind in generator.VOCABULARIES for t in heldout_pools[kind]}
    leaked = {m for m in mentions(splits["train"], VOCABULARY_LABELS) if m.casefold() in heldout}
    assert not leaked
