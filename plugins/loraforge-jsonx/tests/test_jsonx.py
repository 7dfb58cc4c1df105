"""The task, the metric, the [jsonx] table and the shipped data, in-process (no model is loaded)."""

from __future__ import annotations

import functools
import json
import math
import time

import pytest

from loraforge.components import Record
from loraforge.engine import assemble, build
from loraforge.errors import DataError, RecipeError
from loraforge.plugins import Registry, get_plugin_manager
from loraforge.recipe import Recipe, load_recipe
from loraforge.schema import parse as parse_options
from loraforge.testing import TINY_MODEL, scoring_run
from loraforge_jsonx import INVALID, JsonxMetric, JsonxSection, JsonxTask, extract_object, generate, target_json
from loraforge_jsonx.plugin import recipe_path

DATA = generate.DATA_DIR
FIELDS = ["age", "sex", "visit_type", "follow_up_days"]


def records(split: str) -> list[Record]:
    lines = (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [Record(json.loads(line), f"{split}.jsonl", i) for i, line in enumerate(lines, start=1)]


@functools.cache
def registry() -> Registry:
    return Registry(get_plugin_manager())


def load(path, overrides=()) -> Recipe:
    """A recipe loaded and typed the way the engine does it, so `recipe.sections["jsonx"]` is a JsonxSection."""
    recipe = load_recipe(path, list(overrides))
    recipe.bind(registry())
    return recipe


def configured_task(**jsonx) -> JsonxTask:
    """The task of a run of the shipped recipe, its `[jsonx]` keys overridden like `--set jsonx.KEY=VALUE`."""
    overrides = [f"jsonx.{k}={json.dumps(v)}" for k, v in jsonx.items()]
    return assemble(load_recipe(recipe_path("jsonx_tiny"), overrides)).task


def rec(fields: dict, text: str = "58-year-old woman seen in clinic. Review in 2 weeks.", line: int = 1) -> Record:
    return Record({"text": text, "fields": fields}, "mem.jsonl", line)


def score(predictions: list, references: list, task: JsonxTask) -> dict:
    return JsonxMetric().compute(scoring_run(task), predictions, references)


GOLD = {"age": 58, "follow_up_days": 14, "sex": "female", "visit_type": "outpatient"}


# ---------------------------------------------------------------------------------------------- format / parse


def test_format_writes_the_declared_fields_and_a_compact_sorted_object() -> None:
    example = configured_task().format(rec(GOLD))
    assert example.prompt.splitlines()[1:] == ["Fields: age, follow_up_days, sex, visit_type",
                                               "Text: 58-year-old woman seen in clinic. Review in 2 weeks.",
                                               "JSON:"]
    assert example.target == '{"age":58,"follow_up_days":14,"sex":"female","visit_type":"outpatient"}'
    assert example.target == target_json(GOLD) == json.dumps(GOLD, sort_keys=True, separators=(",", ":"))


def test_configure_takes_the_jsonx_table_and_a_recipe_without_one_is_an_error(make_recipe) -> None:
    task = configured_task(fields=["sex", "age"], strict_types=True)
    assert isinstance(task.schema, JsonxSection)
    assert (task.schema.fields, task.schema.strict_types) == (["sex", "age"], True)
    assert task.format(rec({"age": 3, "sex": "male"})).prompt.splitlines()[1] == "Fields: age, sex"

    bare = make_recipe({"model": TINY_MODEL, "task": {"type": "jsonx"}},
                       data={"train": [{"text": "M 40, seen in clinic.", "fields": {"age": 40}}]})
    with pytest.raises(RecipeError) as exc:
        build(load_recipe(bare))
    rendered = exc.value.render()
    assert "jsonx: the jsonx task needs a [jsonx] table declaring its fields" in rendered
    assert str(bare) in rendered and 'fields = ["age", "sex"]' in rendered

    with pytest.raises(RuntimeError, match=r"configure\(run\) was not called"):
        JsonxTask().check(rec(GOLD))


def test_every_shipped_target_parses_back_to_its_reference() -> None:
    task = configured_task()
    for record in records("train") + records("test"):
        target = task.format(record).target
        assert task.parse(target, record) == task.reference(record)
        chatty = f"Sure! Here is the object:\n```json\n{target}\n```\nLet me know if you need more."
        assert task.parse(chatty, record) == task.reference(record)


@pytest.mark.parametrize("generated, expected", [
    ("", INVALID),
    ("no json here", INVALID),
    ("{", INVALID),
    ('{"age": 58, "sex": "female"', INVALID),  # truncated
    ("{age: 58}", INVALID),
    ("[1, 2, 3]", INVALID),
    ('"a string"', INVALID),
    ("{}", {}),
    ('{bad} then {"age": 3}', {"age": 3}),  # a broken group is skipped as a whole
    ('{"a": {"b": 1}, oops}', INVALID),  # ...so an object nested in it is not taken for the answer
    ('{"note": "a } and a { inside", "age": 3}', {"note": "a } and a { inside", "age": 3}),
    ('{"quote": "say \\"}\\" now"}', {"quote": 'say "}" now'}),
    ('{"age": 58} {"age": 99}', {"age": 58}),  # the first object wins
    (None, INVALID),
    (42, INVALID),
])
def test_parse_tolerates_layout_and_never_raises(generated, expected) -> None:
    assert JsonxTask().parse(generated, rec(GOLD)) == extract_object(generated) == expected


def test_parse_is_fast_on_runaway_generations() -> None:
    task = JsonxTask()
    began = time.perf_counter()
    for garbage in ("{" * 200_000, "}" * 200_000, '{"a":' + "[" * 50_000 + "]" * 50_000 + "}",
                    "x" * 1_000_000, '{"n": ' + "9" * 10_000 + "}"):
        assert task.parse(garbage, rec(GOLD)) == INVALID
    assert time.perf_counter() - began < 5


# ---------------------------------------------------------------------------------------------- metric


def test_metric_numbers_by_hand() -> None:
    refs = [
        {"age": 58, "follow_up_days": 14, "sex": "female", "visit_type": "outpatient"},
        {"age": 7, "follow_up_days": None, "sex": "male", "visit_type": "emergency"},
        {"age": 40, "follow_up_days": 30, "sex": "male", "visit_type": "telehealth"},
        {"age": 81, "follow_up_days": 2, "sex": "female", "visit_type": "inpatient"},
    ]
    preds = [
        dict(refs[0]),  # exact
        {"age": 7, "sex": "male", "visit_type": "emergency"},  # follow_up_days missing: null when lenient
        {"age": 41, "follow_up_days": 30, "sex": "male", "visit_type": "telehealth"},  # age wrong
        INVALID,  # wrong on every field
    ]
    result = score(preds, refs, configured_task())
    assert result["exact_match"] == pytest.approx(2 / 4)
    assert result["valid_json"] == pytest.approx(3 / 4)
    assert result["records"] == 4
    assert result["per_class"] == {
        "age": {"accuracy": pytest.approx(2 / 4), "support": 4},
        "sex": {"accuracy": pytest.approx(3 / 4), "support": 4},
        "visit_type": {"accuracy": pytest.approx(3 / 4), "support": 4},
        "follow_up_days": {"accuracy": pytest.approx(3 / 4), "support": 4},
    }
    assert result["field_accuracy"] == pytest.approx(11 / 16)
    assert list(result["per_class"]) == FIELDS  # declared order


def test_strict_types_and_lenient_values() -> None:
    refs = [{"age": 34, "sex": "female", "follow_up_days": None, "visit_type": "outpatient"}]
    loose = [{"age": "34", "sex": " Female ", "visit_type": "OUTPATIENT"}]
    lenient = score(loose, refs, configured_task())
    assert lenient["exact_match"] == 1.0
    strict = score(loose, refs, configured_task(strict_types=True))
    assert strict["exact_match"] == 0.0 and strict["field_accuracy"] == 0.0
    typed = [{"age": 34.0, "sex": "female", "follow_up_days": None, "visit_type": "outpatient"}]
    assert score(typed, refs, configured_task(strict_types=True))["exact_match"] == 1.0
    boolean = [{**typed[0], "age": True}]
    assert score(boolean, [{**refs[0], "age": 1}], configured_task(strict_types=True))[
        "per_class"]["age"]["accuracy"] == 0.0


def test_extra_keys_break_exact_match_unless_allowed() -> None:
    refs = [dict(GOLD)]
    preds = [{**GOLD, "diagnosis": "asthma"}]
    strict = score(preds, refs, configured_task())
    assert strict["exact_match"] == 0.0 and strict["field_accuracy"] == 1.0
    assert score(preds, refs, configured_task(allow_extra_fields=True))["exact_match"] == 1.0


def test_metric_with_an_unconfigured_task_uses_the_reference_keys() -> None:
    result = score([{"b": 1, "a": 2}], [{"a": 2, "b": 2}], JsonxTask())
    assert list(result["per_class"]) == ["a", "b"] and result["exact_match"] == 0.0
    assert score([], [], JsonxTask())["exact_match"] == 0.0
    with pytest.raises(ValueError, match="1 predictions for 2 references"):
        score([{}], [{}, {}], JsonxTask())


# ---------------------------------------------------------------------------------------------- schema and data


def test_jsonx_section_collects_every_problem() -> None:
    _, problems = parse_options(JsonxSection, {"feilds": ["a"], "strict_types": "yes"}, "jsonx")
    rendered = sorted(p.render() for p in problems)
    assert rendered == ["jsonx.feilds: unknown key; did you mean 'fields'?", "jsonx.fields: is required",
                        "jsonx.strict_types: must be true or false, got string 'yes'"]
    _, problems = parse_options(JsonxSection, {"strict_types": True}, "jsonx")
    assert [p.render() for p in problems] == ["jsonx.fields: is required"]
    _, problems = parse_options(JsonxSection, {"fields": ["age", "age", " sex"]}, "jsonx")
    assert [p.render() for p in problems] == ["jsonx.fields: field 'age' is listed twice",
                                              "jsonx.fields: field ' sex' must be non-empty, without surrounding "
                                              "spaces"]


@pytest.mark.parametrize("data, message", [
    ({"fields": GOLD}, "field 'text' is missing"),
    ({"text": "  ", "fields": GOLD}, "field 'text' is empty"),
    ({"text": "x", "fields": "age=3"}, "field 'fields' is a str, not an object"),
    ({"text": "x", "fields": {**GOLD, "age": math.nan}}, "field 'age' has the value nan, which JSON cannot write"),
])
def test_check_names_file_line_and_problem(data, message) -> None:
    with pytest.raises(DataError) as exc:
        configured_task().check(Record(data, "notes.jsonl", 7))
    assert message in exc.value.render() and "notes.jsonl: line 7" in exc.value.render()


def test_every_record_must_have_exactly_the_declared_fields() -> None:
    task = configured_task()
    task.check(rec(GOLD, line=1))
    partial = {k: v for k, v in GOLD.items() if k != "follow_up_days"}
    with pytest.raises(DataError, match=r"line 2: 'fields' does not match `\[jsonx\] fields`: lacks 'follow_up_days'"):
        task.check(rec(partial, line=2))

    with pytest.raises(DataError) as exc:
        configured_task(fields=["age", "sex", "visit_type", "follow_up"]).check(rec(GOLD))
    assert ("mem.jsonl: line 1: 'fields' does not match `[jsonx] fields`: lacks 'follow_up'; has 'follow_up_days', "
            "not there\n'follow_up_days' looks like 'follow_up': rename one of them;") in exc.value.render()
    with pytest.raises(DataError, match=r"does not match `\[jsonx\] fields`: has 'follow_up_days', not there\n"):
        configured_task(fields=["age", "sex", "visit_type"]).check(rec(GOLD))


def test_shipped_data_is_reproducible_and_well_formed() -> None:
    for split, generated in generate.generate().items():
        assert (DATA / f"{split}.jsonl").read_text(encoding="utf-8") == generate.render(generated), \
            f"{split}.jsonl drifted from generate.py: run python -m loraforge_jsonx.generate"
    task = configured_task()
    train, test = records("train"), records("test")
    assert (len(train), len(test)) == (300, 60)
    for record in train + test:
        task.check(record)
    assert not {r.data["text"] for r in train} & {r.data["text"] for r in test}
    assert {r.data["fields"]["visit_type"] for r in test} == {"emergency", "outpatient", "telehealth", "inpatient"}
    assert any(r.data["fields"]["follow_up_days"] is None for r in test)


def test_the_entry_point_registers_every_component_with_its_package() -> None:
    registry = Registry(get_plugin_manager())
    found = {(reg.kind, reg.name): reg for reg in registry.all() if reg.plugin == "jsonx"}
    assert set(found) == {("task", "jsonx"), ("metric", "jsonx"), ("recipe section", "jsonx"),
                          ("recipe", "jsonx_tiny")}
    assert {reg.package for reg in found.values()} == {"loraforge-jsonx 0.3.0"}
    assert found[("recipe", "jsonx_tiny")].factory == recipe_path("jsonx_tiny")
    assert recipe_path("jsonx_tiny").is_file()
