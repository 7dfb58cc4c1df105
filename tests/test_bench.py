"""A quick smoke run of the benchmark script (its figures are read by people, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_bench_compare_runs_both_sides_and_prints_every_figure(tmp_path, cache_env) -> None:
    import os

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "compare.py"), "--repeat", "1", "--out", str(tmp_path),
         "--set", "data.max_records=24", "--set", "training.epochs=1", "--set", "evaluation.max_records=3",
         "--set", "evaluation.max_new_tokens=8"],
        env={**os.environ, **cache_env}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("tokens_per_s", "padding_fraction", "shared_prefix_fraction", "train_s", "eval_s", "peak_rss_mib",
                "micro_f1", "unseen_recall", "gflops",
                "matmul peak", "speed-ups"):
        assert row in done.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    run = report["runs"][0]
    assert run["loraforge"]["tokens_per_s"] > 0 and run["plain"]["tokens_per_s"] > 0
    for side in ("loraforge", "plain"):
        assert 0 <= run[side]["padding_fraction"] < 1 and 0 <= run[side]["micro_f1"] <= 1
        assert 0 <= run[side]["unseen_recall"] <= 1


def test_gpu_check_smoke_mode_runs_qlora_and_lora(tmp_path) -> None:
    """The GPU script in its small-model mode, on whatever device is here (the CPU in CI)."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", "--steps", "2",
                           "--checkpoint", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for mode in ("qlora", "lora"):
        assert report[mode]["measured"]["tokens_per_s"] > 0
        # 2 layers x (q_proj 256x256 + v_proj 256x64, two kv heads of 32), r = 16
        assert report[mode]["measured"]["trainable"] == 2 * (16 * (256 + 256) + 16 * (256 + 64))
        assert report[mode]["plan"]["memory_gib"] > 0
    # loraforge's layers against PEFT's under bf16 autocast: equal up to bf16 rounding
    assert report["paths"]["shared_prefix_tokens"] == 48
    for name in ("fused", "fused_shared_prefix", "shared_against_unshared", "checkpointed_shared_prefix"):
        assert report["paths"][name]["loss_rel"] < 1e-3 and report["paths"][name]["grad_rel_max"] < 5e-2


def test_bench_maccrobat_trains_on_brat_documents_and_prints_the_table(tmp_path, cache_env) -> None:
    import os

    corpus = ROOT.parent / "shared" / "data" / "maccrobat-train"
    if not corpus.is_dir():
        pytest.skip("the MACCROBAT corpus is not beside this checkout")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "maccrobat.py"), "--corpus", str(corpus), "--output",
         str(tmp_path / "run"), "--set", "data.max_records=70", "--set", "training.max_steps=1",
         "--set", "evaluation.max_records=3", "--set", "evaluation.max_new_tokens=8",
         "--set", "evaluation.baseline_shots=1", "--set", "training.eval_loss=false"],
        env={**os.environ, **cache_env}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for text in ("MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE", "micro", "base 1-shot", "recall on unseen",
                 "tokens/s", "train: 4 documents"):  # the documents read for the first 70 passages
        assert text in done.stdout, done.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    test_docs = {json.loads(line)["file"] for line in (tmp_path / "run" / "predictions-test.jsonl").open()}
    assert metrics["train"]["steps"] == 1 and test_docs  # whole documents held out
