"""The fast paths on a real pretrained model's shapes: SmolLM2-135M-Instruct (30 layers, grouped-query attention,
tied embeddings, a 49k BPE vocabulary with a chat template), on real NER prompts and its real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import LABELS
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from loraforge.builtin.fused_lora import fuse
from loraforge.builtin.tasks.ner import NerTask
from loraforge.builtin.tasks.ner_answers import MentionLines
from loraforge.components import Record
from loraforge.constraints import ConstrainedGreedy, Vocabulary
from loraforge.data import IGNORE_INDEX, PadCollator, make_encoder, target_loss
from loraforge.precision import merged_for_inference
from loraforge.prefix import shared_prefix_attention, shared_prefix_inputs

TEXTS = [  # multi-token words, leading-space tokens and unicode the vocabulary splits into bytes
    ("Creatinine rose to 180 µmol/L – acute kidney injury was treated with furosemide 40 mg.",
     [("Creatinine", "PROCEDURE"), ("acute kidney injury", "CONDITION"), ("furosemide", "MEDICATION"),
      ("40 mg", "DOSAGE")]),
    ("Echocardiography showed a pericardial effusion.", [("Echocardiography", "PROCEDURE"),
                                                        ("pericardial effusion", "CONDITION")]),
    ("She received methylprednisolone 1 g daily for 3 days.", [("methylprednisolone", "MEDICATION"),
                                                             ("1 g", "DOSAGE")]),
    ("No fever.", [("fever", "CONDITION")]),
]


def record(text: str, mentions: list[tuple[str, str]]) -> Record:
    entities = [{"start": text.index(m), "end": text.index(m) + len(m), "label": label} for m, label in mentions]
    return Record({"text": text, "entities": entities}, "real.jsonl", 1)


@pytest.fixture(scope="module")
def smol(smol_folder: Path) -> tuple:
    tokenizer = AutoTokenizer.from_pretrained(smol_folder)
    task = NerTask(NerTask.Options(labels=list(LABELS)))
    encoder = make_encoder(tokenizer)
    features = []
    for text, mentions in TEXTS:
        example = task.format(record(text, mentions))
        prompt, target = encoder.prompt_ids(example.prompt), encoder.target_ids(example.target)
        features.append({"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target})
    return smol_folder, tokenizer, task, features


def lora(folder: Path, fused: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            init_lora_weights=False))
    if fused:
        fuse(model)
    return model.train()


def test_the_tokenizer_splits_real_clinical_text(smol) -> None:
    _, tokenizer, _, features = smol
    pieces = tokenizer.tokenize(" 180 µmol/L – acute")
    assert len(pieces) > 5 and pieces[0].startswith("Ġ")  # leading-space tokens, µ and – in byte pieces
    decoded = tokenizer.decode(features[0]["input_ids"])
    assert TEXTS[0][0] in decoded and decoded.endswith("CONDITION: acute kidney injury\nMEDICATION: furosemide\n"
                                                      "DOSAGE: 40 mg<|im_end|>")  # bytes round-trip exactly
    assert tokenizer.chat_template and features[0]["input_ids"][-1] == tokenizer.eos_token_id


def test_fused_layers_shared_prefix_and_narrowed_last_layer_give_pefts_loss_and_gradients(smol) -> None:
    folder, tokenizer, _, features = smol
    batch = PadCollator(tokenizer.pad_token_id, logits_on_targets=True, share_prefix=True)(features)
    prefix = batch.pop("prefix_length")
    assert prefix > 30  # the chat template's system turn and the instruction
    labels = batch.pop("labels")
    reference = lora(folder, fused=False)
    reference.zero_grad()
    full = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    full.backward()
    want = [p.grad for p in reference.parameters() if p.requires_grad]

    model = lora(folder, fused=True)
    inputs = shared_prefix_inputs({**batch, "labels": labels}, prefix)
    with shared_prefix_attention(model):
        shared = target_loss(model(**inputs), inputs.pop("labels"))
        shared.backward()
    got = [p.grad for p in model.parameters() if p.requires_grad]
    torch.testing.assert_close(shared, full, rtol=1e-5, atol=1e-5)
    assert len(got) == len(want) == 30 * 7 * 2
    for g, w in zip(got, want):  # 30 layers of fp32 sums in another order: compare at the tensor's own scale
        assert (g - w).abs().max() <= 1e-3 * w.abs().max()


def test_generation_with_the_merged_adapter_matches_the_unmerged_one(smol) -> None:
    folder, tokenizer, _, features = smol
    model = lora(folder, fused=True).eval()
    ids = torch.tensor([features[1]["input_ids"]])
    with torch.inference_mode():
        unmerged = model(input_ids=ids).logits
        with merged_for_inference(model) as count:
            merged = model(input_ids=ids).logits
        again = model(input_ids=ids).logits
        with model.disable_adapter():
            base = model(input_ids=ids).logits
    assert count == 30 * 7
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-3)  # logits of size ~20, fp32 sums
    assert torch.equal(again, unmerged)  # the weights are restored exactly
    assert (base - unmerged).abs().max() > 1e-2  # and the adapter mattered


def test_constrained_answers_name_declared_labels_and_text_from_the_input(smol) -> None:
    folder, tokenizer, task, _ = smol
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    encoder = make_encoder(tokenizer)
    records = [record(text, mentions) for text, mentions in TEXTS[:2]]
    prompts = [encoder.prompt_ids(task.format(r).prompt) for r in records]
    longest = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (longest - len(p)) + p for p in prompts])
    mask = (ids != tokenizer.pad_token_id).long()
    constraints = [task.constraint(r) for r in records]
    assert all(isinstance(c, MentionLines) for c in constraints)
    processor = ConstrainedGreedy(constraints, Vocabulary.of(tokenizer), [tokenizer.eos_token_id], longest)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=40, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, logits_processor=[processor])
    for r, row in zip(records, out[:, longest:]):
        answer = tokenizer.decode(row, skip_special_tokens=True).strip()
        lines = [line for line in answer.splitlines() if line]
        assert lines, answer
        for line in lines:
            label, _, mention = line.partition(": ")
            assert answer == "none" or (label in LABELS and mention and mention in r.data["text"]), answer
