"""Real short training runs on the tiny model: LoRA, DoRA, modules_to_save, exports reloaded with plain PEFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ner_recipe, ner_records
from safetensors import safe_open

from loraforge.engine import run_recipe
from loraforge.errors import RecipeError, RunError
from loraforge.recipe import load_recipe

pytestmark = pytest.mark.slow


def logits(model, ids: list[int]) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits.float()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, loraforge_cache):
    """One LoRA run with both exports, shared by the tests that inspect it."""
    import tomli_w

    folder = tmp_path_factory.mktemp("lora_run")
    for split, (n, off) in {"train": (48, 0), "test": (8, 100)}.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ner_records(n, off)))
    table = ner_recipe(export=[{"type": "adapter"}, {"type": "merged"}],
                       adapter={"type": "lora", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
                                "modules_to_save": ["lm_head"]})
    table["data"] = {"train": "train.jsonl", "test": "test.jsonl"}
    table["output"] = {"dir": str(folder / "run"), "allow_outside": True}
    (folder / "r.toml").write_text(tomli_w.dumps(table))
    return run_recipe(load_recipe(folder / "r.toml"))


def test_run_writes_metrics_recipe_log_and_exports(lora_run) -> None:
    out = lora_run.out_dir
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 6  # 48 records / batch 8, one epoch
    assert metrics["train"]["tokens_per_s"] > 0
    seqeval = metrics["metrics"]["test"]["seqeval"]
    assert set(seqeval["per_class"]) == {"MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE"}
    assert 0.0 <= seqeval["micro"]["f1"] <= 1.0
    # every test mention is split by whether its text is an entity in train; the two add up to the whole
    seen, unseen = seqeval["mentions"]["seen"], seqeval["mentions"]["unseen"]
    assert seen["support"] + unseen["support"] == sum(c["support"] for c in seqeval["per_class"].values()) > 0
    assert seen["support"] > 0
    assert metrics["params"]["trainable"] < metrics["params"]["total"]
    assert (out / "recipe.toml").is_file() and (out / "predictions-test.jsonl").is_file()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert {e["type"] for e in metrics["exports"]} == {"adapter", "merged"}
    assert not list(out.glob(".*partial"))


def test_adapter_reloads_with_plain_peft_and_matches_training(lora_run) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = lora_run.out_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and set(config["target_modules"]) == {"q_proj", "v_proj"}
    with safe_open(adapter / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert any("lora_A" in k for k in keys) and any("lm_head" in k for k in keys)  # modules_to_save saved
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    reloaded = PeftModel.from_pretrained(base, adapter)
    ids = lora_run.encoder.prompt_ids(lora_run.train_examples[0].prompt)
    assert torch.allclose(logits(reloaded, ids), logits(lora_run.model, ids), atol=1e-5)


def test_merged_model_equals_base_plus_adapter(lora_run) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = lora_run.out_dir / "merged"
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert AutoTokenizer.from_pretrained(merged_dir).eos_token == lora_run.tokenizer.eos_token
    ids = lora_run.encoder.prompt_ids(lora_run.train_examples[1].prompt)
    diff = (logits(merged, ids) - logits(lora_run.model, ids)).abs().max().item()
    assert diff < 1e-4
    reported = [e for e in lora_run.exports if e["type"] == "merged"][0]
    assert reported["max_logit_diff"] < 1e-4 and reported["checked_records"] == 4


def test_merge_past_tolerance_fails_and_writes_nothing(make_recipe) -> None:
    path = make_recipe(ner_recipe(export=[{"type": "merged", "tolerance": 1e-30}],
                                  training={"max_steps": 2, "batch_size": 4, "learning_rate": 0.05}),
                       data={"train": ner_records(8), "test": ner_records(2, 50)})
    recipe = load_recipe(path)
    with pytest.raises(RunError, match="more than the tolerance 1e-30; nothing was written"):
        run_recipe(recipe)
    out = Path(recipe.output.dir)
    assert not (out / "merged").exists() and not list(out.glob(".merged*"))
    assert not (out / "metrics.json").exists()


def test_dora_trains_and_saves_magnitudes(make_recipe) -> None:
    path = make_recipe(ner_recipe(adapter={"type": "dora", "r": 4, "target_modules": ["q_proj", "v_proj"]},
                                  training={"max_steps": 3, "batch_size": 4, "logging_steps": 1}),
                       data={"train": ner_records(12), "test": ner_records(2, 50)})
    run = run_recipe(load_recipe(path))
    adapter = run.out_dir / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["use_dora"] is True
    with safe_open(adapter / "adapter_model.safetensors", "pt") as f:
        assert any("lora_magnitude_vector" in k for k in f.keys())
    assert run.summary["train"]["steps"] == 3


def test_target_modules_that_match_nothing_list_the_real_ones(make_recipe) -> None:
    path = make_recipe(ner_recipe(adapter={"type": "lora", "target_modules": ["query", "v_proj"]},
                                  evaluation={"split": "none"}),
                       data={"train": ner_records(4)})
    with pytest.raises(RecipeError) as exc:
        run_recipe(load_recipe(path))
    text = exc.value.render()
    assert "'query' match no module of this model" in text
    assert "q_proj" in text and "down_proj" in text and "adapter.target_modules" in text


def test_hf_loader_reads_a_local_folder(make_recipe, tiny_model_dir) -> None:
    path = make_recipe(ner_recipe(model={"loader": "hf", "name": str(tiny_model_dir)},
                                  training={"max_steps": 1, "batch_size": 2}, evaluation={"split": "none"}),
                       data={"train": ner_records(4)})
    run = run_recipe(load_recipe(path))
    assert run.components.model.describe() == str(tiny_model_dir)
    assert (run.out_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_conll_input_trains(tmp_path, make_recipe) -> None:
    conll = tmp_path / "train.conll"
    conll.write_text("Take O\nmetformin B-MEDICATION\n500 B-DOSAGE\nmg I-DOSAGE\n\n"
                     "History O\nof O\nasthma B-CONDITION\n.\tO\n\n" * 4)
    path = make_recipe(ner_recipe(training={"max_steps": 1, "batch_size": 2}, evaluation={"split": "none"},
                                  data={"train": str(conll)}))
    run = run_recipe(load_recipe(path))
    assert len(run.records["train"]) == 8
    assert run.train_examples[0].target == "MEDICATION: metformin\nDOSAGE: 500 mg"


def test_length_grouped_sampler_reads_lengths_from_a_list(make_recipe) -> None:
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from loraforge import engine, train

    path = make_recipe(ner_recipe(training={"batch_size": 4}, evaluation={"split": "none"}),
                       data={"train": ner_records(40)})
    run = engine.build(load_recipe(path))
    engine.load_model(run)
    train_set = engine.tokenize(run)["train"]
    sampler = train.build_trainer(run, train.training_arguments(run, False), train_set)._get_train_sampler()
    # the same order as the Trainer's own sampler over the dataset column, without one read per row
    assert type(sampler.lengths) is list and sampler.lengths == list(train_set["length"])
    stock = LengthGroupedSampler(4, lengths=train_set["length"])
    torch.manual_seed(3)
    ours = list(sampler)
    torch.manual_seed(3)
    assert ours == list(stock) and len(set(ours)) == 40
