"""Constrained decoding: token bytes for real tokenizers, the NER inline automaton, and generation under it."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from conftest import LABELS, ROOT, ner_recipe, ner_records

from loraforge.builtin.tasks.ner import NerTask
from loraforge.builtin.tasks.ner_answers import MarkedCopy, normalize
from loraforge.components import Record
from loraforge.constraints import ConstrainedGreedy, Vocabulary, vocabulary_bytes

MARKS = re.compile(r"\[[A-Z]+ |\[[A-Z]*$|\]")  # marks, and one cut short at the end


def records(n: int = 200) -> list[Record]:
    lines = (ROOT / "data" / "medical_ner" / "test.jsonl").read_text().splitlines()[:n]
    return [Record(json.loads(line), "test.jsonl", i + 1) for i, line in enumerate(lines)]


@pytest.fixture(scope="module")
def inline() -> NerTask:
    return NerTask(NerTask.Options(labels=list(LABELS), output="inline"))


# ------------------------------------------------------------------------------------------------ vocabulary
@pytest.fixture(scope="module")
def tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ROOT / "data" / "tiny_base" / "model")


def test_byte_level_tokens_write_the_text_they_encode(tiny_tokenizer) -> None:
    table = vocabulary_bytes(tiny_tokenizer)
    assert len(table) == len(tiny_tokenizer)
    assert all(table[i] is None for i in tiny_tokenizer.all_special_ids)
    for text in ("Tapering [MEDICATION methylprednisolone] from 2 g.", "5 µg/kg — naïve", "a\n b\t c"):
        ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert b"".join(table[i] for i in ids).decode() == text


def test_sentencepiece_style_tokens(tmp_path: Path) -> None:
    """'▁' for spaces and <0xNN> byte fallback, as Llama 2 and Mistral tokenizers write them."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for piece in ("▁", "▁dose", "▁mg", "d", "o", "s", "e", "m", "g", "5", "▁5"):
        vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split("▁", "merged_with_next")
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    table = vocabulary_bytes(tok)
    assert table[vocab["▁dose"]] == b" dose" and table[vocab["<0xC2>"]] == b"\xc2" and table[2] is None
    ids = tok(" dose 5 µg", add_special_tokens=False)["input_ids"]
    assert b"".join(table[i] for i in ids).decode() == " dose 5 µg"


# ------------------------------------------------------------------------------------------------ automata
@pytest.fixture(scope="module")
def lines() -> NerTask:
    return NerTask(NerTask.Options(labels=list(LABELS)))


@pytest.mark.parametrize("output", ["inline", "lines"])
def test_targets_are_accepted_and_end_exactly_there(output: str) -> None:
    task = NerTask(NerTask.Options(labels=list(LABELS), output=output))
    for r in records():
        constraint = task.constraint(r)
        target = task.format(r).target
        state = constraint.advance(constraint.start(), target.encode())
        assert state is not None and constraint.can_end(state), target
        if output == "inline":  # (a line answer may stop after any piece of the text)
            assert not constraint.can_end(constraint.advance(constraint.start(), target[:-1].encode()))


def accepter(task: NerTask, text: str):
    c = task.constraint(Record({"text": text, "entities": []}, "t.jsonl", 1))
    return c, lambda answer: c.advance(c.start(), answer.encode()) is not None


def test_inline_rejects_what_is_not_the_text_with_marks(inline: NerTask) -> None:
    c, accepts = accepter(inline, "Give  aspirin 5 mg.")
    assert accepts("Give [MEDICATION aspirin] [DOSAGE 5 mg].") and accepts("\n Give aspirin")
    assert not accepts("Give  aspirin")  # whitespace is normalised, as in the targets
    assert not accepts("Give [DRUG aspirin]")  # undeclared label
    assert not accepts("Give [MEDICATION ]")  # empty mention
    assert not accepts("Give [MEDICATION [DOSAGE aspirin")  # no nesting
    assert not accepts("Give asprin")  # misspelt copy
    assert not accepts("Give aspirin 5 mg. Then")  # nothing after the text
    assert not c.can_end(c.advance(c.start(), b"Give [MEDICATION aspirin 5 mg."))  # a mark left open


def test_lines_name_declared_labels_and_mentions_from_the_text(lines: NerTask) -> None:
    c, accepts = accepter(lines, "Give  aspirin 5 mg, then aspirin.")
    assert accepts("DOSAGE: 5 mg\nMEDICATION: aspirin\nMEDICATION: aspirin") and accepts(" none")
    assert accepts("MEDICATION: aspirin 5")  # any piece of the text: the metric judges the span
    assert not accepts("DRUG: aspirin")  # undeclared label
    assert not accepts("MEDICATION: ibuprofen")  # not in the text
    assert not accepts("MEDICATION: aspirin then")  # not a contiguous piece of it
    assert not accepts("none\nMEDICATION: aspirin") and not accepts("MEDICATION: aspirin\nnone")
    assert not accepts("MEDICATION: aspirin\n\nDOSAGE: 5 mg")  # no blank lines
    assert not accepts("MEDICATION:  aspirin") and not accepts("DOSAGE: 5 \n")  # mentions are stripped
    for unfinished in ("MEDICATION: ", "MEDICATION: aspirin\n", "MEDIC", "non"):
        assert not c.can_end(c.advance(c.start(), unfinished.encode())), unfinished


