"""The style task and its metrics: options (the style profile), record shapes, prompt/target format, hand-computed
style_match and perplexity numbers, the shipped data set and recipe, and one real quick run."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, cli

from loraforge.builtin.tasks.style import (
    DEFAULT_INSTRUCTION,
    PerplexityMetric,
    StyleMatchMetric,
    StyleTask,
    register_metrics,
    register_tasks,
)
from loraforge.components import Record
from loraforge.data import read_records
from loraforge.errors import DataError
from loraforge.recipe import load_recipe
from loraforge.schema import parse
from loraforge.testing import quick_recipe, scoring_run

DATA = ROOT / "data" / "style"
RECIPE = ROOT / "recipes" / "style_tiny.toml"


def make_task(**options: object) -> StyleTask:
    opts, problems = parse(StyleTask.Options, dict(options), "task")
    assert not problems, problems
    return StyleTask(opts)


def pair(prompt: str = "BP 150/95.", response: str = "In plain words: your blood pressure is high.",
         line: int = 1) -> Record:
    return Record({"prompt": prompt, "response": response}, "data.jsonl", line)


# ---------------------------------------------------------------- options and registration
def test_registers_task_and_both_metrics() -> None:
    found: dict[str, object] = {}
    register_tasks(register=found.__setitem__)
    register_metrics(register=found.__setitem__)
    assert found == {"style": StyleTask, "perplexity": PerplexityMetric, "style_match": StyleMatchMetric}
    assert StyleTask.default_metrics == ("perplexity", "style_match")
    assert PerplexityMetric.needs_model and not StyleMatchMetric.needs_model


def test_options_defaults() -> None:
    task = make_task()
    o = task.options
    assert (o.instruction, o.prompt_field, o.response_field, o.text_field) == (DEFAULT_INSTRUCTION, "prompt",
                                                                                "response", "text")
    assert o.style_keywords == [] and o.style_patterns == []


def test_bad_regex_is_reported_with_its_key() -> None:
    _, problems = parse(StyleTask.Options, {"style_patterns": ["ok", "(unclosed"]}, "task")
    assert len(problems) == 1 and problems[0].key == "task.style_patterns"
    assert "item 1 '(unclosed' is not a valid regular expression" in problems[0].message


@pytest.mark.parametrize("options, key, message", [
    ({"style_patterns": ["x*"]}, "task.style_patterns", "matches the empty string"),
    ({"style_keywords": ["fine", " "]}, "task.style_keywords", "item 1 is empty"),
    ({"text_field": "response"}, "task.text_field", "same key as response_field"),
])
def test_option_checks(options: dict, key: str, message: str) -> None:
    _, problems = parse(StyleTask.Options, options, "task")
    assert [p.key for p in problems] == [key] and message in problems[0].message


# ---------------------------------------------------------------- format, reference, parse
def test_pair_format_and_round_trip() -> None:
    task = make_task()
    r = pair("HbA1c 8.1%.", "Simply put: your sugar is high.")
    ex = task.format(r)
    assert ex.prompt == f"{DEFAULT_INSTRUCTION}\nInput: HbA1c 8.1%.\nOutput:\n"
    assert ex.target == task.reference(r) == "Simply put: your sugar is high."
    assert task.parse(ex.target, r) == task.reference(r)


def test_plain_text_record_targets_the_whole_text() -> None:
    task = make_task(instruction="Write like us.")
    r = Record({"text": "Don't worry, we are here."}, "d.jsonl", 1)
    task.check(r)
    ex = task.format(r)
    assert ex.prompt == "Write like us.\nOutput:\n" and ex.target == task.reference(r) == "Don't worry, we are here."


def test_empty_prompt_and_empty_instruction() -> None:
    task = make_task(instruction="")
    r = pair(prompt="", response="Hello there.")
    task.check(r)
    assert task.format(r).prompt == "Output:\n"
    assert task.format(pair(prompt="x")).prompt == "Input: x\nOutput:\n"


def test_custom_field_names() -> None:
    task = make_task(prompt_field="src", response_field="tgt", text_field="body")
    r = Record({"src": "a", "tgt": "b"}, "f", 1)
    task.check(r)
    assert task.format(r).target == "b"
    plain = Record({"body": "c"}, "f", 2)
    task.check(plain)
    assert task.format(plain).target == "c"


@pytest.mark.parametrize("generated, expected", [
    ("  In plain words: hi.\n", "In plain words: hi."),
    ("Simply put: ok.</s> junk", "Simply put: ok."),
    ("text<|end_of_text|>more", "text"),
    ("", ""),
    (None, ""),
    (3, ""),
])
def test_parse_strips_and_never_raises(generated: object, expected: str) -> None:
    assert make_task().parse(generated, pair()) == expected  # type: ignore[arg-type]


# ---------------------------------------------------------------- record checks through the real reader
def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_reads_pairs_plain_texts_and_csv(tmp_path: Path) -> None:
    task = make_task()
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "a", "response": "b"}, {"text": "c"}])
    assert [task.format(r).target for r in read_records(path, "auto", task, "train")] == ["b", "c"]
    path = write_csv(tmp_path / "b.csv", [["prompt", "response"], ["BP 150/95.", "Simply put: high."]])
    assert read_records(path, "auto", task, "train")[0].data["response"] == "Simply put: high."
    path = write_csv(tmp_path / "c.csv", [["prompt", "response", "text"], ["", "", "plain one"], ["p", "r", ""]])
    assert [task.format(r).target for r in read_records(path, "auto", task, "train")] == ["plain one", "r"]


@pytest.mark.parametrize("record, message, hint", [
    ({"response": "b"}, "field 'prompt' is missing", '{"prompt": ..., "response": ...}'),
    ({"prompt": "a"}, "field 'response' is missing", "keys found: prompt"),
    ({"prompt": "a", "response": "  "}, "field 'response' is empty", "drop this record"),
    ({"prompt": 5, "response": "b"}, "field 'prompt' is a int, not a string", "task.*_field"),
    ({"text": ""}, "field 'text' is empty", "drop this record"),
    ({"text": ["a"]}, "field 'text' is a list, not a string", '{"text": ...}'),
    ({"body": "x"}, "record has no 'prompt', 'response' or 'text'", "keys found: body"),
])
def test_check_errors_name_file_line_and_fix(tmp_path: Path, record: dict, message: str, hint: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "fine"}, {"prompt": "a", "response": "b"}, record])
    with pytest.raises(DataError) as exc:
        read_records(path, "auto", make_task(), "train")
    err = exc.value
    assert err.file == str(path) and err.problems[0].line == 3
    assert message in err.problems[0].message and hint in (err.hint or "")


# ---------------------------------------------------------------- style_match, by hand
PROFILE = {"style_keywords": ["don't worry", "feel free to ask"], "style_patterns": ["^(In plain words|Simply put):"]}


def test_style_match_fractions_by_hand() -> None:
    task = make_task(**PROFILE)
    predictions = [
        "In plain words: all is well.",       # pattern
        "DON'T   WORRY, it is fine.",         # keyword, any case and spacing
        "in plain words: lower case",         # pattern is case-sensitive: no
        "Nothing here.",                      # no
    ]
    references = [
        "In plain words: all is well, you are fine.",  # 9 words (prediction: 6)
        "Simply put: it is fine.",                     # 5 words (prediction: 5)
        "Feel free to ask us.",                        # 5 words (prediction: 5)
        "Plain clinical note.",                        # 3 words, no marker (prediction: 2)
    ]
    m = StyleMatchMetric().compute(scoring_run(task), predictions, references)
    assert m["generated_match"] == 0.5 and m["reference_match"] == 0.75
    assert m["length_ratio"] == pytest.approx((6 / 9 + 5 / 5 + 5 / 5 + 2 / 3) / 4)
    assert m["records"] == 4 and m["profile"] == "2 keywords, 1 patterns"
    json.dumps(m)


def test_keywords_match_whole_words_only() -> None:
    task = make_task(style_keywords=["ok", "well-being", "!"])
    m = StyleMatchMetric().compute(scoring_run(task), ["token", "broken", "your well-being", "wow!", "OK then"],
                                   ["a"] * 5)
    assert m["generated_match"] == pytest.approx(3 / 5) and m["reference_match"] == 0.0


def test_without_a_profile_only_the_length_ratio_is_reported() -> None:
    m = StyleMatchMetric().compute(scoring_run(make_task()), ["one two", "", "x"],
                                   ["one two three four", "a b", ""])
    assert m == {"records": 3, "length_ratio": pytest.approx((2 / 4 + 0 / 2) / 2), "profile": "none"}
    assert "generated_match" not in m
    assert StyleMatchMetric().compute(scoring_run(make_task()), [], []) == {"records": 0, "length_ratio": None,
                                                                            "profile": "none"}
    assert StyleMatchMetric().compute(scoring_run(make_task(**PROFILE)), [], [])["generated_match"] == 0.0


# ---------------------------------------------------------------- perplexity, with a stand-in context
class FakeContext:
    def __init__(self, adapted: tuple[float, int], base: tuple[float, int]) -> None:
        self.values = {True: adapted, False: base}
        self.calls: list[bool] = []

    def target_nll(self, adapted: bool = True) -> tuple[float, int]:
        self.calls.append(adapted)
        return self.values[adapted]


def scored_with(context: FakeContext | None) -> Any:
    run = scoring_run(make_task())
    run.evaluation = context  # the model's likelihoods, by hand
    return run


def test_perplexity_from_summed_nll_by_hand() -> None:
    ctx = FakeContext(adapted=(20.0, 10), base=(60.0, 10))
    m = PerplexityMetric().compute(scored_with(ctx), ["x"], ["y"])
    assert sorted(ctx.calls) == [False, True]
    assert m["adapted"] == pytest.approx(math.exp(2.0)) and m["base"] == pytest.approx(math.exp(6.0))
    assert m["ratio"] == pytest.approx(math.exp(-4.0)) and m["tokens"] == 10
    assert (m["adapted_nll"], m["base_nll"]) == (2.0, 6.0)


def test_perplexity_edge_cases() -> None:
    huge = PerplexityMetric().compute(scored_with(FakeContext((10.0, 1), (5000.0, 1))), [], [])
    assert huge["base"] is None and huge["ratio"] == 0.0 and huge["adapted"] == pytest.approx(math.exp(10))
    empty = PerplexityMetric().compute(scored_with(FakeContext((0.0, 0), (0.0, 0))), [], [])
    assert empty == {"adapted": None, "base": None, "ratio": None, "tokens": 0}
    with pytest.raises(ValueError, match="needs the model"):
        PerplexityMetric().compute(scored_with(None), [], [])


# ---------------------------------------------------------------- shipped data and recipe
def load(split: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text().splitlines()]


def recipe_profile() -> dict[str, list[str]]:
    """The style profile the shipped recipe declares for the shipped data."""
    raw = load_recipe(RECIPE).task.raw
    return {k: raw[k] for k in ("style_keywords", "style_patterns")}


def test_shipped_data_regenerates_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(DATA / "generate.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for split in ("train", "validation", "test"):
        assert (tmp_path / f"{split}.jsonl").read_bytes() == (DATA / f"{split}.jsonl").read_bytes(), split


def test_shipped_data_sizes_and_the_recipe_profile_separates_prompts_from_responses() -> None:
    splits = {s: load(s) for s in ("train", "validation", "test")}
    assert {s: len(r) for s, r in splits.items()} == {"train": 400, "validation": 50, "test": 80}
    prompts = [r["prompt"] for records in splits.values() for r in records]
    assert len(set(prompts)) == len(prompts)
    task = make_task(**recipe_profile())
    for records in splits.values():
        for i, r in enumerate(records):
            task.check(Record(r, "x", i))
        responses = [r["response"] for r in records]
        m = StyleMatchMetric().compute(scoring_run(task), [r["prompt"] for r in records], responses)
        assert m["reference_match"] == 1.0 and m["generated_match"] == 0.0
        assert max(len(t.split()) for t in responses) <= 60


def test_shipped_recipe_validates() -> None:
    done = cli("validate", str(RECIPE))
    assert done.returncode == 0, done.stderr
    assert "style_tiny: valid" in done.stdout and "400 records" in done.stdout
    assert re.search(r"perplexity,\s*style_match", done.stdout)


# ---------------------------------------------------------------- a real quick run
@pytest.mark.slow
def test_quick_run_writes_perplexity_and_style_match(make_recipe) -> None:
    from loraforge.engine import run_recipe

    train = load("train")[:20] + [{"text": "In plain words: we are glad you came. Feel free to ask us anything."}] * 4
    table = quick_recipe({"type": "style", **recipe_profile()}, name="quick_style",
                         adapter={"type": "lora", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
                                  "modules_to_save": ["lm_head"]},
                         evaluation={"batch_size": 16, "max_new_tokens": 12}, export=[])
    run = run_recipe(load_recipe(make_recipe(table, data={"train": train, "test": load("test")[:6]})))
    metrics = json.loads((run.out_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 3
    ppl = metrics["metrics"]["test"]["perplexity"]
    for key in ("adapted", "base"):
        assert ppl[key] is not None and math.isfinite(ppl[key]) and ppl[key] > 1.0
    assert ppl["ratio"] == pytest.approx(ppl["adapted"] / ppl["base"], rel=1e-6) and ppl["tokens"] > 0
    style = metrics["metrics"]["test"]["style_match"]
    assert style["records"] == 6 and style["reference_match"] == 1.0
    assert 0.0 <= style["generated_match"] <= 1.0 and style["length_ratio"] >= 0.0
