"""This machine as a device: the matmul peak is bounded in time whatever the size or dtype, and bf16 that the CPU
only emulates (forced with LORAFORGE_CPU_BF16=0 on a CPU that has it) is neither measured nor timed, in plan's
device, in the `loraforge plan` command and in the benchmark's peak line."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import time

import pytest

from loraforge.devices import BF16_EMULATED, measure_matmul_tflops, resolve_device
from loraforge.errors import RunError
from loraforge.train import cpu_has_bf16, resolve_precision

from conftest import ROOT

LORAFORGE = ROOT / ".venv" / "bin" / "loraforge"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - start


# -------------------------------------------------------------------------------------------------- the peak


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_peak_is_positive_and_within_its_budget(dtype):
    tflops, took = timed(measure_matmul_tflops, dtype)
    assert math.isfinite(tflops) and tflops > 0
    assert took < 5


def test_peak_stops_growing_when_a_multiply_would_not_fit_the_budget():
    # a 16384² float64 multiply alone takes a minute or more on a CPU: growth must stop long before it
    tflops, took = timed(measure_matmul_tflops, "float64", seconds=0.2, max_size=16384)
    assert math.isfinite(tflops) and tflops > 0
    assert took < 5


def test_a_tiny_budget_still_gives_a_figure():
    tflops, took = timed(measure_matmul_tflops, "bfloat16", seconds=0.001)
    assert math.isfinite(tflops) and tflops > 0
    assert took < 1


# ------------------------------------------------------------------------------------- native or emulated bf16


def test_the_environment_forces_the_bf16_answer(monkeypatch):
    import torch

    monkeypatch.delenv("LORAFORGE_CPU_BF16", raising=False)
    probed = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert cpu_has_bf16() is probed
    for value, expected in (("0", False), ("1", True), ("false", False), ("yes", True)):
        monkeypatch.setenv("LORAFORGE_CPU_BF16", value)
        assert cpu_has_bf16() is expected
    monkeypatch.setenv("LORAFORGE_CPU_BF16", "0")
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setenv("LORAFORGE_CPU_BF16", "maybe")
    with pytest.raises(RunError, match="LORAFORGE_CPU_BF16"):
        cpu_has_bf16()


def test_asking_is_cheap(monkeypatch):
    monkeypatch.delenv("LORAFORGE_CPU_BF16", raising=False)
    cpu_has_bf16()
    _, took = timed(lambda: [cpu_has_bf16() for _ in range(10_000)])
    assert took < 1


def test_emulated_bf16_gets_the_note_and_no_peak(monkeypatch):
    monkeypatch.setenv("LORAFORGE_CPU_BF16", "0")
    monkeypatch.delenv("LORAFORGE_CPU_TFLOPS", raising=False)
    dev, took = timed(resolve_device, "cpu", bf16=True)
    assert dev.tflops is None and not dev.bf16
    assert BF16_EMULATED in dev.note and "--set training.precision=fp32" in dev.note and "auto" in dev.note
    assert took < 5
    auto = resolve_device("cpu", bf16=None)  # `auto` precision: fp32 on such a CPU
    assert auto.tflops > 0 and "measured fp32 matmul" in auto.note and BF16_EMULATED not in auto.note


def test_a_configured_peak_is_kept_and_still_warned_about(monkeypatch):
    monkeypatch.setenv("LORAFORGE_CPU_BF16", "0")
    monkeypatch.setenv("LORAFORGE_CPU_TFLOPS", "0.5")
    dev = resolve_device("cpu", bf16=True)
    assert dev.tflops == 0.5 and dev.note.startswith("configured bf16 matmul") and BF16_EMULATED in dev.note


def test_native_bf16_is_measured(monkeypatch):
    monkeypatch.setenv("LORAFORGE_CPU_BF16", "1")
    monkeypatch.delenv("LORAFORGE_CPU_TFLOPS", raising=False)
    dev = resolve_device("cpu", bf16=True)
    assert dev.tflops > 0 and dev.bf16 and dev.note.startswith("measured bf16 matmul")


# ------------------------------------------------------------------------------------------- loraforge plan


def plan_cli(tmp_path, *sets: str, json_out: bool = False) -> subprocess.CompletedProcess[str]:
    """The installed command, as a user runs it; plan.json goes to tmp_path, not the checkout's runs/."""
    overrides = [f"output.dir={json.dumps(str(tmp_path))}", "output.allow_outside=true", *sets]
    env = {**os.environ, "LORAFORGE_CPU_BF16": "0", "COLUMNS": "240"}
    env.pop("LORAFORGE_CPU_TFLOPS", None)
    return subprocess.run([str(LORAFORGE), "plan", "recipes/medical_ner.toml", *[a for s in overrides
                                                                                  for a in ("--set", s)],
                           *(["--json"] if json_out else [])],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_plan_of_a_bf16_recipe_on_an_emulating_cpu_says_so_and_predicts_no_days(tmp_path):
    done = plan_cli(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert BF16_EMULATED in done.stdout and "--set training.precision=fp32" in done.stdout
    assert not re.search(r"\d d\b", done.stdout)  # no day-count of emulated bf16
    assert json.loads((tmp_path / "plan.json").read_text())["predicted_train_seconds"] is None


def test_following_the_advice_plans_in_fp32(tmp_path):
    done = plan_cli(tmp_path, "training.precision=auto", json_out=True)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = json.loads(done.stdout)
    assert "measured fp32 matmul" in plan["device"]["note"] and plan["device"]["tflops"] > 0
    low, high = plan["predicted_train_seconds"]
    assert 0 < low < high


# ------------------------------------------------------------------------------------------------- the bench


def bench_compare():
    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("native", ["0", "1"])
def test_bench_peak_line_measures_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setenv("LORAFORGE_CPU_BF16", native)
    compare = bench_compare()
    peak, took = timed(compare.matmul_peaks)
    line = compare.peak_line(peak)
    assert peak["float32"] > 0 and took < 5
    if native == "1":
        assert peak["bfloat16"] > 0 and re.search(r"bf16 \d+ GFLOP/s", line)
    else:
        assert peak["bfloat16"] is None and f"{BF16_EMULATED}, not measured" in line
