"""`loraforge plan`: the parameter formula against PEFT on meta models, memory and time math by hand, and whole
plans of the shipped recipes (offline), one of them calibrated by real training steps."""

from __future__ import annotations

import argparse
import json
import time
import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model
from rich.console import Console
from transformers import AutoModelForCausalLM, LlamaConfig, Phi3Config, Qwen2Config

from loraforge import cli
from loraforge.devices import DEVICES, resolve_device
from loraforge.errors import RecipeError, RunError
from loraforge.estimates import (Layer, MemoryInputs, activation_bytes, count_params, fit_verdict, knobs,
                                 lora_params, memory_breakdown, meta_shapes, param_rows, quantized_bytes,
                                 simulate_batches, train_flops)
from loraforge.plan import command, configure_parser
from loraforge.testing import QUICK_TRAINING

from conftest import ROOT, ner_recipe, ner_records
from conftest import cli as run_cli


GIB = 2**30

LLAMA_31_8B = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0,
                          max_position_embeddings=131072)
# Qwen2-0.5B shapes: attention biases on q/k/v, tied embeddings, 14 heads over 2 key/value heads
QWEN2 = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                    num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)
# Phi-3-mini shapes: fused qkv_proj and gate_up_proj
PHI3 = Phi3Config(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32064, tie_word_embeddings=False)


def meta_model(config):
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def ours_and_peft(config, **lora):
    ours = count_params(meta_shapes(meta_model(config)), lora["r"], lora["target_modules"],
                        lora.get("modules_to_save", []), lora.get("use_dora", False), lora.get("bias", "none"))
    with warnings.catch_warnings():  # PEFT warns about copying a tied head; the count is what matters here
        warnings.simplefilter("ignore")
        peft = get_peft_model(meta_model(config), LoraConfig(task_type="CAUSAL_LM", **lora))
    return ours, peft.get_nb_trainable_parameters()


def plan_json(capsys, *argv: str) -> dict:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert command(parser.parse_args([*argv, "--json"]), Console()) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------------------- parameters


def test_llama_31_8b_reference_numbers_match_peft():
    ours, (trainable, total) = ours_and_peft(LLAMA_31_8B, r=16, target_modules=["q_proj", "v_proj"])
    assert ours.base == 8_030_261_248
    assert ours.trainable == trainable == 6_815_744
    assert ours.total == total == 8_030_261_248 + 6_815_744


@pytest.mark.parametrize("config,lora", [
    (LLAMA_31_8B, dict(r=8, target_modules="all-linear", use_dora=True)),
    (LLAMA_31_8B, dict(r=16, target_modules=["q_proj", "v_proj"], use_dora=True,
                       modules_to_save=["embed_tokens", "lm_head"])),
    (QWEN2, dict(r=8, target_modules=["q_proj", "k_proj", "v_proj"], bias="lora_only")),
    (QWEN2, dict(r=4, target_modules="all-linear", bias="all")),
    (QWEN2, dict(r=8, target_modules=["q_proj"], modules_to_save=["lm_head"])),  # a tied head, copied untied
    (QWEN2, dict(r=8, target_modules=r".*\.mlp\.(up|down)_proj", use_dora=True)),
    (PHI3, dict(r=16, target_modules=["qkv_proj", "gate_up_proj"], use_dora=True, modules_to_save=["embed_tokens"])),
], ids=["llama-all-linear-dora", "llama-dora-saved", "qwen2-bias-lora-only", "qwen2-all-linear-bias-all",
        "qwen2-tied-head-saved", "qwen2-regex-dora", "phi3-fused-dora-saved"])
def test_formula_matches_peft(config, lora):
    ours, peft = ours_and_peft(config, **lora)
    assert (ours.trainable, ours.total) == peft


def test_dora_magnitudes_and_saved_modules_are_counted():
    shapes = meta_shapes(meta_model(LLAMA_31_8B))
    plain = count_params(shapes, 16, ["q_proj", "v_proj"])
    dora = count_params(shapes, 16, ["q_proj", "v_proj"], use_dora=True)
    assert dora.trainable - plain.trainable == 32 * (4096 + 1024)  # one magnitude per output feature
    saved = count_params(shapes, 16, ["q_proj", "v_proj"], modules_to_save=["lm_head"])
    assert saved.trainable - plain.trainable == 128256 * 4096  # the head, trained in full
    rows = {r["module"]: r for r in param_rows(shapes, 16, ["q_proj", "v_proj"], ["lm_head"], use_dora=True)}
    assert rows["q_proj"]["per_module"] == 16 * (4096 + 4096) + 4096
    assert rows["lm_head (saved in full)"]["lora"] == 128256 * 4096


