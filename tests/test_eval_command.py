"""`loraforge eval`: a saved adapter scored again, in a subprocess, without touching the run it came from."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli, ner_recipe, ner_records


def test_eval_rescores_the_saved_adapter_and_leaves_the_run_alone(make_recipe, cache_env: dict) -> None:
    path = make_recipe(ner_recipe(training={"max_steps": 6, "batch_size": 4, "learning_rate": 5e-3}),
                       data={"train": ner_records(16), "test": ner_records(6, 100)})
    run_dir = path.parent / "run"
    done = cli("run", str(path), "--quiet", env=cache_env)
    assert done.returncode == 0, done.stderr
    run_metrics = (run_dir / "metrics.json").read_bytes()
    run_predictions = (run_dir / "predictions-test.jsonl").read_bytes()

    done = cli("eval", str(path), env={**cache_env, "COLUMNS": "300"})
    assert done.returncode == 0, done.stderr
    assert "seqeval on test" in done.stdout and str(run_dir / "eval" / "metrics.json") in done.stdout
    report = json.loads((run_dir / "eval" / "metrics.json").read_text())
    assert report["adapter"] == str(run_dir / "adapter")
    # greedy decoding of the same adapter: the same answers and scores as the run's own evaluation
    assert (run_dir / "eval" / "predictions-test.jsonl").read_bytes() == run_predictions
    assert report["metrics"]["test"] == json.loads(run_metrics)["metrics"]["test"]
    assert (run_dir / "metrics.json").read_bytes() == run_metrics

    other = path.parent / "free"
    done = cli("eval", str(path), "--adapter", str(run_dir / "adapter"), "--output", str(other), "--quiet",
               "--set", "evaluation.constrained=false", "--set", "evaluation.max_records=3", env=cache_env)
    assert done.returncode == 0, done.stderr
    free = json.loads((other / "metrics.json").read_text())
    assert free["metrics"]["test"]["seqeval"]["micro"]["f1"] >= 0.0
    assert len((other / "predictions-test.jsonl").read_text().splitlines()) == 3

    # an adapter trained for another model: one message, nothing written
    done = cli("eval", str(path), "--set", "model.hidden_size=32", "--output", str(path.parent / "bad"),
               env=cache_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert "the adapter does not fit the recipe's model" in message and "recipe.toml" in message
    assert not (path.parent / "bad").exists()


def test_eval_without_a_saved_adapter_says_where_it_looked(make_recipe, cache_env: dict) -> None:
    path = make_recipe(ner_recipe(), data={"train": ner_records(4), "test": ner_records(2, 100)})
    done = cli("eval", str(path), env=cache_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert str(path.parent / "run" / "adapter") in message and "no saved adapter here" in message
    assert "loraforge run RECIPE" in message and "--adapter DIR" in message
    assert not (path.parent / "run" / "eval").exists()


def test_eval_with_no_split_names_the_key(make_recipe, cache_env: dict, tmp_path: Path) -> None:
    path = make_recipe(ner_recipe(), data={"train": ner_records(4)})
    done = cli("eval", str(path), "--set", "evaluation.split=none", env=cache_env)
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "evaluation.split" in message and "--set evaluation.split=test" in message


def test_eval_looks_for_the_adapter_where_the_recipe_exports_it(make_recipe, cache_env: dict) -> None:
    path = make_recipe(ner_recipe(export=[{"type": "merged"}, {"type": "adapter", "dir": "lora"}]),
                       data={"train": ner_records(4), "test": ner_records(2, 100)})
    done = cli("eval", str(path), env=cache_env)
    assert done.returncode == 2 and str(path.parent / "run" / "lora") in " ".join(done.stderr.split())

    merged_only = make_recipe(ner_recipe(export=[{"type": "merged"}]), name="merged.toml",
                              data={"train": ner_records(4), "test": ner_records(2, 100)})
    done = cli("eval", str(merged_only), env=cache_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert "export: the recipe exports no adapter" in message and "--adapter DIR" in message
