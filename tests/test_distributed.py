"""Two processes on the CPU (gloo) through torchrun: the Trainer does the distributing, rank 0 the writing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ner_recipe, ner_records

pytestmark = pytest.mark.slow


def test_torchrun_two_processes(make_recipe, cache_env) -> None:
    from safetensors import safe_open

    path = make_recipe(ner_recipe(training={"epochs": 1, "batch_size": 4, "logging_steps": 1, "eval_loss": False},
                                  evaluation={"max_records": 4, "max_new_tokens": 8}),
                       data={"train": ner_records(32), "test": ner_records(4, 40)})
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29517", "-m", "loraforge", "run",
                           str(path)], env={**os.environ, **cache_env, "COLUMNS": "120"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2: training with rank 0" in done.stdout and "rank 1 of 2: done" in done.stdout
    assert done.stdout.count("▸ Training") == 1  # one display, from rank 0
    out = path.parent / "run"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4  # 32 records / (4 per process x 2 processes)
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    with safe_open(out / "adapter" / "adapter_model.safetensors", "pt") as f:
        assert any("lora_B" in k for k in f.keys())