def test_compression_ratio_of_a_square_projection():
    assert lora_params(Layer("q_proj", "linear", 4096, 4096), 16) == 131_072
    rows = {r["module"]: r for r in param_rows(meta_shapes(meta_model(LLAMA_31_8B)), 16, ["q_proj", "v_proj"])}
    q = rows["q_proj"]
    assert (q["count"], q["d"], q["k"], q["per_module"], q["lora"]) == (32, 4096, 4096, 131_072, 4_194_304)
    assert q["full"] // q["count"] == 16_777_216 and q["ratio"] == 128.0
    assert rows["v_proj"]["ratio"] == pytest.approx(4096 * 1024 / (16 * 5120))


# ----------------------------------------------------------------------------------------------------- memory

SMALL = MemoryInputs(quantizable=100_000, other=20_000, trainable=1_000, weight_bytes=4, bits=4, double_quant=True,
                     optimizer_bytes=8, layers=2, hidden=64, heads=4, vocab=400, batch=8, seq=128,
                     logit_positions=128, act_bytes=2, checkpointing=False, overhead=0.5 * GIB)


def test_memory_components_by_hand():
    parts = memory_breakdown(SMALL)
    assert parts["base weights"] == pytest.approx(100_000 / 2 + 100_000 / 64 + 4 * 100_000 / 16384 + 20_000 * 4)
    assert (parts["adapter weights"], parts["gradients"], parts["optimizer states"]) == (4_000, 4_000, 8_000)
    per_layer = 128 * 8 * 64 * (34 + 5 * 4 * 128 / 64)  # s·b·h·(34 + 5as/h), 16-bit
    assert per_layer == 4_849_664
    assert parts["activations"] == 2 * per_layer
    assert activation_bytes(MemoryInputs(**{**vars(SMALL), "checkpointing": True})) == 2 * 2 * 128 * 8 * 64 + per_layer
    assert activation_bytes(MemoryInputs(**{**vars(SMALL), "act_bytes": 4})) == 4 * per_layer  # fp32 doubles it
    assert parts["logits"] == 8 * 8 * 128 * 400
    assert parts["framework overhead"] == 0.5 * GIB


def test_nf4_storage_per_parameter():
    n = 64 * 256 * 1000
    assert (quantized_bytes(n, 4, True) - n / 2) * 8 / n == pytest.approx(0.127, abs=1e-3)  # double quantization
    assert (quantized_bytes(n, 4, False) - n / 2) * 8 / n == 0.5  # an fp32 absmax per 64 weights
    assert quantized_bytes(n, 8, False) == n


def test_does_not_fit_and_names_the_knob():
    big = MemoryInputs(quantizable=6_979_321_856, other=1_050_939_392, trainable=6_815_744, weight_bytes=2,
                       bits=None, double_quant=False, optimizer_bytes=8, layers=32, hidden=4096, heads=32,
                       vocab=128256, batch=16, seq=512, logit_positions=64, act_bytes=2, checkpointing=False,
                       overhead=0.75 * GIB)
    total = sum(memory_breakdown(big).values())
    assert fit_verdict(total, 24) == "does not fit" and fit_verdict(total, 141) == "fits"
    tried = {" ".join(k["set"]): k["verdict"] for k in knobs(big, 24, grad_accum=1, longest=160)}
    assert tried["training.gradient_checkpointing=true"] == "fits"
    assert tried["training.batch_size=1 training.gradient_accumulation_steps=16"] == "fits"
    assert "quantization.type=qlora quantization.bits=4" in tried
    assert knobs(big, 24, 1, 160)[-1]["verdict"] == "fits"  # all together


# ------------------------------------------------------------------------------------------------------- time


