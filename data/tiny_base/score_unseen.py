"""Recall on entity strings seen vs unseen in training, from a medical NER run's predictions.

A gold mention is *unseen* when its string (case-insensitive, whitespace-normalised) never occurs as an entity
string of any label in the training file. A gold span counts as found when the parsed prediction holds the same
(start, end, label), exactly as entity-level seqeval would count it. Standard library and loraforge only.

Usage::

    python data/tiny_base/score_unseen.py RUN_DIR [--train data/medical_ner/train.jsonl] [--split test] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from loraforge.builtin.tasks.ner import NerTask
from loraforge.components import Record

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE"]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def seen_strings(train: Path) -> set[str]:
    seen = set()
    for line in train.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            seen.update(_norm(rec["text"][e["start"]:e["end"]]) for e in rec["entities"])
    return seen


def score(run_dir: Path, train: Path, split: str = "test") -> dict:
    task = NerTask(NerTask.Options(labels=LABELS))
    seen = seen_strings(train)
    files: dict[str, list[str]] = {}
    counts: Counter = Counter()
    pred_total = pred_good = 0
    for line in (run_dir / f"predictions-{split}.jsonl").read_text(encoding="utf-8").splitlines():
        pred = json.loads(line)
        lines = files.setdefault(pred["file"], Path(pred["file"]).read_text(encoding="utf-8").splitlines())
        data = json.loads(lines[pred["line"] - 1])
        record = Record(data, file=pred["file"], line=pred["line"])
        gold = set(task.reference(record))
        guess = set(task.parse(pred["generated"], record))
        pred_total += len(guess)
        pred_good += len(gold & guess)
        for span in gold:
            kind = "seen" if _norm(data["text"][span[0]:span[1]]) in seen else "unseen"
            hit = span in guess
            for key in (kind, f"{kind}/{span[2]}", "all"):
                counts[key, "n"] += 1
                counts[key, "hit"] += hit
    recall = {key: {"recall": round(counts[key, "hit"] / counts[key, "n"], 4), "support": counts[key, "n"]}
              for key in sorted({k for k, _ in counts}) if counts[key, "n"]}
    vocab = [f"unseen/{lab}" for lab in ("MEDICATION", "CONDITION", "PROCEDURE")]
    n = sum(counts[k, "n"] for k in vocab)
    if n:
        recall["unseen/vocab-classes"] = {"recall": round(sum(counts[k, "hit"] for k in vocab) / n, 4),
                                          "support": n}
    recall["precision(exact spans)"] = {"recall": round(pred_good / pred_total, 4) if pred_total else 0.0,
                                        "support": pred_total}
    return recall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--train", type=Path, default=ROOT / "data" / "medical_ner" / "train.jsonl")
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    result = score(args.run_dir, args.train, args.split)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    metrics = args.run_dir / "metrics.json"
    if metrics.exists():
        m = json.loads(metrics.read_text())
        seq = m["metrics"][args.split]["seqeval"]
        print(f"micro-F1 {seq['micro']['f1']:.4f}  P {seq['micro']['precision']:.4f}  R {seq['micro']['recall']:.4f}"
              f"  wall {m.get('wall_time_s')}s  train {m['train']['runtime_s']}s")
        print("per-class F1: " + ", ".join(f"{k} {v['f1']:.3f}" for k, v in seq["per_class"].items()))
    for key, value in result.items():
        print(f"{key:28s} {value['recall']:.4f}  (n={value['support']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
