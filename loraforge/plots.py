"""Pictures where people would rather look than read: a run's loss curve, a sweep's F1 by class and point.

matplotlib is an optional extra (`pip install loraforge[plot]`); without it these return None and the run says
so once, instead of failing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .files import write_bytes_atomic


def available() -> bool:
    return _pyplot() is not None


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig: Any, target: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    write_bytes_atomic(target, buffer.getvalue())
    return target


def loss_curve(log_file: Path, target: Path) -> Path | None:
    """Training loss per step (and validation loss where logged) from a run's log.jsonl."""
    plt = _pyplot()
    if plt is None or not log_file.exists():
        return None
    entries = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    train = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in entries if "eval_loss" in e]
    if not train:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*train), label="training loss", linewidth=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (target tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    try:
        return _save(fig, target)
    finally:
        plt.close(fig)


def grouped_bars(columns: dict[str, dict[str, float]], target: Path, ylabel: str, title: str) -> Path | None:
    """Bars per class (x) for each column (base, sweep points): `columns[name][class] = value`."""
    plt = _pyplot()
    if plt is None or not columns:
        return None
    classes = list(next(iter(columns.values())))
    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(classes)), 3.8))
    for i, (name, values) in enumerate(columns.items()):
        xs = [c + (i - (len(columns) - 1) / 2) * width for c in range(len(classes))]
        ax.bar(xs, [values.get(c, 0.0) for c in classes], width, label=name)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=min(len(columns), 4))
    try:
        return _save(fig, target)
    finally:
        plt.close(fig)