def test_padding_and_flops():
    # grouped by length: [10, 9] and [3, 2] pad to 20 + 6 tokens; the head runs from the earliest target on
    assert simulate_batches([10, 2, 3, 9], [4, 1, 2, 5], 2, group_by_length=True) == (26, 2 * (10 - 3) + 2 * 3, 0, 0)
    # a prefix common to every prompt runs once per batch, up to one before the batch's earliest target
    assert simulate_batches([20] * 4, [12] * 4, 2, group_by_length=False, shared_prefix=10)[2] == 2 * 10
    assert simulate_batches([20] * 4, [9] * 4, 2, group_by_length=False, shared_prefix=10)[2] == 2 * 8
    assert simulate_batches([20] * 4, [12] * 4, 2, group_by_length=False, shared_prefix=5)[2] == 0  # too short
    # a shared batch computes logits, and its last layer's MLP, only where a target token follows
    epoch = simulate_batches([20] * 4, [12] * 4, 2, group_by_length=False, shared_prefix=10)
    assert epoch.head == 2 * (8 + 8)  # not the tail from one before the first target: 2 * 2 * 9
    assert epoch.last_layer_skipped == 2 * (10 + 2 * 10 - 16)
    n = 1_000_000
    assert train_flops(1, 0, n, 0, 0, 0, 0.0, checkpointing=False) == 4 * n  # LoRA: no weight gradients
    assert train_flops(1, 0, n, 0, 0, 0, 0.0, checkpointing=True) == 6 * n  # one more forward
    assert train_flops(1, 1, 0, n, 0, 0, 0.0, False, head_trained=True) == 6 * n


def test_devices():
    assert (DEVICES["a100-40gb"].memory_gib, DEVICES["a100-40gb"].tflops) == (40, 312)
    assert (DEVICES["h200"].memory_gib, DEVICES["h200"].tflops) == (141, 989)
    assert resolve_device("48:200").memory_gib == 48 and resolve_device("48:200").tflops == 200
    assert resolve_device("24").tflops is None
    with pytest.raises(RecipeError, match="did you mean 'a100-40gb'"):
        resolve_device("a100-40")


# -------------------------------------------------------------------------------------------------- whole plans


def test_reference_recipe_plans_offline(capsys):
    plan = plan_json(capsys, str(ROOT / "recipes" / "medical_ner.toml"), "--device", "a100-40gb")
    params = plan["params"]
    assert params["trainable"] == params["peft_trainable"] == 6_815_744
    assert params["base"] == 8_030_261_248 and params["matches_peft"]
    assert plan["memory"]["bits"] == 4 and plan["memory"]["verdict"] == "fits"
    low, high = plan["predicted_train_seconds"]
    assert 0 < low < high
    assert plan["timeline"]["data_prep_weeks"] > 0 and "calibrated_train_seconds" not in plan


def test_reference_recipe_tables(capsys):
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    console = Console(record=True, width=200)
    command(parser.parse_args([str(ROOT / "recipes" / "medical_ner.toml"), "--device", "h100-80gb",
                               "--sweep-points", "4"]), console)
    text = console.export_text()
    for expected in ("q_proj", "4,096 × 4,096", "131,072", "128.0×", "6,815,744", "✓", "base weights", "fits",
                     "predicted", "data preparation", "ASSUMED", "4 sweep point(s)"):
        assert expected in text


def test_unquantized_8b_on_a_small_gpu_names_the_fix(capsys):
    plan = plan_json(capsys, str(ROOT / "recipes" / "medical_ner.toml"), "--device", "rtx4090",
                     "--set", "quantization.type=none", "--set", "training.gradient_checkpointing=false",
                     "--set", "training.batch_size=16")
    memory = plan["memory"]
    assert memory["verdict"] == "does not fit" and memory["bits"] is None
    assert any(k["set"] == ["training.gradient_checkpointing=true"] and k["verdict"] == "fits"
               for k in memory["knobs"])


def test_user_errors(capsys):
    recipe = str(ROOT / "recipes" / "medical_ner.toml")
    with pytest.raises(RecipeError, match="unknown device"):
        plan_json(capsys, recipe, "--device", "tpu")
    with pytest.raises(RecipeError, match="match no module"):
        plan_json(capsys, recipe, "--set", 'adapter.target_modules=["qproj"]')
    with pytest.raises(RunError, match="no config"):
        plan_json(capsys, recipe, "--set", "model.name=./no-such-model")


