"""Crashes cost at most the steps since the last checkpoint; outputs are never half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, ner_recipe, ner_records

pytestmark = pytest.mark.slow
STEPS = 40


def recipe_file(make_recipe, **training) -> Path:
    settings = {"max_steps": STEPS, "batch_size": 8, "save_steps": 4, "save_total_limit": 3, "logging_steps": 1,
                "learning_rate": 5e-3, "max_length": 256, "eval_loss": False, **training}
    return make_recipe(ner_recipe(training=settings, evaluation={"split": "none"}),
                       data={"train": ner_records(64)})


def start(path: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "loraforge", "run", str(path), "--quiet"],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(out: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not (out / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def steps_logged(out: Path) -> list[int]:
    return [e["step"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in e]


def test_sigkill_then_rerun_continues_from_the_checkpoint(make_recipe, cache_env) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path = recipe_file(make_recipe)
    out = path.parent / "run"
    proc = start(path, cache_env)
    wait_for_checkpoint(out, 8, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "adapter").exists() and not (out / "metrics.json").exists()
    killed_at = max(steps_logged(out))
    assert killed_at < STEPS

    changed = cli("run", str(path), "--set", "adapter.target_modules=['q_proj']", env=cache_env)
    assert changed.returncode == 2
    assert 'cannot resume: adapter.target_modules: ["q_proj", "v_proj"] → ["q_proj"]' in " ".join(
        changed.stderr.split())

    done = cli("run", str(path), "--quiet", env=cache_env)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == STEPS
    resumed = steps_logged(out)
    first_after_kill = resumed[resumed.index(killed_at) + 1:]
    assert first_after_kill and first_after_kill[0] <= killed_at + 1  # continued, not restarted at step 1
    assert resumed.count(1) == 1  # step 1 ran once: the second run did not start over
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    PeftModel.from_pretrained(base, out / "adapter")


def test_changed_data_is_refused_and_restart_starts_over(make_recipe, cache_env) -> None:
    path = recipe_file(make_recipe, max_steps=8, save_steps=4)
    out = path.parent / "run"
    proc = start(path, cache_env)
    wait_for_checkpoint(out, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    train = path.parent / "train.jsonl"
    train.write_text(train.read_text() + json.dumps(ner_records(1, 70)[0]) + "\n")
    refused = cli("run", str(path), env=cache_env)
    assert refused.returncode == 2 and "data.train: the file's content changed" in refused.stderr
    assert (out / "checkpoints" / "checkpoint-4").exists()  # nothing lost by the refusal
    done = cli("run", str(path), "--restart", "--quiet", env=cache_env)
    assert done.returncode == 0, done.stderr
    assert steps_logged(out) == list(range(1, 9))


def test_ctrl_c_saves_a_checkpoint_and_stops_cleanly(make_recipe, cache_env) -> None:
    path = recipe_file(make_recipe, save_steps=1000)
    out = path.parent / "run"
    proc = start(path, cache_env)
    deadline = time.time() + 120
    while not (out / "log.jsonl").exists() or len(steps_logged(out)) < 3:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "a checkpoint was saved" in stderr and "Traceback" not in stderr
    saved = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert saved and 3 <= int(saved[-1].name.split("-")[1]) < STEPS
    assert not (out / "metrics.json").exists()
    done = cli("run", str(path), "--quiet", env=cache_env)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == STEPS


def test_a_kill_inside_an_atomic_write_leaves_no_complete_looking_output(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from loraforge.files import atomic_dir, write_text_atomic\n"
        "target = Path(sys.argv[1])\n"
        "write_text_atomic(target / 'metrics.json', 'old')\n"
        "with atomic_dir(target / 'merged') as tmp:\n"
        "    (tmp / 'model.safetensors').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=False)
    assert not (tmp_path / "merged").exists()
    assert (tmp_path / "metrics.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".merged")]  # only a hidden partial folder