@pytest.mark.parametrize("output", ["inline", "lines"])
def test_a_label_that_begins_another_leaves_both_open(output: str) -> None:
    task = NerTask(NerTask.Options(labels=["DRUG", "DRUG NAME"], output=output))
    c, accepts = accepter(task, "Give aspirin.")
    if output == "inline":
        assert accepts("Give [DRUG aspirin].") and accepts("Give [DRUG NAME aspirin].")
    else:
        assert accepts("DRUG: aspirin") and accepts("DRUG NAME: aspirin")
    assert c.next_bytes(c.advance(c.start(), b"Give [DRUG " if output == "inline" else b"DRUG ")) >= {ord("N")}


@pytest.mark.parametrize("output", ["inline", "lines"])
def test_next_bytes_lists_exactly_what_advance_accepts(output: str) -> None:
    task = NerTask(NerTask.Options(labels=list(LABELS), output=output))
    rng = random.Random(0)
    for r in records(30):
        c = task.constraint(r)
        target = task.format(r).target.encode()
        for cut in sorted(rng.sample(range(len(target)), min(6, len(target)))):
            state = c.advance(c.start(), target[:cut])
            accepted = {b for b in range(256) if c.advance(state, bytes([b])) is not None}
            assert c.next_bytes(state) == accepted
            assert super(type(c), c).next_bytes(state) == accepted  # the generic answer agrees


# ------------------------------------------------------------------------------------------------ generation
def test_greedy_step_takes_the_best_allowed_token_and_ends_only_when_allowed() -> None:
    """One processor step on hand-made scores: the model's favourites are a token past the tokenizer (models often
    have spare output rows), a special token and a misspelling; the best well-formed one is taken."""
    import torch

    vocab = Vocabulary([None, b"Give", b" aspirin", b" asprin", b"[", b"MEDICATION ", b"]"],
                       {b"G"[0]: [1], b" "[0]: [2, 3], b"["[0]: [4], b"M"[0]: [5], b"]"[0]: [6]})
    c = MarkedCopy("Give aspirin", ["MEDICATION"])
    greedy = ConstrainedGreedy([c, None], vocab, eos_ids=[0], prompt_length=1)
    scores = torch.tensor([[5.0, 2.0, 1.0, 4.0, 0.5, 0.0, 0.0, 9.0]] * 2)  # id 7: past the tokenizer
    out = greedy(torch.tensor([[9], [9]]), scores)
    assert out[0].argmax() == 1 and out[0].isfinite().sum() == 1  # "Give": not eos (too early), not id 7
    assert torch.equal(out[1], scores[1])  # the free row is untouched
    out = greedy(torch.tensor([[9, 1], [9, 7]]), scores)
    assert out[0].argmax() == 2  # " aspirin" (" asprin" scores higher but is a misspelling)
    out = greedy(torch.tensor([[9, 1, 2], [9, 7, 7]]), scores)
    assert out[0].argmax() == 0  # the whole text is written: end-of-sequence is now allowed and best


def test_constrained_greedy_copies_the_text_and_leaves_free_rows_alone(inline: NerTask, tiny_tokenizer) -> None:
    """The untrained shipped base, asked for inline NER: constrained rows copy the text exactly (with whatever marks
    the model chooses); a row without a constraint generates what it would have anyway."""
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessorList

    model = AutoModelForCausalLM.from_pretrained(ROOT / "data" / "tiny_base" / "model").eval()
    tok = tiny_tokenizer
    batch = records(4)
    prompts = [[tok.bos_token_id, *tok(inline.format(r).prompt, add_special_tokens=False)["input_ids"]]
               for r in batch]
    longest = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (longest - len(p)) + p for p in prompts])
    mask = (ids != tok.pad_token_id).long()

    def run(constraints):
        processors = LogitsProcessorList()
        if constraints is not None:
            processors.append(ConstrainedGreedy(constraints, Vocabulary.of(tok), [tok.eos_token_id], longest))
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=120, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 logits_processor=processors)
        return tok.batch_decode(out[:, longest:], skip_special_tokens=True)

    free = run(None)
    constrained = run([inline.constraint(r) for r in batch[:3]] + [None])
    for r, text in zip(batch[:3], constrained):
        assert MARKS.sub("", text).strip() == normalize(r.data["text"]), text
    assert constrained[3] == free[3]
    assert any(MARKS.sub("", t).strip() != normalize(r.data["text"]) for r, t in zip(batch[:3], free[:3]))


@pytest.mark.slow
@pytest.mark.parametrize("constrained", [True, False])
def test_recipe_switch(tmp_path: Path, make_recipe, constrained: bool) -> None:
    """`evaluation.constrained` through a real run: on, every answer is a (possibly cut short) marked copy of its
    text even from a model trained for one step; off, the same model writes other text."""
    from loraforge.engine import run_recipe
    from loraforge.recipe import load_recipe

    table = ner_recipe(evaluation={"batch_size": 8, "max_new_tokens": 48, "constrained": constrained},
                       training={"max_steps": 1, "batch_size": 4, "learning_rate": 1e-3, "eval_loss": False})
    table["task"]["output"] = "inline"
    path = make_recipe(table, data={"train": ner_records(8), "test": ner_records(8, 100)})
    run = run_recipe(load_recipe(path))
    lines = (run.out_dir / "predictions-test.jsonl").read_text().splitlines()
    texts = [normalize(r["text"]) for r in ner_records(8, 100)]
    copies = [MARKS.sub("", json.loads(line)["generated"]).strip() for line in lines]
    prefixes = [text.startswith(copy) and copy != "" for text, copy in zip(texts, copies)]
    assert all(prefixes) if constrained else not any(prefixes)
