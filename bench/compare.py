"""loraforge against a plain Trainer+PEFT script: same model, data and hyperparameters, run in one process tree.

    python bench/compare.py [--recipe recipes/medical_ner_tiny.toml] [--repeat 3 | --seeds 0,1,2] [--set key=value ...]

`--repeat N` runs each side N times on the recipe's seed (spread in time); `--seeds` once per seed, the same
seed on both sides (spread in F1: weights of new layers, dropout and shuffling differ per seed). Prints, as medians
over the runs: training tokens/s (real, non-pad tokens), padding fraction, training and
evaluation wall time (training without loraforge's validation loss after each epoch, which the plain script does not
compute), peak RSS, test micro-F1 and recall on unseen mentions (both sides' generations scored by the
same task and metric), the ratio loraforge/plain, and the model FLOP/s of training against
this machine's matmul peak (measured here first). Not part of the test suite; tests/test_bench.py smoke-tests it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_peaks() -> dict[str, float | None]:
    """GFLOP/s of square matmuls, the ceiling the training FLOP/s are compared with, measured as `loraforge plan`
    measures them (bounded in size and time). bf16 the CPU only emulates is None: measuring it alone once took
    minutes, and its figure bounds nothing anyone should train in."""
    from loraforge.devices import measure_matmul_tflops
    from loraforge.train import cpu_has_bf16

    return {"float32": measure_matmul_tflops("float32") * 1e3,
            "bfloat16": measure_matmul_tflops("bfloat16") * 1e3 if cpu_has_bf16() else None}


def peak_line(peak: dict[str, float | None]) -> str:
    from loraforge.devices import BF16_EMULATED

    bf16 = f"bf16 {peak['bfloat16']:.0f} GFLOP/s" if peak["bfloat16"] is not None else f"{BF16_EMULATED}, not measured"
    return f"matmul peak on this machine: fp32 {peak['float32']:.0f} GFLOP/s, {bf16}"


def measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run a child; return it, its wall time and its peak RSS in MiB (the child alone, via RUSAGE_CHILDREN)."""
    wrapper = ("import resource, subprocess, sys\n"
               "p = subprocess.run(sys.argv[1:])\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
               "sys.exit(p.returncode)\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    rss_kb = int(done.stderr.strip().splitlines()[-1])
    return done, wall, rss_kb / 1024


def model_flops_per_token(metrics: dict, base: Path) -> float:
    """6 FLOPs per trainable and 4 per frozen matmul weight (no weight gradient), per token."""
    from safetensors import safe_open

    with safe_open(base / "model.safetensors", "pt") as f:
        matmul = sum(f.get_slice(k).get_shape()[0] * f.get_slice(k).get_shape()[1]
                     for k in f.keys() if k.endswith(".weight") and len(f.get_slice(k).get_shape()) == 2
                     and "embed_tokens" not in k)
    trainable = metrics["params"]["trainable"]
    return 4 * matmul + 2 * trainable


def plain_config(recipe_path: Path, overrides: list[str], base: Path, folder: Path) -> Path:
    """The same formatted examples and hyperparameters, handed to the plain script; its generations get the bound
    loraforge's task gives the whole split."""
    from loraforge.data import make_encoder
    from loraforge.engine import build
    from loraforge.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    run = build(recipe)
    encoder = make_encoder(run.components.model.load_tokenizer(run))
    max_new = recipe.evaluation.max_new_tokens or run.task.max_new_tokens(run.train_examples, encoder.count)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        records = run.records[split][: recipe.evaluation.max_records if split == "test" else None]
        with open(folder / f"{split}.jsonl", "w") as f:
            for ex in (run.task.format(r) for r in records):
                f.write(json.dumps({"prompt": ex.prompt, "target": ex.target}) + "\n")
    a, t = recipe.adapter.options, recipe.training
    cfg = {"model": str(base), "train": str(folder / "train.jsonl"), "test": str(folder / "test.jsonl"),
           "out": str(folder / "trainer"), "r": a.r, "alpha": a.lora_alpha, "dropout": a.lora_dropout,
           "target_modules": a.target_modules, "modules_to_save": a.modules_to_save, "epochs": t.epochs,
           "lr": t.learning_rate, "batch_size": t.batch_size, "scheduler": t.scheduler,
           "warmup_ratio": t.warmup_ratio, "seed": t.seed, "max_new_tokens": max_new}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder / "config.json"


def plain_scores(recipe_path: Path, overrides: list[str], generations: list[str]) -> tuple[float, float | None]:
    """The plain script's generations scored exactly as loraforge scores its own: micro-F1, unseen-mention recall."""
    from loraforge.engine import build
    from loraforge.evaluate import EvalContext
    from loraforge.recipe import load_recipe

    recipe = load_recipe(recipe_path, overrides)
    run = build(recipe)
    records = run.records["test"][: recipe.evaluation.max_records]
    task = run.task
    predictions = [task.parse(g, r) for g, r in zip(generations, records)]
    run.evaluation = EvalContext(run, "test", records)
    scores = run.components.metrics["seqeval"].compute(run, predictions, [task.reference(r) for r in records])
    return scores["micro"]["f1"], unseen_recall(scores)


def unseen_recall(seqeval: dict) -> float | None:
    unseen = seqeval.get("mentions", {}).get("unseen")
    return unseen["recall"] if unseen else None


def once(recipe: Path, overrides: list[str], out: Path, index: int) -> dict[str, dict[str, float]]:
    lf_dir = out / f"loraforge-{index}"
    sets = [x for o in overrides for x in ("--set", o)]
    _, lf_wall, lf_rss = measured([sys.executable, "-m", "loraforge", "run", str(recipe), "--output", str(lf_dir),
                                   "--restart", "--quiet", *sets])
    metrics = json.loads((lf_dir / "metrics.json").read_text())
    base = Path(json.loads((lf_dir / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"])
    cfg = plain_config(recipe, overrides, base, out / f"plain-{index}")
    done, plain_wall, plain_rss = measured([sys.executable, str(ROOT / "bench" / "plain_script.py"), str(cfg)])
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    flops = model_flops_per_token(metrics, base)
    lf_train = metrics["train"]
    lf_seqeval = metrics["metrics"]["test"]["seqeval"]
    plain_f1, plain_unseen = plain_scores(recipe, overrides, plain["generations"])
    return {
        "loraforge": {"tokens_per_s": lf_train["tokens_per_s"], "padding_fraction": lf_train["padding_fraction"],
                      "shared_prefix_fraction": lf_train["shared_prefix_fraction"],
                      "train_s": lf_train["training_s"], "eval_s": metrics["evaluate_s"],
                      "wall_s": lf_wall,
                      "peak_rss_mib": lf_rss, "micro_f1": lf_seqeval["micro"]["f1"],
                      "unseen_recall": unseen_recall(lf_seqeval), "gflops": flops * lf_train["tokens_per_s"] / 1e9,
                      "dtype": "bfloat16" if metrics["precision"] == "bf16" else "float32"},
        "plain": {"tokens_per_s": plain["tokens_per_s"], "padding_fraction": plain["padding_fraction"],
                  "shared_prefix_fraction": 0.0,
                  "train_s": plain["train_s"], "eval_s": plain["eval_s"], "wall_s": plain_wall,
                  "peak_rss_mib": plain_rss, "micro_f1": plain_f1, "unseen_recall": plain_unseen,
                  "gflops": flops * plain["tokens_per_s"] / 1e9},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "medical_ner_tiny.toml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",")], default=None,
                        help="comma-separated training seeds, one run of each side per seed (instead of --repeat)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    args = parser.parse_args(argv)
    args.overrides = ["evaluation.baseline_shots=", *args.overrides]  # the plain script scores no base model

    peak = matmul_peaks()
    print(peak_line(peak))
    per_run = ([[*args.overrides, f"training.seed={seed}"] for seed in args.seeds] if args.seeds
               else [args.overrides] * args.repeat)
    runs = [once(args.recipe, overrides, args.out, i) for i, overrides in enumerate(per_run)]
    rows = ["tokens_per_s", "padding_fraction", "shared_prefix_fraction", "train_s", "eval_s", "wall_s", "peak_rss_mib",
            "micro_f1", "unseen_recall", "gflops"]
    what = f"seeds {','.join(map(str, args.seeds))}" if args.seeds else f"{len(runs)} run(s)"
    print(f"\nmedian of {what:17} loraforge        plain    loraforge/plain")
    summary = {}
    for row in rows:
        if any(r[side][row] is None for r in runs for side in ("loraforge", "plain")):
            continue  # e.g. unseen recall for a task without mentions
        lf = statistics.median(r["loraforge"][row] for r in runs)
        pl = statistics.median(r["plain"][row] for r in runs)
        summary[row] = {"loraforge": lf, "plain": pl}
        ratio = f"{lf / pl:10.2f}x" if pl else "-"
        print(f"{row:24} {lf:12.3f} {pl:12.3f} {ratio}")
    for side in ("loraforge", "plain"):
        scores = " ".join(f"{r[side]['micro_f1']:.3f}" for r in runs)
        print(f"micro-F1 per run, {side}: {scores}")
    lf_dtype = runs[0]["loraforge"]["dtype"]  # the plain script trains in fp32
    lf_peak = peak[lf_dtype] or peak["float32"]
    print(f"training model FLOP/s against the matmul peak of the dtype trained in: loraforge "
          f"{summary['gflops']['loraforge'] / lf_peak:.1%} ({lf_dtype}), plain "
          f"{summary['gflops']['plain'] / peak['float32']:.1%} (float32)")
    speedup_eval = summary["eval_s"]["plain"] / summary["eval_s"]["loraforge"]
    print(f"speed-ups: training {summary['tokens_per_s']['loraforge'] / summary['tokens_per_s']['plain']:.2f}x, "
          f"evaluation {speedup_eval:.2f}x")
    (args.out / "bench.json").write_text(json.dumps({"peak_gflops": peak, "runs": runs, "median": summary},
                                                    indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
