"""Build the tiny pretrained base model shipped in ``data/tiny_base/model/``: deterministic, CPU only, offline.

Why a pretrained tiny base
--------------------------
The CPU demo (``recipes/medical_ner_tiny.toml``) used to fine-tune a *randomly initialised* tiny Llama. Such a
model can only memorise: it learns which strings were labelled in training and never learns to *copy* a span
it has not seen before from its prompt into its answer. On the medical NER data about 45% of test mentions are
strings held out of training, and recall on them was near zero. Real pretrained LMs copy easily because
pretraining on natural text (which repeats itself) grows "induction heads": attention that finds an earlier
occurrence of the current token and predicts what followed it. This script grows them in a 0.85M-parameter
Llama in a few minutes of CPU time by pretraining it once on a synthetic, *generic* corpus in which copying
is what most lowers the loss.

The corpus (nothing in it comes from the NER data)
--------------------------------------------------
Every document is generated from one ``random.Random(seed)`` out of three sources:

* ``words.txt`` next to this script: about 2,400 common English words (function words, everyday nouns,
  verbs, adjectives, numbers, weekdays), written for this purpose, public domain, with no drug, condition or
  procedure name;
* pseudo-words: random pronounceable syllable strings ("brelintox", "quosamet", "Stravin"), almost all unique,
  so the only way to predict a repeated one is to copy it from the context (they also make the tokenizer
  learn reusable sub-word pieces, so that any unfamiliar word, technical terms included, splits into
  tokens the model has seen many times);
* numbers with generic units and rates ("25 kg", "3.5 km", "every 4 hours"), upper-case codes ("QXT").

Six kinds of document, each short (20-150 tokens, like the fine-tuning records), BOS ... EOS:

``prose`` (15%)  English-like sentences from the word list with pseudo-words and numbers sprinkled in,
                 where later sentences re-use multi-word spans of earlier ones: plain induction.
``repeat`` (25%) a word sequence repeated bare, or followed by a request to repeat all of it, the part
                 after a word, or the first/last words: copy with a pointer.
``fields`` (15%) a sentence that states values of a few keys ("the lantern was brelintox 4 kg; ...") then
                 lines ``KEY: value`` in order of appearance, or a question about one key: retrieval by
                 the context before a span, value of any length, stopping at the delimiter.
``marked`` (10%) a sentence with some spans in brackets, then one ``TAG: span`` line per marked span, in
                 order: find the next span after the previous one, copy it, stop at its end.
``surface`` (10%) a ``Labels:`` line naming some of TERM, NAME, CODE, AMOUNT, then a sentence, then one
                 ``LABEL: span`` line per span of those kinds in order (TERM: a run of pseudo-words, NAME: a
                 capitalised pseudo-word, CODE: an upper-case code, AMOUNT: a number with its unit or rate),
                 or ``none``: extraction by the form of the text, conditioned on a label list.
``inline`` (25%) the same, answered by writing the sentence out again with each span of a listed kind
                 marked in place, ``[KIND span]``: copy in order, resuming after each inserted mark.

The last four give the model the habit of answering with spans copied verbatim from the prompt, in order of
appearance (as ``LABEL: span`` lines or marked in place), and of writing EOS at the end. None of them is the
medical task: the vocabulary, the labels and the span kinds are generic.

Why two phases
--------------
Induction heads do not form in a model this small within a CPU budget from text alone (measured: 800 steps
of the document mixture left the loss on repeated pseudo-word sequences at the unigram level). They form
within about a thousand steps on *random-token copying*: episodes ``BOS s s [s]`` with ``s`` 6-20 tokens
drawn uniformly from the whole vocabulary, short 64-token rows, loss only on the repeats, where nothing
but copying predicts anything. Phase 1 (``--copy-steps``) is that; in its second half, half the episodes
draw ``s`` from a small alphabet (3-24 tokens), so tokens recur inside ``s`` and the model must keep its
place instead of jumping to any earlier occurrence of the current token, which is what copying sub-word
pieces of an unfamiliar word needs. Phase 2 (``--steps``) trains on the documents (whole documents packed
into 256-token rows, never cut), with 20% of the rows still random-token copying so the heads stay in use.
Eight heads of 16 dimensions formed the heads faster than four of 32 in 2-4 layer trials.

Tokenizer and model
-------------------
A byte-level BPE (GPT-2 pre-tokenisation, ``--vocab`` tokens, the same three special tokens as the ``tiny``
loader) is trained on 30,000 documents of the corpus; a Llama (``--layers`` x ``--hidden``, tied input and
output embeddings so that copying a token back out needs no extra mapping) is pretrained with AdamW
(lr 3e-3, constant in phase 1, cosine to 10% in phase 2) on freshly generated data (nothing is seen twice).
bf16 autocast is used where the CPU has native bf16 (``--precision auto``); weights are kept and saved in
float32.

Reproducibility: everything is seeded; with the same torch version, thread count (``--threads``, default 1,
which is also the fastest choice on a 2-core machine shared with other work) and CPU, the saved weights
are identical (checked on an earlier version: two builds gave byte-identical ``model.safetensors``). At the
end the script prints the held-out copying loss and next-token accuracy on repeated pseudo-word sequences,
and a stricter probe: exact-match accuracy of greedy answer lines on held-out documents of each
answer-bearing kind.

Usage::

    python data/tiny_base/build.py                       # writes data/tiny_base/model/
    python data/tiny_base/build.py --out /tmp/base --steps 300 --layers 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECIAL = {"bos": "<|begin_of_text|>", "eos": "<|end_of_text|>", "pad": "<|pad|>"}

# ------------------------------------------------------------------------------------------------ corpus
ONSETS = (["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"] * 3
          + ["j", "w", "x", "y", "qu", "br", "bl", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sc",
             "sk", "sl", "sm", "sn", "sp", "st", "str", "sw", "tr", "th", "ch", "sh", "ph", "gn", "ps", "rh",
             "kl", "tw", "spr", "chr", "thr"])
VOWELS = ["a", "e", "i", "o", "u"] * 4 + ["y", "ae", "ai", "au", "ea", "ee", "ei", "ia", "io", "oa", "oi", "ou",
                                          "ue", "ie", "eo"]
CODAS = [""] * 10 + ["n", "m", "r", "l", "s", "t", "x", "c", "d", "nd", "nt", "st", "rt", "ct", "ng", "rm", "lt",
                     "ph", "ck", "ss", "z", "ps", "mb", "rn", "sk", "th", "b", "p", "g", "f", "lf"]
UNITS = ["kg", "g", "mg", "cm", "mm", "m", "km", "mL", "L", "s", "min", "h", "%", "ft", "lb", "oz", "mph", "V",
         "W", "kW", "Hz", "kHz", "units", "pages", "boxes", "cups", "miles", "meters", "pieces", "liters",
         "seconds", "minutes", "hours", "days", "inches", "feet", "pounds", "grams"]
RATES = ["per day", "per hour", "a week", "each morning", "every night", "twice a day", "once a week",
         "every 4 hours", "every 6 hours", "every other day", "at noon", "as needed", "each month", "per mile",
         "three times a day", "at night", "in the morning", "before dinner", "after lunch", "daily", "weekly"]
CONNECT = ["is", "was", "are", "were", ":", "=", "of", "called", "named", "set to", "reads", "near", "about",
           "for", "with", "to", "at", "became", "stays"]
DELIMS = [",", ";", ".", " and", " then", " but", " while", " with", " for", " after", " until", " in", " on"]
INSTRUCTIONS = {
    "fields": ["Read the note and write each field with its value, in order.",
               "List every key and its value as they appear in the text.",
               "Copy the value of each field from the text below."],
    "marked": ["Copy each marked span from the text, one per line, in order.",
               "Write out the spans in brackets, in the order they appear.",
               "List the bracketed parts of the text."],
    "surface": ["Find the spans of the listed kinds in the text. Answer with one 'KIND: span' line per span, "
                "in order, or 'none'.",
                "Pick out the spans of the given kinds, one per line, in order of appearance, or 'none'.",
                "Mark each span of the listed kinds; write 'KIND: span' lines in order, or 'none'."],
    "repeat": ["Repeat the words as asked.", "Copy part of the text exactly.", "Say it again."],
    "inline": ["Write the text again, marking each span of the listed kinds in place as [KIND span].",
               "Copy the text and wrap every span of the given kinds in [KIND ...].",
               "Rewrite the text with the listed kinds marked."],
}
FUNCTION = frozenset("""a an the of and or but to in on at by for with from as into over under after before
during about than then that this these those it its he she they we you his her their our is was are were be been
has had have will would can could may might not no so if when while which who what where there here very more most
some any all each one two three""".split())
SURFACE_KINDS = ["TERM", "NAME", "CODE", "AMOUNT"]


def load_words(path: Path = HERE / "words.txt") -> list[str]:
    words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
    return [w for w in words if w and not w.startswith("#")]


class Corpus:
    """Generic synthetic documents, all drawn from one seeded random.Random."""

    def __init__(self, seed: int, words: list[str]) -> None:
        self.rng = random.Random(seed)
        self.words = words
        # function words three times in ten, as in English; content words uniformly otherwise
        n_function = sum(w in FUNCTION for w in words)
        boost = 0.3 * (len(words) - n_function) / (0.7 * n_function)
        self.cum_weights = list(itertools.accumulate(boost if w in FUNCTION else 1.0 for w in words))
        self.content = [w for w in words if w not in FUNCTION and len(w) > 2]

    # ------------------------------------------------------------------ pieces
    def pseudo(self) -> str:
        r = self.rng
        n = r.choices([1, 2, 3, 4, 5], [2, 5, 5, 3, 1])[0]
        parts = []
        for i in range(n):
            onset = "" if (i == 0 and r.random() < 0.2) else r.choice(ONSETS)
            coda = r.choice(CODAS) if i == n - 1 else r.choice(CODAS[:14]) if r.random() < 0.25 else ""
            parts.append(onset + r.choice(VOWELS[:24] if i else VOWELS) + coda)
        word = "".join(parts)
        return word if len(word) > 2 else word + r.choice(["n", "x", "l", "ra"])

    def real(self, k: int = 1) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cum_weights, k=k)

    def number(self) -> str:
        r = self.rng
        kind = r.random()
        if kind < 0.55:
            return str(r.choice([r.randint(1, 12), r.randint(1, 100), r.randint(10, 1000) // 5 * 5]))
        if kind < 0.75:
            return f"{r.randint(0, 20)}.{r.randint(1, 9)}"
        if kind < 0.9:
            a = r.randint(1, 50)
            return f"{a}-{a + r.randint(1, 20)}"
        return f"{r.randint(1, 9)}/{r.randint(2, 10)}"

    def amount(self) -> str:
        r = self.rng
        text = f"{self.number()} {r.choice(UNITS)}"
        if r.random() < 0.35:
            text += " " + r.choice(RATES)
        return text

    def code(self) -> str:
        r = self.rng
        letters = "".join(r.choice("ABCDEFGHIJKLMNOPRSTUVWXYZ") for _ in range(r.randint(2, 5)))
        return letters + (str(r.randint(1, 99)) if r.random() < 0.2 else "")

    def name(self) -> str:
        return self.pseudo().capitalize()

    def term(self) -> str:
        """A run of 1-3 pseudo-words, sometimes with a real word inside or a hyphen."""
        r = self.rng
        n = r.choices([1, 2, 3], [6, 3, 1])[0]
        parts = [self.pseudo() for _ in range(n)]
        if n > 1 and r.random() < 0.2:
            parts[0] = parts[0] + "-" + parts.pop(1)
        return " ".join(parts)

    def value(self) -> str:
        """Any short span: the thing a field, a bracket or a repeat points at."""
        r = self.rng
        kind = r.random()
        if kind < 0.35:
            return self.term()
        if kind < 0.55:
            return " ".join(self.real(r.randint(1, 3)))
        if kind < 0.7:
            return self.amount()
        if kind < 0.8:
            return self.name() + ("" if r.random() < 0.6 else " " + self.name())
        if kind < 0.88:
            return self.code()
        return " ".join([*self.real(1), self.pseudo()] if r.random() < 0.5 else [self.pseudo(), *self.real(1)])

    def filler(self, lo: int, hi: int) -> list[str]:
        """Words of the word list, with an occasional pseudo-word or number."""
        out = []
        for _ in range(self.rng.randint(lo, hi)):
            x = self.rng.random()
            out.append(self.pseudo() if x < 0.08 else self.number() if x < 0.11 else self.real(1)[0])
        return out

    def sentence(self, lo: int = 4, hi: int = 14) -> str:
        r = self.rng
        words = self.filler(lo, hi)
        for i in range(1, len(words) - 2):
            if r.random() < 0.07:
                words[i] += ","
        words[0] = words[0].capitalize()
        return " ".join(words) + r.choice([".", ".", ".", ".", "?", "!", ";"])

    def instruction(self, kind: str) -> str:
        return self.rng.choice(INSTRUCTIONS[kind]) + "\n" if self.rng.random() < 0.6 else ""

    # ------------------------------------------------------------------ documents
    def prose(self) -> str:
        r = self.rng
        spans: list[list[str]] = []
        sentences = []
        for _ in range(r.randint(2, 5)):
            words = self.sentence(5, 16).split()
            if spans and r.random() < 0.7:
                span = r.choice(spans)
                at = r.randint(0, len(words))
                words[at:at] = span
            for _ in range(2):
                a = r.randint(0, max(0, len(words) - 2))
                spans.append(words[a:a + r.randint(2, 7)])
            sentences.append(" ".join(words))
        return " ".join(sentences)

    def repeat(self) -> str:
        r = self.rng
        words = []
        for _ in range(r.randint(4, 30)):
            x = r.random()
            words.append(self.pseudo() if x < 0.45 else self.number() if x < 0.55 else self.real(1)[0])
        seq = " ".join(words)
        kind = r.random()
        if kind < 0.3:  # bare repetition, the plainest induction signal
            return " ".join([seq] * r.randint(2, 3))
        head = self.instruction("repeat") + "Text: " + seq + "\n"
        if kind < 0.65:
            return head + r.choice(["Repeat:", "Again:", "Copy:"]) + " " + seq
        if kind < 0.85:
            i = r.randrange(len(words) - 1)
            return head + f"After {words[i]}: " + " ".join(words[i + 1:])
        n = r.randint(1, min(5, len(words)))
        if r.random() < 0.5:
            return head + f"First {n}: " + " ".join(words[:n])
        return head + f"Last {n}: " + " ".join(words[-n:])

    def fields(self) -> str:
        r = self.rng
        keys = list(dict.fromkeys(r.choices(self.content, k=8)))[: r.randint(1, 4)]
        parts, pairs = [], []
        for key in keys:
            value = self.value()
            pre = " ".join(self.filler(0, 4))
            delim = r.choice(DELIMS)
            parts.append(f"{pre} the {key} {r.choice(CONNECT)} {value}{delim}".strip())
            pairs.append((key, value))
        text = " ".join(parts + self.filler(0, 4))
        text = text[0].upper() + text[1:]
        head = self.instruction("fields") + "Text: " + text + "\n"
        if r.random() < 0.3:
            key, value = r.choice(pairs)
            return head + f"Question: what is the {key}?\nAnswer: {value}"
        return head + "Fields:\n" + "\n".join(f"{k.upper()}: {v}" for k, v in pairs)

    def marked(self) -> str:
        r = self.rng
        left, right = r.choice([("[", "]"), ("(", ")"), ("{", "}"), ("<", ">"), ("*", "*"), ('"', '"')])
        words = self.filler(4, 14)
        for _ in range(r.randint(1, 4)):
            words.insert(r.randint(0, len(words)), left + self.value() + right)
        text = " ".join(words)
        spans, pos = [], 0
        while True:
            a = text.find(left, pos)
            if a < 0:
                break
            b = text.find(right, a + 1)
            if b < 0:
                break
            spans.append(text[a + 1:b])
            pos = b + 1
        tag = r.choice(["ITEM", "SPAN", "MARK", "PART", "QUOTE", *[w.upper() for w in self.real(3)]])
        return (self.instruction("marked") + "Text: " + text[0].upper() + text[1:] + "\nMarked:\n"
                + "\n".join(f"{tag}: {s}" for s in spans if s.strip()))

    def _kinds_text(self) -> tuple[list[str], list[tuple[str | None, str]], str]:
        """A `Labels:` list, the text's chunks (kind or None, words) and the text, for `surface` and `inline`."""
        r = self.rng
        labels = r.sample(SURFACE_KINDS, r.randint(1, 4))
        labels.sort(key=SURFACE_KINDS.index)
        makers = {"TERM": self.term, "NAME": self.name, "CODE": self.code, "AMOUNT": self.amount}
        chunks: list[tuple[str | None, str]] = [(None, w) for w in self.real(r.randint(3, 10))]
        for _ in range(r.choice([0, 1, 1, 2, 2, 3, 4])):
            kind = r.choice(SURFACE_KINDS)
            chunks.insert(r.randint(1, len(chunks)), (kind, makers[kind]()))
        for i in range(1, len(chunks) - 1):
            if chunks[i][0] is None and r.random() < 0.06:
                chunks[i] = (None, chunks[i][1] + ",")
        first = chunks[0][1]
        chunks[0] = (chunks[0][0], first[0].upper() + first[1:])
        return labels, chunks, " ".join(w for _, w in chunks) + "."

    def surface(self) -> str:
        labels, chunks, text = self._kinds_text()
        lines = [f"{k}: {w}" for k, w in chunks if k in labels]
        return (self.instruction("surface") + "Labels: " + ", ".join(labels) + "\nText: " + text + "\nFound:\n"
                + ("\n".join(lines) if lines else "none"))

    def inline(self) -> str:
        labels, chunks, text = self._kinds_text()
        marked = " ".join(f"[{k} {w}]" if k in labels else w for k, w in chunks) + "."
        return (self.instruction("inline") + "Labels: " + ", ".join(labels) + "\nText: " + text + "\nRewritten:\n"
                + marked)

    KINDS = {"prose": 0.15, "repeat": 0.25, "fields": 0.15, "marked": 0.10, "surface": 0.10, "inline": 0.25}

    def document(self, kind: str | None = None) -> str:
        kind = kind or self.rng.choices(list(self.KINDS), list(self.KINDS.values()))[0]
        return getattr(self, kind)()


