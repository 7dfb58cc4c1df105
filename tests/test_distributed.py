"""Two processes on the CPU (gloo) through torchrun: the Trainer does the distributing, rank 0 the writing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHIPPED_BASE, ner_recipe, ner_records
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def torchrun(make_recipe, cache_env, share: bool) -> Path:
    """A run of two processes; returns its output folder."""
    path = make_recipe(ner_recipe(model=SHIPPED_BASE,
                                  adapter={"type": "lora", "r": 4, "lora_dropout": 0.0, "target_modules": "all-linear"},
                                  # plain SGD passes gradient differences on to the weights (Adam's first steps
                                  # would not), fp32 keeps bf16 rounding out of the comparison
                                  training={"epochs": 1, "batch_size": 4, "logging_steps": 1, "eval_loss": False,
                                            "optimizer": "sgd", "learning_rate": 0.5, "precision": "fp32",
                                            "share_prefix": share},
                                  evaluation={"max_records": 4, "max_new_tokens": 8}, output={"dir": f"run-{share}"}),
                       name=f"recipe-{share}.toml", data={"train": ner_records(32), "test": ner_records(4, 40)})
    launcher = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    done = subprocess.run([launcher, "--nproc_per_node", "2", "--master_port", "29517", "-m", "loraforge", "run",
                           str(path)], env={**os.environ, **cache_env, "COLUMNS": "120"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2: training with rank 0" in done.stdout and "rank 1 of 2: done" in done.stdout
    assert done.stdout.count("▸ Training") == 1  # one display, from rank 0
    return path.parent / f"run-{share}"


def test_torchrun_two_processes(make_recipe, cache_env) -> None:
    out = torchrun(make_recipe, cache_env, share=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4  # 32 records / (4 per process x 2 processes)
    assert metrics["train"]["shared_prefix_fraction"] > 0.2  # each process runs its batch's prefix once
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    shared = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("lora_B" in k for k in shared)
    # the gradients DDP averages are those of the full batches: the same adapter as without sharing
    plain = load_file(torchrun(make_recipe, cache_env, share=False) / "adapter" / "adapter_model.safetensors")
    for name in plain:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-4, atol=1e-6)
