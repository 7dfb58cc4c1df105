"""Sweeps end to end on the tiny model: one folder per point, finished points kept, the comparison table."""

from __future__ import annotations

import json

import pytest
from conftest import cli, ner_recipe, ner_records

from loraforge.sweep import parse_grid, point_name, points


def test_grid_parsing_and_point_names() -> None:
    grid = parse_grid(["adapter.r=8,16", "training.learning_rate=1e-3,2e-4"])
    assert grid == {"adapter.r": [8, 16], "training.learning_rate": [1e-3, 2e-4]}
    combos = points(grid)
    assert len(combos) == 4 and combos[0] == {"adapter.r": 8, "training.learning_rate": 1e-3}
    assert point_name({"adapter.r": 8}) == "r=8"
    assert point_name({"adapter.r": 8, "training.learning_rate": 0.001}) == "r=8,learning_rate=0.001"
    assert point_name({"adapter.target_modules": ["q_proj", "v_proj"]}) == "target_modules=q_proj+v_proj"


@pytest.mark.slow
def test_two_point_sweep_resumes_and_compares(make_recipe, cache_env) -> None:
    path = make_recipe(ner_recipe(training={"max_steps": 3, "batch_size": 4, "logging_steps": 1, "eval_loss": False},
                                  evaluation={"max_records": 4, "max_new_tokens": 8, "baseline_shots": 1}),
                       data={"train": ner_records(16), "test": ner_records(4, 50)})
    out = path.parent / "sweep"
    first = cli("sweep", str(path), "--grid", "adapter.r=2", "--output", str(out), "--quiet", env=cache_env)
    assert first.returncode == 0, first.stderr
    done_file = out / "r=2" / "metrics.json"
    stamp = done_file.stat().st_mtime_ns

    both = cli("sweep", str(path), "--grid", "adapter.r=2,4", "--output", str(out), env=cache_env)
    assert both.returncode == 0, both.stderr
    assert "2 points (1 already done)" in " ".join(both.stdout.split())
    assert done_file.stat().st_mtime_ns == stamp  # the finished point was not run again
    assert json.loads((out / "r=4" / "adapter" / "adapter_config.json").read_text())["r"] == 4
    assert "baseline" not in json.loads((out / "r=4" / "metrics.json").read_text())["metrics"]  # measured once

    report = json.loads((out / "sweep.json").read_text())
    assert list(report["scores"]) == ["base 1-shot", "r=2", "r=4"]
    table = (out / "sweep.md").read_text()
    assert "| class | base 1-shot | r=2 | r=4 |" in table and "| MEDICATION |" in table
    assert (out / "sweep-seqeval.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "r=2" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_without_a_grid_is_a_clear_error(make_recipe, cache_env) -> None:
    path = make_recipe(ner_recipe(), data={"train": ner_records(4)})
    done = cli("sweep", str(path), env=cache_env)
    assert done.returncode == 2 and "nothing to sweep" in done.stderr
    bad = cli("sweep", str(path), "--grid", "adapter.r", env=cache_env)
    assert bad.returncode == 2 and "expected key=value1,value2" in bad.stderr
