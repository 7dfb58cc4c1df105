"""The installed plugin through the real `loraforge` command, in a subprocess, as a user would meet it.

Fixtures (`loraforge_cache`, `make_recipe`) and the tiny-model settings come from `loraforge.testing`, which pytest
loads through loraforge's `pytest11` entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loraforge.testing import QUICK_TRAINING, TINY_MODEL
from loraforge_jsonx.plugin import recipe_path

SHIPPED = "loraforge_jsonx:recipes/jsonx_tiny.toml"


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loraforge", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def user_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return " ".join(done.stderr.split())  # rich wraps long lines


def test_shipped_recipe_validates_by_package_reference() -> None:
    done = cli("validate", SHIPPED)
    assert done.returncode == 0, done.stderr
    assert "300 records" in done.stdout and "60 records" in done.stdout and "jsonx" in done.stdout
    listed = cli("recipes")
    assert "jsonx_tiny" in listed.stdout and "loraforge-jsonx 0.3.0" in listed.stdout


def test_a_typo_in_jsonx_is_reported_like_one_in_a_builtin_section() -> None:
    ours = user_error(cli("validate", SHIPPED, "--set", "jsonx.strict_type=true"))
    assert "jsonx.strict_type: unknown key; did you mean 'strict_types'?" in ours
    builtin = user_error(cli("validate", SHIPPED, "--set", "training.epoch=1"))
    assert "training.epoch: unknown key; did you mean 'epochs'?" in builtin
    wrong_type = user_error(cli("validate", SHIPPED, "--set", "jsonx.fields=3"))
    assert "jsonx.fields: must be a list of string, got integer 3" in wrong_type


def test_jsonx_without_fields_is_missing_a_required_key(make_recipe) -> None:
    recipe = make_recipe({"extends": str(recipe_path("jsonx_tiny")), "jsonx": {"strict_types": True}})
    ok = cli("validate", str(recipe))
    assert ok.returncode == 0, ok.stderr  # merged over the shipped table: fields come from there

    bare = make_recipe({"model": TINY_MODEL, "task": {"type": "jsonx"}, "jsonx": {"strict_types": True,
                                                                                     "allow_extras": True}},
                       name="bare.toml", data={"train": [{"text": "M 40, seen in clinic.", "fields": {"age": 40}}]})
    text = user_error(cli("validate", str(bare)))
    assert "2 problems" in text
    assert "jsonx.allow_extras: unknown key; did you mean 'allow_extra_fields'?" in text
    assert "jsonx.fields: is required" in text


def test_without_the_plugin_the_table_and_the_task_are_unknown() -> None:
    text = user_error(cli("validate", str(recipe_path("jsonx_tiny")), env={"LORAFORGE_PLUGINS": ""}))
    assert "task 'jsonx' is provided by no installed plugin" in text
    assert "jsonx: unknown section" in text


def test_validate_checks_every_record_against_the_jsonx_fields(make_recipe) -> None:
    good = {"text": "M 40, seen in clinic.", "fields": {"age": 40, "sex": "male"}}
    typo = {"text": "F 7, phone consultation.", "fields": {"age": 7, "sexx": "female"}}
    recipe = make_recipe({"model": TINY_MODEL, "task": {"type": "jsonx"}, "jsonx": {"fields": ["age", "sex"]}},
                         data={"train": [good, good, typo]})
    text = user_error(cli("validate", str(recipe)))
    assert "train.jsonl: line 3: 'fields' does not match `[jsonx] fields`: lacks 'sex'; has 'sexx', not there" in text
    assert "'sexx' looks like 'sex': rename one of them" in text

    no_table = make_recipe({"model": TINY_MODEL, "task": {"type": "jsonx"}}, name="no_table.toml",
                           data={"train": [good]})
    text = user_error(cli("validate", str(no_table)))
    assert "no_table.toml: jsonx: the jsonx task needs a [jsonx] table declaring its fields" in text


def test_a_schema_that_does_not_match_the_data_stops_the_run_before_any_model_loads(make_recipe, tmp_path) -> None:
    recipe = make_recipe({"extends": str(recipe_path("jsonx_tiny")),
                          "jsonx": {"fields": ["age", "sex", "visit_type", "follow_up"]}})
    text = user_error(cli("run", str(recipe), "--quiet"))
    assert "train.jsonl: line 1: 'fields' does not match `[jsonx] fields`: lacks 'follow_up'; has " \
           "'follow_up_days', not there" in text
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_quick_run_on_the_tiny_model_scores_with_the_jsonx_metric(make_recipe, tmp_path: Path) -> None:
    """The shipped recipe, extended by package path, shrunk to a few steps on the tiny model."""
    recipe = make_recipe({"extends": SHIPPED, "model": TINY_MODEL, "training": QUICK_TRAINING})
    done = cli("run", str(recipe), "--quiet", "--set", "training.max_steps=3", "--set", "data.max_records=24",
               "--set", "evaluation.max_records=6", "--set", "evaluation.max_new_tokens=24")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["train"]["steps"] == 3
    result = report["metrics"]["test"]["jsonx"]
    assert result["records"] == 6
    for key in ("exact_match", "field_accuracy", "valid_json"):
        assert 0.0 <= result[key] <= 1.0
    assert list(result["per_class"]) == ["age", "sex", "visit_type", "follow_up_days"]
    assert all(v["support"] == 6 for v in result["per_class"].values())
    resolved = (tmp_path / "run" / "recipe.toml").read_text()
    assert "[jsonx]" in resolved and "strict_types = false" in resolved
    assert len((tmp_path / "run" / "predictions-test.jsonl").read_text().splitlines()) == 6
