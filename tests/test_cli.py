"""The real `loraforge` command in a subprocess: help, listing, validation, and every user-error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, cli, ner_recipe, ner_records

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


def write_recipe(tmp_path: Path, table: dict, records: list[dict] | None = None, raw: str | None = None) -> Path:
    import tomli_w

    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (records or ner_records(4))))
    table = {**table, "data": {"train": "train.jsonl"},
             "output": {"dir": str(tmp_path / "run"), "allow_outside": True},
             "evaluation": {"split": "none"}}
    path = tmp_path / "recipe.toml"
    path.write_text(raw if raw is not None else tomli_w.dumps(table))
    return path


BAD_RECORD = {"text": "Take aspirin.", "entities": [{"start": 5, "end": 40, "label": "MEDICATION"}]}
CASES = {
    "malformed toml": (dict(raw='name = "x"\n[adapter\nr = 4\n'), ["invalid TOML", "line 2"]),
    "unknown key": (dict(set=["training.learnig_rate=0.1"]), ["training.learnig_rate: unknown key",
                                                              "did you mean 'learning_rate'?"]),
    "wrong type": (dict(set=["adapter.r=sixteen"]), ["adapter.r: must be an integer, got string 'sixteen'"]),
    "rank out of range": (dict(set=["adapter.r=-4"]), ["adapter.r: must be >= 1, got -4"]),
    "dropout out of range": (dict(set=["adapter.lora_dropout=1.5"]), ["adapter.lora_dropout: must be < 1"]),
    "unknown task": (dict(set=["task.type=nre"]), ["task 'nre' is provided by no installed plugin",
                                                   "did you mean 'ner'?"]),
    "unknown exporter": (dict(set=['export=[{type="merge"}]']), ["exporter 'merge'", "did you mean 'merged'?"]),
    "unknown metric": (dict(set=['evaluation.metrics=["seqevl"]']), ["metric 'seqevl'", "did you mean 'seqeval'?"]),
    "malformed set": (dict(set=["adapter.r"]), ["expected section.key=value"]),
    "missing data file": (dict(set=["data.train=nowhere.jsonl"]), ["train data file not found", "nowhere.jsonl"]),
    "malformed jsonl": (dict(lines=['{"text": "ok", "entities": []}', '{"text": broken']),
                        ["train.jsonl: line 2", "not valid JSON"]),
    "offsets outside text": (dict(records=[BAD_RECORD]), ["train.jsonl: line 1", "13"]),
    "undeclared label": (dict(records=[{"text": "Take aspirin.", "entities": [
        {"start": 5, "end": 12, "label": "DRUG"}]}]), ["DRUG", "task.labels"]),
    "missing package": (dict(set=['requires=["loraforge-nonexistent>=1"]']),
                        ["pip install 'loraforge-nonexistent>=1'"]),
    "missing model folder": (dict(set=["model={loader='hf', name='./no/such/model'}"], command="run"),
                             ["model folder './no/such/model' does not exist"]),
    "prompt longer than max_length": (dict(set=["training.max_length=10"], command="run"),
                                      ["longer than training.max_length (10)", "train.jsonl: line 1"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_user_errors_exit_2_with_one_clear_message(tmp_path: Path, case: str, cache_env: dict) -> None:
    spec, expected = CASES[case]
    path = write_recipe(tmp_path, ner_recipe(), spec.get("records"), spec.get("raw"))
    if "lines" in spec:
        (tmp_path / "train.jsonl").write_text("\n".join(spec["lines"]) + "\n")
    args = [spec.get("command", "validate"), str(path)]
    for value in spec.get("set", []):
        args += ["--set", value]
    done = cli(*args, env=cache_env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    message = " ".join(done.stderr.split())
    for text in expected:
        assert text in message, message
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "adapter").exists()


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
    for word in ("Training", "Evaluating", "seqeval on validation", "MEDICATION", "micro", "adapter →", "done in"):
        assert word in done.stdout, done.stdout
    again = cli("run", str(path), env=cache_env)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr
