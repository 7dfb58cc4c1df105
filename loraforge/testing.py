"""Pytest fixtures for loraforge and for plugin authors (loaded through the `pytest11` entry point).

- `loraforge_cache`: a per-session cache folder (tiny models, tokenized data), so tests never touch ~/.cache.
- `tiny_model_dir`: a real tiny Llama + BPE tokenizer saved as a Hugging Face folder, built once per session.
- `make_recipe`: writes a recipe TOML (and JSONL data files) into tmp_path and returns its path.
- `quick_recipe(task, **sections)`: the table of a few-second run on the tiny model, for `make_recipe`.
- `scoring_run(task, references, ...)`: the run a metric's `compute(run, predictions, references)` receives, for
  unit tests of metrics; nothing is loaded or written.

Plugins under test are passed to a run as objects (`engine.build(recipe, observers=(plugin,))`) or installed as
packages; every run builds a fresh plugin manager, so nothing registered in one test leaks into another.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .components import Record, Task
    from .run import Run

#: a small model that trains in seconds on a CPU
TINY_MODEL: dict[str, Any] = {"loader": "tiny", "hidden_size": 64, "num_layers": 1, "num_heads": 4,
                              "num_kv_heads": 2, "intermediate_size": 128, "vocab_size": 400, "seed": 0}
#: training settings for tests: a few steps, no checkpoints beyond the end
QUICK_TRAINING: dict[str, Any] = {"epochs": 1, "batch_size": 8, "learning_rate": 5e-3, "max_length": 256,
                                  "logging_steps": 1, "warmup_ratio": 0.0, "eval_loss": False}


def quick_recipe(task: dict[str, Any], name: str = "quick", **sections: Any) -> dict[str, Any]:
    """A recipe table for a run of a few seconds on the tiny model; `sections` replace the defaults."""
    table: dict[str, Any] = {
        "name": name,
        "model": dict(TINY_MODEL),
        "task": dict(task),
        "adapter": {"type": "lora", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "training": dict(QUICK_TRAINING),
        "evaluation": {"batch_size": 16, "max_new_tokens": 24},
        "export": [{"type": "adapter"}],
    }
    table.update(sections)
    return table


@pytest.fixture(scope="session")
def loraforge_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from .files import CACHE_ENV

    path = tmp_path_factory.mktemp("loraforge-cache")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)
    yield path
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def tiny_model_dir(loraforge_cache: Path) -> Path:
    """A real Hugging Face model folder (Llama architecture, safetensors, fast tokenizer)."""
    from .plugins import Registry, get_plugin_manager
    from .schema import parse

    tiny = Registry(get_plugin_manager()).get("model loader", TINY_MODEL["loader"])  # the builtin, as a recipe gets it
    options, problems = parse(tiny.options, {k: v for k, v in TINY_MODEL.items() if k != "loader"}, "model")
    assert not problems, problems
    corpus = ["The patient took 500 mg of metformin for type 2 diabetes.",
              "Chest X-ray showed no pneumonia; continue amoxicillin 875 mg twice daily."] * 20
    return tiny.factory(options).build(corpus)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def make_recipe(tmp_path: Path, loraforge_cache: Path) -> Callable[..., Path]:
    """`make_recipe(table, name="recipe.toml", data={"train": [records...]})` → path of the written recipe.

    `data` maps split names to lists of records, written as JSONL beside the recipe and referenced from it.
    """
    import tomli_w

    def make(table: dict[str, Any], name: str = "recipe.toml",
             data: dict[str, list[dict[str, Any]]] | None = None) -> Path:
        table = json.loads(json.dumps(table))  # deep copy
        for split, records in (data or {}).items():
            write_jsonl(tmp_path / f"{split}.jsonl", records)
            table.setdefault("data", {})[split] = f"{split}.jsonl"
        output = table.setdefault("output", {})
        output.setdefault("dir", str(tmp_path / "run"))
        output.setdefault("allow_outside", True)  # tmp_path lies outside the working directory
        path = tmp_path / name
        path.write_text(tomli_w.dumps(table), encoding="utf-8")
        return path

    return make


def scoring_run(task: Task, records: Sequence[Record] = (), train: Sequence[Record] = (),
                split: str = "test") -> Run:
    """A real run around `task` (a registered task's instance, configured as the test needs) that is scoring
    `records` as `split`, with `train` as its training records: what a metric's `compute(run, predictions,
    references)` receives during a run. The recipe is the quick one on the tiny model; no model is loaded, nothing
    is read or written."""
    from dataclasses import asdict, replace

    from .engine import build_components
    from .evaluate import EvalContext
    from .plugins import Registry, get_plugin_manager
    from .recipe import recipe_from_table
    from .run import Run

    registry = Registry(get_plugin_manager())
    names = [n for n in registry.names("task") if registry.find("task", n).factory is type(task)]
    if not names:
        raise ValueError(f"{type(task).__name__} is not a registered task: register it with a plugin first")
    options = {k: v for k, v in asdict(task.options).items() if v is not None}
    table = quick_recipe({"type": names[0], **options}, name="scoring")
    table["data"] = {"train": "train.jsonl"}  # never read: the records are given
    recipe = recipe_from_table(table, Path.cwd() / "scoring.toml")
    recipe.bind(registry)
    # the given task as it is (configured by the test, or not); no other component is configured or loaded
    components = replace(build_components(recipe, registry), task=task)
    run = Run(recipe=recipe, registry=registry, out_dir=Path.cwd() / "runs" / "scoring", components=components)
    run.records = {"train": list(train), split: list(records)}
    run.evaluation = EvalContext(run, split, list(records))
    return run
