"""A table of broken recipes and data files run through the real CLI: one clear message, exit 2, nothing written.

Each case names what the message must contain: the file, the key or line, and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, cli, ner_recipe, ner_records, write_recipe

OK = {"text": "Take aspirin 81 mg daily.", "entities": [{"start": 5, "end": 12, "label": "MEDICATION"},
                                                       {"start": 13, "end": 18, "label": "DOSAGE"}]}


def record(*entities: tuple[int, int, str], text: str = OK["text"]) -> dict:
    return {"text": text, "entities": [{"start": s, "end": e, "label": label} for s, e, label in entities]}


CASES = {
    # recipe syntax and schema
    "malformed toml": (dict(raw='name = "x"\n[adapter\nr = 4\n'), ["invalid TOML", "line 2"]),
    "unknown key": (dict(set=["training.learnig_rate=0.1"]), ["training.learnig_rate: unknown key",
                                                              "did you mean 'learning_rate'?"]),
    "unknown section": (dict(set=["trainig.epochs=1"]), ["trainig: unknown section", "did you mean 'training'?"]),
    "wrong type": (dict(set=["adapter.r=sixteen"]), ["adapter.r: must be an integer, got string 'sixteen'"]),
    "wrong list type": (dict(set=["adapter.target_modules=[1, 2]"]), ["adapter.target_modules"]),
    "rank out of range": (dict(set=["adapter.r=-4"]), ["adapter.r: must be >= 1, got -4"]),
    "alpha out of range": (dict(set=["adapter.lora_alpha=0"]), ["adapter.lora_alpha: must be > 0"]),
    "dropout out of range": (dict(set=["adapter.lora_dropout=1.5"]), ["adapter.lora_dropout: must be < 1"]),
    "negative dropout": (dict(set=["adapter.lora_dropout=-0.1"]), ["adapter.lora_dropout: must be >= 0"]),
    "bias choice": (dict(set=["adapter.bias=some"]), ["adapter.bias: must be one of 'none', 'all', 'lora_only'"]),
    "alias given twice": (dict(set=["adapter.alpha=8", "adapter.lora_alpha=16"]), ["given twice"]),
    "unknown task": (dict(set=["task.type=nre"]), ["task 'nre' is provided by no installed plugin",
                                                   "did you mean 'ner'?"]),
    "unknown adapter": (dict(set=["adapter.type=lorra"]), ["adapter 'lorra'", "did you mean 'lora'?"]),
    "unknown quantizer": (dict(set=["quantization.type=qlora4"]), ["quantizer 'qlora4'"]),
    "unknown exporter": (dict(set=['export=[{type="merge"}]']), ["exporter 'merge'", "did you mean 'merged'?"]),
    "unknown metric": (dict(set=['evaluation.metrics=["seqevl"]']), ["metric 'seqevl'", "did you mean 'seqeval'?"]),
    "unknown model loader": (dict(set=["model.loader=hff"]), ["model loader 'hff'", "did you mean 'hf'?"]),
    "empty label list": (dict(set=["task.labels=[]"]), ["task.labels"]),
    "malformed set": (dict(set=["adapter.r"]), ["expected section.key=value"]),
    "missing package": (dict(set=['requires=["loraforge-nonexistent>=1"]']),
                        ["pip install 'loraforge-nonexistent>=1'"]),
    "extends missing file": (dict(raw='extends = "nowhere.toml"\n'), ["extends 'nowhere.toml', which does not exist"]),
    "extends unknown package": (dict(raw='extends = "no_such_pkg:recipes/x.toml"\n'),
                                ["package 'no_such_pkg', which is not installed"]),
    # data
    "missing data file": (dict(set=["data.train=nowhere.jsonl"]), ["train data file not found", "nowhere.jsonl"]),
    "malformed jsonl": (dict(lines=[json.dumps(OK), '{"text": broken']), ["train.jsonl: line 2", "not valid JSON"]),
    "jsonl line not an object": (dict(lines=[json.dumps(OK), "[1, 2]"]), ["line 2", "expected a JSON object"]),
    "empty dataset": (dict(lines=[]), ["the train split has no records"]),
    "offsets outside text": (dict(records=[OK, record((5, 40, "MEDICATION"))]), ["train.jsonl: line 2", "25"]),
    "start after end": (dict(records=[record((12, 5, "MEDICATION"))]), ["train.jsonl: line 1"]),
    "mention does not match text": (dict(records=[record((5, 12, "MEDICATION"), text=OK["text"]) | {
        "entities": [{"start": 5, "end": 12, "label": "MEDICATION", "text": "ibuprofen"}]}]),
                                    ["train.jsonl: line 1", "ibuprofen"]),
    "overlapping entities": (dict(records=[record((5, 12, "MEDICATION"), (8, 15, "DOSAGE"))]),
                             ["train.jsonl: line 1", "overlap"]),
    "undeclared label": (dict(records=[record((5, 12, "DRUG"))]), ["train.jsonl: line 1", "DRUG", "task.labels"]),
    "missing text field": (dict(records=[{"entities": []}]), ["train.jsonl: line 1", "text"]),
    "unknown file format": (dict(set=["data.format=parquet"]), ["cannot read format 'parquet'"]),
    "evaluation split without data": (dict(set=["evaluation.split=test"]), ["evaluation split 'test' has no data"]),
    "data folder as jsonl": (dict(files={"docs/a.jsonl": ""}, set=["data.train={tmp}/docs", "data.format=jsonl"]),
                             ["data.train", "is a folder; jsonl records are read from one file"]),
    "data folder without .ann files": (dict(files={"docs/a.md": ""}, set=["data.train={tmp}/docs"]),
                                       ["docs: data.train: cannot read a folder without .ann files", "brat folder"]),
    "broken brat line": (dict(files={"brat/a.txt": "Took aspirin.\n", "brat/a.ann": "T1\tDrug 5 x\taspirin\n"},
                              set=["data.train={tmp}/brat"]), ["a.ann: line 1", "T1<TAB>Label 10 17<TAB>mention"]),
    "brat text without its .ann": (dict(files={"brat/a.txt": "x\n", "brat/b.txt": "y\n", "brat/b.ann": ""},
                                        set=["data.train={tmp}/brat"]), ["a.ann", "the annotations of a.txt"]),
    "label map to an undeclared label": (dict(set=['task.label_map={Drug="DRUG"}']),
                                         ["task.label_map.Drug: maps to 'DRUG', which is not in `labels`"]),
    "too many records held out": (dict(set=["data.validation_split=0.9"], records=[OK]),
                                  ["validation_split 0.9 leaves no training records"]),
    # run-time
    "missing model folder": (dict(set=["model={loader='hf', name='./no/such/model'}"], command="run"),
                             ["model folder './no/such/model' does not exist"]),
    "target modules match nothing": (dict(set=["adapter.target_modules=['query']"], command="run"),
                                     ["'query' match no module of this model", "q_proj"]),
    "prompt longer than max_length": (dict(set=["training.max_length=10"], command="run"),
                                      ["longer than training.max_length (10)", "train.jsonl: line 1"]),
    "fp16 on a cpu": (dict(set=["training.precision=fp16"], command="run"), ['"fp16" needs a CUDA GPU']),
    "record longer than max_length": (dict(set=["training.max_length=24"], command="run"),
                                      ["longer than training.max_length (24)", "train.jsonl: line 1",
                                       'training.long_records = "skip"']),
    "missing gguf file": (dict(set=["model={loader='hf', name='models/none.gguf'}"], command="run"),
                          ["GGUF file 'models/none.gguf' does not exist", "model.name"]),
    "gguf in a package not installed": (dict(set=["model={loader='hf', name='no_such_pkg:m.gguf'}"], command="run"),
                                        ["names package 'no_such_pkg', which is not installed",
                                         "pip install no-such-pkg"]),
    "output outside working tree": (dict(set=["output.allow_outside=false"], command="run"),
                                    ["is outside the working directory", "allow_outside = true"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(tmp_path: Path, case: str, cache_env: dict) -> None:
    spec, expected = CASES[case]
    path = write_recipe(tmp_path, ner_recipe(), spec.get("records"), spec.get("raw"))
    if "lines" in spec:
        (tmp_path / "train.jsonl").write_text("".join(line + "\n" for line in spec["lines"]))
    for name, text in spec.get("files", {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    args = [spec.get("command", "validate"), str(path)]
    for value in spec.get("set", []):
        args += ["--set", value.replace("{tmp}", str(tmp_path))]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    done = cli(*args, cwd=ROOT, env=cache_env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    message = " ".join(done.stderr.split())
    for text in expected:
        assert text in message, message
    assert str(tmp_path) in message or "--set" in message or "recipe" in message  # names the recipe or data file
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, "nothing may be written on a user error"


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(make_recipe, cache_env) -> None:
    path = make_recipe(ner_recipe(training={"max_steps": 30, "batch_size": 4, "learning_rate": 1e38, "optimizer": "sgd",
                                            "warmup_ratio": 0.9, "save_steps": 1, "save_total_limit": 50,
                                            "logging_steps": 1, "max_grad_norm": 0.0, "eval_loss": False},
                                  adapter={"type": "lora", "r": 4, "target_modules": ["lm_head"]},
                                  evaluation={"split": "none"}),
                       data={"train": ner_records(16)})
    done = cli("run", str(path), env=cache_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    message = " ".join(done.stderr.split())
    assert "the training loss became non-finite at step" in message and "--restart" in message
    step = int(message.split("non-finite at step ")[1].split(";")[0])
    kept = sorted(int(p.name.split("-")[1]) for p in (path.parent / "run" / "checkpoints").glob("checkpoint-*"))
    assert kept and all(s < step - 1 for s in kept)  # the weights that gave the bad loss are gone
    assert f"the last good checkpoint, checkpoint-{kept[-1]}, is kept" in message
    assert not (path.parent / "run" / "adapter").exists()


def test_pickle_weights_are_refused_unless_allowed(tmp_path: Path, tiny_model_dir: Path, cache_env: dict) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    weights = folder / "model.safetensors"
    torch.save(load_file(weights), folder / "pytorch_model.bin")
    weights.unlink()
    path = write_recipe(tmp_path, ner_recipe(model={"loader": "hf", "name": str(folder)}))
    done = cli("run", str(path), env=cache_env)
    assert done.returncode == 2 and "holds only pickle weights" in done.stderr and "allow_pickle" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_trust_remote_code_warns_with_the_model_name(tmp_path: Path, tiny_model_dir: Path, cache_env: dict) -> None:
    path = write_recipe(tmp_path, ner_recipe(model={"loader": "hf", "name": str(tiny_model_dir),
                                                    "trust_remote_code": True},
                                             training={"max_steps": 1, "batch_size": 2}))
    done = cli("run", str(path), env={**cache_env, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert f"trust_remote_code is on: modelling code shipped with '{tiny_model_dir}' will run" in " ".join(
        done.stdout.split())


def test_default_is_no_remote_code(tmp_path: Path) -> None:
    from loraforge.builtin.models import HfLoader

    assert HfLoader.Options(name="x").trust_remote_code is False
    assert HfLoader.Options(name="x").allow_pickle is False
