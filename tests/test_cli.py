"""The real `loraforge` command in a subprocess: help, listing, validation, and every user-error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, cli, ner_recipe, write_recipe

TINY = ROOT / "recipes" / "medical_ner_tiny.toml"


@pytest.mark.parametrize("command", ["run", "validate", "plugins"])
def test_help(command: str) -> None:
    done = cli(command, "--help")
    assert done.returncode == 0 and "usage: loraforge" in done.stdout


def test_plugins_lists_components_with_their_package() -> None:
    done = cli("plugins")
    assert done.returncode == 0
    for word in ("model loader", "tiny", "ner", "dora", "qlora", "seqeval", "merged", "loraforge 0.1.0"):
        assert word in done.stdout


def test_validate_checks_recipe_plugins_and_data() -> None:
    done = cli("validate", str(TINY))
    assert done.returncode == 0, done.stderr
    assert "medical_ner_tiny: valid" in done.stdout and "2200 records" in done.stdout


def test_missing_recipe_and_extends_cycle(tmp_path: Path) -> None:
    done = cli("validate", str(tmp_path / "nope.toml"))
    assert done.returncode == 2 and "nope.toml: file not found" in done.stderr
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    done = cli("validate", str(tmp_path / "a.toml"))
    assert done.returncode == 2 and "cycle: a.toml -> b.toml -> a.toml" in done.stderr


def test_reference_recipe_without_its_model_points_to_the_cpu_recipe(tmp_path: Path, cache_env: dict) -> None:
    env = {**cache_env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = cli("run", str(ROOT / "recipes" / "medical_ner.toml"), "--output", str(tmp_path / "run"), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert "meta-llama/Llama-3.1-8B-Instruct" in message
    assert "medical_ner_tiny.toml" in message and "--set model.name=/local/path" in message
    assert not (tmp_path / "run" / "adapter").exists()


def test_run_folder_of_another_recipe_is_refused(tmp_path: Path, cache_env: dict) -> None:
    path = write_recipe(tmp_path, ner_recipe())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.toml").write_text('name = "someone_else"\n')
    done = cli("run", str(path), env=cache_env)
    assert done.returncode == 2
    assert "holds a run of another recipe ('someone_else')" in done.stderr
    assert (tmp_path / "run" / "recipe.toml").read_text() == 'name = "someone_else"\n'


@pytest.mark.slow
def test_run_end_to_end_shows_progress_and_table(tmp_path: Path, cache_env: dict) -> None:
    path = write_recipe(tmp_path, ner_recipe(training={"max_steps": 2, "batch_size": 2, "logging_steps": 1}))
    text = path.read_text().replace('split = "none"', 'split = "validation"\nmax_records = 3')
    text = text.replace('train = "train.jsonl"', 'train = "train.jsonl"\nvalidation = "train.jsonl"')
    path.write_text(text)
    done = cli("run", str(path), env={**cache_env, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    for word in ("Training", "Evaluating", "seqeval on validation", "MEDICATION", "micro", "seen mentions", "adapter →",
                 "done in"):
        assert word in done.stdout, done.stdout
    # the validation loss after the epoch is timed apart: training throughput counts training alone
    train = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    assert train["eval_loss"] is not None and 0 < train["validation_s"] < train["runtime_s"]
    training_s = train["tokens"] / train["tokens_per_s"]  # both times are rounded to 0.01 s
    assert training_s == pytest.approx(train["runtime_s"] - train["validation_s"], abs=0.011)
    assert train["training_s"] == pytest.approx(train["runtime_s"] - train["validation_s"], abs=0.011)
    again = cli("run", str(path), env=cache_env)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr
