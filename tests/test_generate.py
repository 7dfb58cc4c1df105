"""Batched generation: a prompt prefix shared by the whole pass is computed once, held once and read once per step
for all rows; each row ends at its own budget or where its task says; budgets follow the prompt's length."""

from __future__ import annotations

import pytest
import torch
from conftest import SHIPPED_BASE, SMOL_RECIPE, ner_recipe, ner_records

from loraforge import engine, evaluate
from loraforge.recipe import load_recipe
from loraforge.testing import QUICK_TRAINING


@pytest.fixture(scope="module")
def run(tmp_path_factory, loraforge_cache):
    import tomli_w

    from loraforge.testing import write_jsonl

    folder = tmp_path_factory.mktemp("generate")
    write_jsonl(folder / "train.jsonl", ner_records(12))
    table = ner_recipe(model=SHIPPED_BASE, data={"train": "train.jsonl"}, evaluation={"split": "none"},
                       training={**QUICK_TRAINING, "precision": "fp32"},  # exact: the same arithmetic either way
                       output={"dir": str(folder / "run"), "allow_outside": True})
    (folder / "recipe.toml").write_text(tomli_w.dumps(table))
    run = engine.build(load_recipe(folder / "recipe.toml"))
    engine.load_model(run)
    return run


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory, smol_folder):
    """SmolLM2 (grouped-query attention: 9 query heads on 3 key heads, 30 layers) in fp32, on shipped records."""
    out = tmp_path_factory.mktemp("smol-generate")
    recipe = load_recipe(SMOL_RECIPE, ["training.precision=fp32", "data.max_records=6", f"output.dir={out}",
                                       "output.allow_outside=true"])
    with engine.located(recipe):
        run = engine.build(recipe)
        engine.load_model(run)
    return run


def prompts(run, shots: int) -> list[list[int]]:
    examples = run.train_examples
    return [run.encoder.few_shot_ids(examples[:shots], run.task.format(r).prompt) for r in run.records["train"]]


@pytest.mark.parametrize("model,shots", [("tiny", 0), ("tiny", 2), ("smol", 2)])
def test_a_shared_prefix_generates_what_each_row_alone_would(request, monkeypatch, model: str, shots: int) -> None:
    run = request.getfixturevalue("run" if model == "tiny" else "smol_run")
    batch = prompts(run, shots)
    common = evaluate._shared_prefix(run, batch, None)
    assert common is not None and len(common.ids) >= evaluate.MIN_PREFIX_CACHE
    assert common.shared  # the prefix is held once and read once per step for all rows
    assert all(p[:len(common.ids)] == common.ids for p in batch)
    with_cache = evaluate.generate(run, batch, 16, batch_size=5)
    monkeypatch.setattr(evaluate, "MIN_PREFIX_CACHE", 10**6)  # every row computes its whole prompt
    assert evaluate._shared_prefix(run, batch, None) is None
    assert evaluate.generate(run, batch, 16, batch_size=5) == with_cache
    assert evaluate.generate(run, batch[:1], 16, batch_size=1) == with_cache[:1]  # alone, no padding at all


def test_each_row_ends_at_its_own_budget_whatever_its_batch(run) -> None:
    batch = prompts(run, 2)[:5]
    budgets = [1, 4, 16, 2, 8]
    together = evaluate.generate(run, batch, budgets, batch_size=5)
    assert together == [evaluate.generate(run, [p], b, batch_size=1)[0] for p, b in zip(batch, budgets)]
    assert len(run.tokenizer(together[0], add_special_tokens=False)["input_ids"]) <= 1


def test_a_row_stops_where_its_task_says_its_answer_is_over(run) -> None:
    tok = run.tokenizer
    line, other = (tok(t, add_special_tokens=False)["input_ids"] for t in ("CONDITION: fever\n", "DOSAGE: 5 mg\n"))
    rows = [line * 3, line + other + line]  # the same line three times in a row; lines that alternate
    width = max(map(len, rows))
    ids = torch.tensor([[tok.pad_token_id] * 2 + r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    stop = evaluate.RowStop(tok, 2, [1000, 1000], run.task)
    assert stop(ids, None).tolist() == [True, False]
    assert evaluate.RowStop(tok, 2, [width, 1000], run.task)(ids, None).tolist() == [True, False]  # budget spent


def test_a_record_gets_the_budget_of_training_answers_to_prompts_no_longer_than_its_own(run) -> None:
    encoder, task = run.encoder, run.task
    batch = prompts(run, 0)
    budgets = evaluate.answer_budgets(run, batch)
    examples = sorted(run.train_examples, key=lambda e: len(encoder.prompt_ids(e.prompt)))
    cap = task.max_new_tokens(examples, encoder.count)
    for prompt, budget in zip(batch, budgets):
        shorter = [e for e in examples if len(encoder.prompt_ids(e.prompt)) <= len(prompt)] or examples[:1]
        assert budget == min(cap, task.max_new_tokens(shorter, encoder.count))
    by_length = [b for _, b in sorted(zip(map(len, batch), budgets))]
    assert by_length == sorted(by_length) and by_length[-1] == cap and by_length[0] < cap