# ------------------------------------------------------------------------------------------------ tokenizer
def train_tokenizer(texts: list[str], vocab_size: int, max_len: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIAL["bos"], eos_token=SPECIAL["eos"],
                                   pad_token=SPECIAL["pad"], model_max_length=max_len)


# ------------------------------------------------------------------------------------------------ model
def make_model(tok, args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.max_positions, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(config)


def copy_row(rng: random.Random, tok, seq: int, lo: int = 6, hi: int = 20,
             ambiguous: float = 0.0) -> tuple[list[int], list[int]]:
    """Episodes 'BOS s s [s]' of random tokens: nothing but copying can predict the repeats. With probability
    `ambiguous` an episode draws from a small alphabet (3-24 tokens), so a token recurs inside s and the model
    must keep its place (copy what follows the *last copied* occurrence), as when copying sub-word pieces."""
    low, high = len(SPECIAL), len(tok) - 1
    ids: list[int] = []
    labels: list[int] = []
    while len(ids) < seq:
        n = rng.randint(lo, hi)
        if rng.random() < ambiguous:
            pool = rng.sample(range(low, high + 1), rng.randint(3, 24))
            s = [rng.choice(pool) for _ in range(n)]
        else:
            s = [rng.randint(low, high) for _ in range(n)]
        copies = rng.randint(2, 3)
        ids += [tok.bos_token_id] + s * copies
        labels += [-100] * (1 + len(s)) + s * (copies - 1)
    return ids[:seq], labels[:seq]


def copy_batches(rng: random.Random, tok, batch: int, seq: int, plain_steps: int):
    """Phase 1: random-token copying only, in short rows, where induction heads form fastest; after
    `plain_steps`, half the episodes use a small alphabet."""
    import torch

    step = 0
    while True:
        ambiguous = 0.0 if step < plain_steps else 0.5
        step += 1
        rows = [copy_row(rng, tok, seq, ambiguous=ambiguous) for _ in range(batch)]
        yield torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def batches(corpus: Corpus, tok, batch: int, seq: int, copy_share: float):
    """Phase 2: rows of whole documents 'BOS doc EOS BOS doc EOS ... pad' (a document is never cut in two; one
    longer than a row is truncated), and a share of random-copy rows that keeps the copying heads in use."""
    import torch

    rng = random.Random(corpus.rng.random())
    n_copy = round(batch * copy_share)
    pending: list[list[int]] = []
    while True:
        rows, labels = [], []
        for _ in range(batch - n_copy):
            row: list[int] = []
            while True:
                if not pending:
                    docs = [corpus.document() for _ in range(64)]
                    pending = [[tok.bos_token_id, *ids, tok.eos_token_id]
                               for ids in tok(docs, add_special_tokens=False)["input_ids"]]
                if row and len(row) + len(pending[-1]) > seq:
                    break
                row += pending.pop()[:seq]
            rows.append(row + [tok.pad_token_id] * (seq - len(row)))
            labels.append(row + [-100] * (seq - len(row)))
        for _ in range(n_copy):
            ids, lab = copy_row(rng, tok, seq, lo=6, hi=40, ambiguous=0.5)
            rows.append(ids)
            labels.append(lab)
        yield torch.tensor(rows), torch.tensor(labels)


def induction_batch(tok, words: list[str], seed: int, n: int = 32):
    """Held-out sequences 'S S' of pseudo-words: the loss on the second S measures copying."""
    import torch

    corpus = Corpus(seed, words)
    rows, masks = [], []
    for _ in range(n):
        ids = tok(" " + " ".join(corpus.pseudo() for _ in range(12)), add_special_tokens=False)["input_ids"][:40]
        row = [tok.bos_token_id, *ids, *ids]
        rows.append(row)
        masks.append([0] * (1 + len(ids) + 1) + [1] * (len(ids) - 1))
    width = max(map(len, rows))
    x = torch.full((n, width), tok.pad_token_id)
    labels = torch.full((n, width), -100)
    for i, (row, mask) in enumerate(zip(rows, masks)):
        x[i, :len(row)] = torch.tensor(row)
        labels[i, :len(row)] = torch.tensor([t if m else -100 for t, m in zip(row, mask)])
    return x, labels


def copy_loss(model, batch, accuracy: bool = False):
    """Mean loss on the repeated half of held-out pseudo-word sequences (and, if asked, next-token accuracy)."""
    import torch

    x, labels = batch
    was = model.training
    model.eval()
    with torch.inference_mode():
        out = model(input_ids=x, labels=labels)
    model.train(was)
    if not accuracy:
        return float(out.loss)
    guess = out.logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    mask = target != -100
    return float(out.loss), float((guess[mask] == target[mask]).float().mean())


def pretrain(model, tok, corpus: Corpus, args) -> float:
    import torch

    from loraforge.train import cpu_has_bf16

    use_bf16 = args.precision == "bf16" or (args.precision == "auto" and cpu_has_bf16())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    total = args.copy_steps + args.steps
    warmup = 50

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        if step < args.copy_steps:
            return args.lr
        progress = (step - args.copy_steps) / max(1, args.steps)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    model.train()
    phase1 = copy_batches(random.Random(args.seed + 3), tok, args.copy_batch, args.copy_seq, args.copy_steps // 2)
    phase2 = batches(corpus, tok, args.batch, args.seq, args.copy_share)
    held_out = induction_batch(tok, corpus.words, args.seed + 2000)
    began = time.perf_counter()
    smooth = None
    for step in range(total):
        if step == args.copy_steps:
            print("phase 2: documents", flush=True)
            smooth = None
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        x, labels = next(phase1 if step < args.copy_steps else phase2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = model(input_ids=x, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        smooth = value if smooth is None else 0.95 * smooth + 0.05 * value
        if step % args.log_every == 0 or step == total - 1:
            spent = time.perf_counter() - began
            eta = spent / (step + 1) * (total - step - 1)
            print(f"step {step + 1:5d}/{total}  loss {value:.3f}  avg {smooth:.3f}  "
                  f"copy-loss {copy_loss(model, held_out):.3f}  lr {lr_at(step):.2e}  {spent:6.0f}s  eta {eta:4.0f}s",
                  flush=True)
    return smooth, copy_loss(model, held_out, accuracy=True)


# ------------------------------------------------------------------------------------------------ probe
def split_answer(doc: str) -> tuple[str, str] | None:
    """Prompt and answer of an answer-bearing document (the prompt keeps its trailing ':' or newline)."""
    if "Text: " not in doc:
        return None
    for marker in ("\nMarked:\n", "\nFound:\n", "\nFields:\n", "\nRewritten:\n"):
        if marker in doc:
            cut = doc.index(marker) + len(marker)
            return doc[:cut], doc[cut:]
    last = doc.rindex("\n") + 1
    cut = doc.index(":", last) + 1
    return doc[:cut], doc[cut:]


def probe(model, tok, words: list[str], seed: int, per_kind: int = 200) -> dict[str, float]:
    """Greedy answers on held-out documents: exact match of each answer line (the copy probe)."""
    import torch

    corpus = Corpus(seed, words)
    model.eval()
    results = {}
    tok.padding_side = "left"
    for kind in ("repeat", "fields", "marked", "surface", "inline"):
        pairs = []
        while len(pairs) < per_kind:
            split = split_answer(corpus.document(kind))
            if split:
                pairs.append(split)
        good = lines = 0
        for start in range(0, len(pairs), 50):
            chunk = pairs[start:start + 50]
            enc = tok([tok.bos_token + p for p, _ in chunk], return_tensors="pt", padding=True,
                      add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=80, do_sample=False, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id)
            texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for text, (_, gold) in zip(texts, chunk):
                want, got = gold.strip().split("\n"), text.strip().split("\n")
                lines += len(want)
                good += sum(1 for i, w in enumerate(want) if i < len(got) and got[i].strip() == w.strip())
        results[kind] = good / max(1, lines)
    tok.padding_side = "right"
    return results


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "model", help="output folder (replaced)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (results depend on it; 1 is also the fastest on a shared 2-core machine)")
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--intermediate", type=int, default=384)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--max-positions", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3000, help="phase 2: steps on documents")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--copy-steps", type=int, default=1200, help="phase 1: steps of random-token copying only")
    p.add_argument("--copy-batch", type=int, default=32)
    p.add_argument("--copy-seq", type=int, default=64)
    p.add_argument("--copy-share", type=float, default=0.2, help="phase 2: share of rows that are random copying")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--kinds", default=None, help="override the mixture, e.g. prose=0.5,repeat=0.5")
    p.add_argument("--probe", type=int, default=200, help="held-out documents per kind in the probe (0: skip)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    began = time.perf_counter()
    words = load_words()
    if args.kinds:
        Corpus.KINDS = {k: float(v) for k, v in (kv.split("=") for kv in args.kinds.split(","))}
    print(f"words: {len(words)}; mixture: {Corpus.KINDS}", flush=True)

    tok_corpus = Corpus(args.seed + 1, words)
    tok = train_tokenizer([tok_corpus.document() for _ in range(30000)], args.vocab, args.max_positions)
    print(f"tokenizer: {len(tok)} tokens ({time.perf_counter() - began:.0f}s)", flush=True)

    model = make_model(tok, args)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: Llama {args.layers}x{args.hidden} (heads {args.heads}/{args.kv_heads}, mlp {args.intermediate}),"
          f" {params / 1e6:.2f}M parameters", flush=True)
    final, (held_loss, held_acc) = pretrain(model, tok, Corpus(args.seed, words), args)
    trained = time.perf_counter() - began
    scores = probe(model, tok, words, args.seed + 1000, args.probe) if args.probe else {}

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.iterdir():
        if old.is_file():
            old.unlink()
    model.config.use_cache = True
    model.save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)
    report = {"params": params, "final_loss": round(final, 4), "train_s": round(trained, 1),
              "held_out_copy": {"loss": round(held_loss, 4), "token_accuracy": round(held_acc, 4)},
              "copy_probe": {k: round(v, 4) for k, v in scores.items()},
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"}}
    (args.out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"held-out copying of pseudo-word sequences: loss {held_loss:.3f}, next-token accuracy {held_acc:.3f}")
    print(f"final loss {final:.3f}; copy probe (exact-match per answer line): "
          + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
    print(f"saved to {args.out} in {time.perf_counter() - began:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