@pytest.mark.slow
def test_tiny_recipe_calibrates_in_seconds(capsys, loraforge_cache, tmp_path):
    shrink = ["data.max_records=64", "training.batch_size=8",  # the shipped base model is small already
              f"output.dir={json.dumps(str(tmp_path))}", "output.allow_outside=true"]  # plan.json goes there
    began = time.perf_counter()
    plan = plan_json(capsys, str(ROOT / "recipes" / "medical_ner_tiny.toml"), "--calibrate", "--calibrate-steps", "3",
                     *[a for s in shrink for a in ("--set", s)])
    assert time.perf_counter() - began < 60
    assert plan["params"]["matches_peft"]
    assert "fp32 matmul" in plan["device"]["note"]  # the recipe trains in fp32: that peak, not bf16's
    assert plan["tokens"]["source"].startswith("tokenized") and plan["tokens"]["records"] == 64
    # the instruction template every prompt starts with runs once per batch of 8
    tokens = plan["tokens"]
    assert 0.2 * tokens["per_epoch"] < tokens["shared_per_epoch"] < tokens["per_epoch"]
    assert plan["calibration"]["steps"] == 2 and plan["calibrated_train_seconds"] > 0
    real = plan["calibration"]["real_model_params"]  # PEFT's count on the model calibration trained
    assert (real["trainable"], real["total"]) == (plan["params"]["trainable"], plan["params"]["total"])
    assert plan["timeline"]["train_seconds"] == [plan["calibrated_train_seconds"]] * 2
    assert len(plan["predicted_train_seconds"]) == 2


def test_a_run_puts_the_time_planned_for_it_beside_its_own(capsys, make_recipe):
    from loraforge.engine import run_recipe
    from loraforge.recipe import load_recipe

    table = ner_recipe(training={"max_steps": 2, "batch_size": 4, "eval_loss": True}, evaluation={"split": "none"})
    data = {"train": ner_records(16), "validation": ner_records(4, 50)}
    planned = make_recipe({**table, "output": {"dir": "planned"}}, name="planned.toml", data=data)
    plan = plan_json(capsys, str(planned), "--device", "cpu")
    metrics = json.loads((run_recipe(load_recipe(planned)).out_dir / "metrics.json").read_text())
    assert metrics["plan"]["predicted_train_s"] == plan["predicted_train_seconds"]
    # the plan predicts training steps: the validation loss computed at the end is not part of it
    train = metrics["train"]
    assert train["validation_s"] > 0 and train["eval_loss"] is not None
    assert metrics["plan"]["actual_train_s"] == pytest.approx(train["runtime_s"] - train["validation_s"], abs=0.011)
    assert metrics["plan"]["actual_train_s"] > 0
    # a plan made with other --set values is for another recipe: not compared, and the run says why
    other = make_recipe({**table, "output": {"dir": "other"}}, name="other.toml", data=data)
    plan_json(capsys, str(other), "--device", "cpu", "--set", "training.max_steps=3")
    metrics = json.loads((run_recipe(load_recipe(other)).out_dir / "metrics.json").read_text())
    assert "plan" not in metrics
    assert any("planned for a different recipe" in w for w in metrics["warnings"])


def test_local_hf_folder_plans_with_its_tokenizer(capsys, make_recipe, tiny_model_dir):
    recipe = make_recipe(ner_recipe(model={"loader": "hf", "name": str(tiny_model_dir)},
                                    training={**QUICK_TRAINING, "long_records": "skip"}),
                         data={"train": ner_records(24), "test": ner_records(4, offset=24)})
    plan = plan_json(capsys, str(recipe), "--device", "l4")
    assert plan["config"] == "model loader" and plan["tokens"]["source"].startswith("tokenized")
    assert plan["params"]["matches_peft"]
    assert plan["tokens"]["records"] + plan["tokens"]["dropped"] == 24  # a 400-token BPE makes long records
    assert plan["memory"]["weight_bytes"] == 4  # dtype auto: the checkpoint's float32


def test_cli_subprocess(cache_env):
    if "plan" not in cli.COMMANDS:
        pytest.skip("`loraforge plan` is not wired into the CLI yet")
    done = run_cli("plan", str(ROOT / "recipes" / "medical_ner.toml"), "--device", "a100-40gb", "--json",
                   env=cache_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"]["trainable"] == 6_815_744
    bad = run_cli("plan", str(ROOT / "recipes" / "medical_ner.toml"), "--device", "tpu", env=cache_env)
    assert bad.returncode == 2 and "unknown device" in bad.stderr
