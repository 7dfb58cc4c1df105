"""Batched generation: a prompt prefix shared by the whole pass is computed once and its cache reused."""

from __future__ import annotations

import pytest
from conftest import SHIPPED_BASE, ner_recipe, ner_records

from loraforge import engine, evaluate
from loraforge.recipe import load_recipe


@pytest.fixture(scope="module")
def run(tmp_path_factory, loraforge_cache):
    import tomli_w

    from loraforge.testing import write_jsonl

    folder = tmp_path_factory.mktemp("generate")
    write_jsonl(folder / "train.jsonl", ner_records(12))
    table = ner_recipe(model=SHIPPED_BASE, data={"train": "train.jsonl"}, evaluation={"split": "none"},
                       output={"dir": str(folder / "run"), "allow_outside": True})
    (folder / "recipe.toml").write_text(tomli_w.dumps(table))
    run = engine.build(load_recipe(folder / "recipe.toml"))
    engine.load_model(run)
    return run


def prompts(run, shots: int) -> list[list[int]]:
    examples = run.train_examples
    return [run.encoder.few_shot_ids(examples[:shots], run.task.format(r).prompt) for r in run.records["train"]]


@pytest.mark.parametrize("shots", [0, 2])
def test_a_shared_prefix_generates_what_each_row_alone_would(run, monkeypatch, shots: int) -> None:
    batch = prompts(run, shots)
    common = evaluate._shared_prefix(run, batch, None)
    assert common is not None and len(common.ids) >= evaluate.MIN_PREFIX_CACHE
    assert all(p[:len(common.ids)] == common.ids for p in batch)
    with_cache = evaluate.generate(run, batch, 16, batch_size=5)
    monkeypatch.setattr(evaluate, "MIN_PREFIX_CACHE", 10**6)  # every row computes its whole prompt
    assert evaluate._shared_prefix(run, batch, None) is None
    assert evaluate.generate(run, batch, 16, batch_size=5) == with_cache
    assert evaluate.generate(run, batch[:1], 16, batch_size=1) == with_cache[:1]  # alone, no padding at all
