"""What makes a run folder resumable: the run lock and the checkpoints.

The lock (`run.lock.json`) records everything a checkpoint depends on — the resolved recipe sections that shape
the model and the data, content hashes of the data files and the tokenizer, and package versions. A resume whose
lock differs in any of those is refused with the list of what changed; options that only affect reporting
(logging, checkpoint cadence, evaluation, export) may change freely.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from .files import file_digest

LOCK_FILE = "run.lock.json"
CHECKPOINTS = "checkpoints"
#: files the Trainer writes into a checkpoint; one missing means the save was interrupted
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
#: training options that do not change what a checkpoint means
#: sections that only affect evaluation, export or output: a resume may change them
FREE_SECTIONS = {"evaluation", "export", "output", "sweep"}
FREE_TRAINING_KEYS = {"logging_steps", "save_steps", "save_total_limit", "eval_loss", "dataloader_workers"}
PACKAGES = ("loraforge", "torch", "transformers", "peft", "bitsandbytes", "accelerate")


def make_lock(run: Any) -> dict[str, Any]:
    from .data import tokenizer_fingerprint

    resolved = run.recipe.to_dict()
    training = {k: v for k, v in resolved["training"].items() if k not in FREE_TRAINING_KEYS}
    sections = {name: value for name, value in resolved.items()
                if isinstance(value, dict) and name not in FREE_SECTIONS}
    sections["training"] = training
    sections["data"] = {k: v for k, v in sections["data"].items() if k != "test"}  # scored after training only
    data = {split: file_digest(path) for split in ("train", "validation")
            if (path := run.recipe.data_path(split)) is not None}
    return {
        "recipe": sections,
        "data": data,
        "tokenizer": tokenizer_fingerprint(run.tokenizer),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_lock(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / LOCK_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences that make old checkpoints meaningless for the new run."""
    out = []
    for section in sorted(set(old.get("recipe", {})) | set(new.get("recipe", {}))):
        a, b = old.get("recipe", {}).get(section, {}), new.get("recipe", {}).get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: {_show(a.get(key))} → {_show(b.get(key))}")
    for split in sorted(set(old.get("data", {})) | set(new.get("data", {}))):
        if old.get("data", {}).get(split) != new.get("data", {}).get(split):
            out.append(f"data.{split}: the file's content changed")
    if old.get("tokenizer") != new.get("tokenizer"):
        out.append("tokenizer: a different vocabulary or special tokens")
    return out


def package_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = old.get("packages", {}), new.get("packages", {})
    return [f"{name} {a.get(name)} → {b.get(name)}" for name in PACKAGES if a.get(name) != b.get(name)]


def _show(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value)


def checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a checkpoint cut short by a kill is skipped)."""
    folder = out_dir / CHECKPOINTS
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if m and all((path / f).is_file() for f in CHECKPOINT_FILES) and any(path.glob("adapter_model.*")):
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]
