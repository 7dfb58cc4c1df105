"""QLoRA on the CPU (bitsandbytes 4-bit and 8-bit), precision selection, and the unsupported-device message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import cli, ner_recipe, ner_records

from loraforge.engine import run_recipe
from loraforge.evaluate import EvalContext
from loraforge.recipe import load_recipe

pytestmark = pytest.mark.slow


def logits(model, ids: list[int]) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids], device=next(model.parameters()).device)).logits.float().cpu()


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, loraforge_cache):
    import tomli_w

    folder = tmp_path_factory.mktemp("qlora")
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ner_records(32)))
    table = ner_recipe(quantization={"type": "qlora", "bits": 4, "quant_type": "nf4", "double_quant": True},
                       training={"max_steps": 4, "batch_size": 8, "learning_rate": 5e-3, "logging_steps": 1,
                                 "precision": "fp32", "gradient_checkpointing": True},  # as the reference recipe
                       evaluation={"split": "none"}, export=[{"type": "adapter"}, {"type": "merged"}])
    table["data"] = {"train": "train.jsonl"}
    table["output"] = {"dir": str(folder / "run"), "allow_outside": True}
    (folder / "r.toml").write_text(tomli_w.dumps(table))
    return run_recipe(load_recipe(folder / "r.toml"))


def test_qlora_trains_a_4bit_base(qlora_run) -> None:
    kinds = {type(m).__name__ for name, m in qlora_run.model.named_modules() if name.endswith("base_layer")}
    assert kinds == {"Linear4bit"}
    assert qlora_run.summary["train"]["steps"] == 4
    # the 4-bit, checkpointed layers run the shared prefix too
    assert qlora_run.summary["train"]["shared_prefix_fraction"] > 0
    # the trained adapter makes its training targets likelier than the base it started from (B starts at zero)
    scored = EvalContext(qlora_run, "train", qlora_run.records["train"][:8])
    assert scored.target_nll(adapted=True)[0] < scored.target_nll(adapted=False)[0]


def test_qlora_adapter_reloads_onto_a_4bit_base(qlora_run) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    adapter = qlora_run.out_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(
        config["base_model_name_or_path"], device_map={"": "cpu"},
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32))
    reloaded = PeftModel.from_pretrained(base, adapter)
    ids = qlora_run.encoder.prompt_ids(qlora_run.train_examples[0].prompt)
    assert torch.allclose(logits(reloaded, ids), logits(qlora_run.model, ids), atol=1e-3)


def test_qlora_merges_into_a_dequantized_base_and_reports_both_differences(qlora_run) -> None:
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(qlora_run.out_dir / "merged")
    assert not any(type(m).__name__.startswith("Linear4bit") for m in merged.modules())
    assert merged.dtype == torch.float32
    report = [e for e in qlora_run.exports if e["type"] == "merged"][0]
    assert report["max_logit_diff"] < 1e-3  # the merge itself is exact
    assert 0 < report["max_logit_diff_vs_trained"] < 5  # the 4-bit base was approximate: reported, not hidden


def test_8bit_quantization_trains(make_recipe) -> None:
    path = make_recipe(ner_recipe(quantization={"type": "qlora", "bits": 8},
                                  training={"max_steps": 2, "batch_size": 4, "precision": "fp32"},
                                  evaluation={"split": "none"}), data={"train": ner_records(8)})
    run = run_recipe(load_recipe(path))
    assert {type(m).__name__ for n, m in run.model.named_modules() if n.endswith("base_layer")} == {"Linear8bitLt"}
    assert (run.out_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_bf16_precision_on_the_cpu(make_recipe) -> None:
    path = make_recipe(ner_recipe(training={"max_steps": 2, "batch_size": 4, "precision": "bf16"},
                                  evaluation={"split": "none"}), data={"train": ner_records(8)})
    run = run_recipe(load_recipe(path))
    assert run.summary["precision"] == "bf16"
    assert run.summary["train"]["steps"] == 2


def test_fp16_on_a_cpu_is_a_clear_error(make_recipe, cache_env) -> None:
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on a GPU")
    path = make_recipe(ner_recipe(training={"precision": "fp16"}, evaluation={"split": "none"}),
                       data={"train": ner_records(4)})
    done = cli("run", str(path), env=cache_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert 'training.precision = "fp16" needs a CUDA GPU' in done.stderr
    assert not (path.parent / "run" / "adapter").exists()


def test_qlora_without_a_working_bitsandbytes_says_what_to_change(tmp_path: Path, make_recipe, cache_env) -> None:
    """A machine whose bitsandbytes cannot load (no backend for this device) gets one message and exit 2."""
    broken = tmp_path / "site" / "bitsandbytes"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("no backend for this device")\n')
    path = make_recipe(ner_recipe(quantization={"type": "qlora", "bits": 4}, evaluation={"split": "none"}),
                       data={"train": ner_records(4)})
    done = cli("run", str(path), env={**cache_env, "PYTHONPATH": str(tmp_path / "site")})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    message = " ".join(done.stderr.split())
    assert "4-bit quantization cannot run on this machine's cpu" in message
    assert "--set quantization.type=none" in message
    assert not (path.parent / "run").exists()
