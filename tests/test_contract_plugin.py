"""A third-party plugin written from docs/writing-plugins.md alone: its own model loader, adapter, quantizer,
metric and exporter (with the builtin NER task), registered through the hooks and run end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ner_records

from loraforge.components import Adapter, Exporter, Metric, ModelLoader, Quantizer
from loraforge.engine import run_recipe
from loraforge.hookspecs import hookimpl
from loraforge.recipe import load_recipe
from loraforge.schema import option
from loraforge.testing import QUICK_TRAINING

pytestmark = pytest.mark.slow


class FolderLoader(ModelLoader):
    """Any saved transformers folder, named by an absolute path."""

    @dataclass
    class Options:
        folder: str = option(help="A model folder.")

    def describe(self) -> str:
        return f"folder {Path(self.options.folder).name}"

    def load_tokenizer(self, run: Any) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.options.folder)

    def load_model(self, run: Any, **load_kwargs: Any) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.options.folder, **load_kwargs)


class Ia3Adapter(Adapter):
    """PEFT's (IA)³: learned scales on keys, values and the feed-forward input."""

    def describe(self) -> str:
        return "ia3"

    def attach(self, run: Any, model: Any) -> Any:
        from peft import IA3Config, get_peft_model

        return get_peft_model(model, IA3Config(task_type="CAUSAL_LM", target_modules=["k_proj", "v_proj", "down_proj"],
                                               feedforward_modules=["down_proj"]))


class Float32(Quantizer):
    """Weights held in fp32, whatever the checkpoint says."""

    def load_kwargs(self, run: Any) -> dict[str, Any]:
        import torch

        return {"dtype": torch.float32}

    def prepare(self, run: Any, model: Any) -> Any:
        run.summary["prepared_by"] = "float32"
        return model


class AnswerLength(Metric):
    """Mean number of entities predicted against the gold, on the split being scored."""

    def compute(self, run: Any, predictions: Any, references: Any) -> dict[str, Any]:
        return {"predicted": sum(len(p) for p in predictions) / max(len(predictions), 1),
                "gold": sum(len(r) for r in references) / max(len(references), 1),
                "split": run.evaluation.split, "records": len(run.evaluation.records)}


class TrainableNames(Exporter):
    """The names of the trained parameters, one per line."""

    default_dir = "names"

    def export(self, run: Any, target: Path) -> dict[str, Any]:
        names = [n for n, p in run.model.named_parameters() if p.requires_grad]
        (target / "names.txt").write_text("\n".join(names) + "\n")
        return {"parameters": len(names)}


class Plugin:
    @hookimpl
    def register_model_loaders(self, register: Any) -> None:
        register("folder", FolderLoader)

    @hookimpl
    def register_adapters(self, register: Any) -> None:
        register("ia3", Ia3Adapter)

    @hookimpl
    def register_quantizers(self, register: Any) -> None:
        register("float32", Float32)

    @hookimpl
    def register_metrics(self, register: Any) -> None:
        register("answer_length", AnswerLength)

    @hookimpl
    def register_exporters(self, register: Any) -> None:
        register("trainable_names", TrainableNames)


def test_a_plugin_of_every_kind_runs_end_to_end(make_recipe, tiny_model_dir: Path) -> None:
    table = {"name": "contract", "model": {"loader": "folder", "folder": str(tiny_model_dir)},
             "task": {"type": "ner", "labels": ["MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE"]},
             "adapter": {"type": "ia3"}, "quantization": {"type": "float32"},
             "training": {**QUICK_TRAINING, "max_steps": 2, "max_length": 1024},
             "evaluation": {"metrics": ["answer_length", "seqeval"], "max_new_tokens": 8, "max_records": 3},
             "export": [{"type": "trainable_names"}]}
    path = make_recipe(table, data={"train": ner_records(16), "test": ner_records(4, 100)})
    run = run_recipe(load_recipe(path), observers=(Plugin(),))

    assert run.summary["prepared_by"] == "float32" and run.summary["train"]["steps"] == 2
    assert run.components.model.describe() == f"folder {tiny_model_dir.name}"
    scores = run.metrics["test"]
    assert scores["answer_length"]["split"] == "test" and scores["answer_length"]["records"] == 3
    assert "micro" in scores["seqeval"]
    names = (run.out_dir / "names" / "names.txt").read_text().split()
    assert names and all("ia3_l" in n for n in names)
    report = json.loads((run.out_dir / "metrics.json").read_text())
    assert report["model"] == f"folder {tiny_model_dir.name}" and report["exports"][0]["parameters"] == len(names)
