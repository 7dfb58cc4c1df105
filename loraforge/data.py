"""Records in, token ids out.

Reading is strict and located: every malformed line or record is a DataError naming file and line. jsonl and
csv are read here; any other format is read by the task that declares it (e.g. NER reads CoNLL). Tokenization
goes through the task's prompt/target formatting, masks the prompt out of the loss, and is cached on disk by a
hash of the examples and the tokenizer.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .components import Example, Record, Task
from .errors import DataError
from .files import atomic_dir, cache_dir, digest

IGNORE_INDEX = -100
MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a second forward call
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".conll": "conll", ".bio": "conll",
              ".ann": "brat"}
SPLITS = ("train", "validation", "test")


def file_format(path: Path, declared: str, task: Task, key: str | None = None) -> str:
    fmt = declared if declared != "auto" else folder_format(path) if path.is_dir() else \
        EXTENSIONS.get(path.suffix.lower())
    readable = ("jsonl", "csv", *task.formats)
    if fmt is None or fmt not in readable:
        what = f"format '{fmt}'" if fmt else "a folder without .ann files" if path.is_dir() else \
            f"extension '{path.suffix}'"
        hint = ("Name a data file, or a brat folder of <doc>.txt + <doc>.ann files." if path.is_dir() and not fmt
                else "Set `[data] format = \"...\"` or rename the file with a known extension.")
        raise DataError(f"cannot read {what}; this task reads: {', '.join(readable)}", file=path, key=key,
                        hint=hint)
    if path.is_dir() and fmt in ("jsonl", "csv"):
        raise DataError(f"is a folder; {fmt} records are read from one file", file=path, key=key,
                        hint="Name the file itself, e.g. data/train.jsonl.")
    return fmt


def folder_format(path: Path) -> str | None:
    """A folder of `.txt` + `.ann` pairs is brat standoff, the form clinical NER corpora ship in."""
    return "brat" if any(path.glob("*.ann")) else None


def read_jsonl(path: Path) -> Iterable[Record]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg} (column {exc.colno})", file=path, line=number,
                                hint="Each line of a .jsonl file must be one complete JSON object.") from None
            if not isinstance(value, dict):
                raise DataError(f"expected a JSON object, got {type(value).__name__}", file=path, line=number)
            yield Record(value, str(path), number)


def read_csv(path: Path) -> Iterable[Record]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:  # reads the header row, so line numbers below start after it
            return
        line = reader.line_num + 1
        for row in reader:
            if None in row:
                raise DataError("more fields than the header names", file=path, line=line)
            yield Record(dict(row), str(path), line)
            line = reader.line_num + 1


def read_records(path: Path, declared_format: str, task: Task, split: str, limit: int | None = None,
                 notes: dict[str, str] | None = None) -> list[Record]:
    """Every record of one file (or folder, for a format the task reads), each checked by the task; an empty
    source is an error. What the task says of its reading (kept and dropped) goes into `notes[split]`."""
    if not path.exists():
        raise DataError(f"{split} data file not found", file=path, key=f"data.{split}",
                        hint="Paths in a recipe are relative to the recipe file that sets them.")
    fmt = file_format(path, declared_format, task, f"data.{split}")
    reader = {"jsonl": read_jsonl, "csv": read_csv}.get(fmt)
    records = []
    for record in (reader(path) if reader else task.read(path, fmt)):
        task.check(record)
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise DataError(f"the {split} split has no records", file=path, key=f"data.{split}",
                        hint="Point the recipe at a file with at least one record.")
    note = None if reader else task.read_report(path)
    if note and notes is not None:
        notes[split] = note
    return records


def load_splits(recipe: Any, task: Task, notes: dict[str, str] | None = None) -> dict[str, list[Record]]:
    """train, validation and test records, as the recipe declares them: from their own files, or carved out of
    train (`test_split`, `validation_split`) by document where records name one, so no document is in two
    splits."""
    data = recipe.data
    splits = {}
    for split in SPLITS:
        path = recipe.data_path(split)
        if path is not None:
            splits[split] = read_records(path, data.format, task, split, data.max_records, notes)
    for split in ("test", "validation"):
        fraction = getattr(data, f"{split}_split")
        if split not in splits and fraction > 0:
            splits["train"], splits[split] = carve(splits["train"], fraction, data.split_seed, recipe, split)
    return splits


def document_of(record: Record) -> str | None:
    """The document a record comes from: its `document` field (brat records carry one), if any."""
    value = record.data.get("document") if isinstance(record.data, dict) else None
    return value if isinstance(value, str) and value else None


def carve(train: list[Record], fraction: float, seed: int, recipe: Any,
          split: str) -> tuple[list[Record], list[Record]]:
    """Hold out `fraction` of train: whole documents drawn with `seed` when records name documents, else the last
    records (so nothing shifts when train grows at its end)."""
    import random

    documents = sorted({d for d in map(document_of, train) if d is not None})
    key = f"data.{split}_split"
    if len(documents) > 1:
        n = max(1, round(len(documents) * fraction))
        if n >= len(documents):
            raise DataError(f"{split}_split {fraction} of {len(documents)} documents leaves none to train on",
                            key=key, file=recipe.path, hint="Lower it.")
        held = set(random.Random(seed).sample(documents, n))
        return [r for r in train if document_of(r) not in held], [r for r in train if document_of(r) in held]
    n = max(1, int(len(train) * fraction))
    if n >= len(train):
        raise DataError(f"{split}_split {fraction} leaves no training records", key=key, file=recipe.path)
    return train[:-n], train[-n:]


# ---------------------------------------------------------------------------------------------- tokenization


@dataclass
class PromptEncoder:
    """Turns a prompt into token ids exactly the same way for training and for generation."""

    tokenizer: Any
    use_chat_template: bool

    def prompt_ids(self, prompt: str) -> list[int]:
        tok = self.tokenizer
        if self.use_chat_template:
            text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
            return tok(text, add_special_tokens=False)["input_ids"]
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        return [tok.bos_token_id, *ids] if tok.bos_token_id is not None else ids

    def few_shot_ids(self, shots: Sequence[Example], prompt: str) -> list[int]:
        """k solved examples, then the prompt: as chat turns with a template, else as plain text blocks."""
        tok = self.tokenizer
        if self.use_chat_template:
            messages = [m for ex in shots for m in ({"role": "user", "content": ex.prompt},
                                                     {"role": "assistant", "content": ex.target})]
            text = tok.apply_chat_template([*messages, {"role": "user", "content": prompt}], tokenize=False,
                                           add_generation_prompt=True)
            return tok(text, add_special_tokens=False)["input_ids"]
        context = "".join(f"{ex.prompt}{ex.target}\n\n" for ex in shots)
        return self.prompt_ids(context + prompt)

    def target_ids(self, target: str) -> list[int]:
        ids = self.tokenizer(target, add_special_tokens=False)["input_ids"]
        return [*ids, self.tokenizer.eos_token_id]

    def count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def make_encoder(tokenizer: Any) -> PromptEncoder:
    """Prompts through the tokenizer's chat template when it has one (the loader removes it when its options say
    not to use it)."""
    return PromptEncoder(tokenizer, bool(getattr(tokenizer, "chat_template", None)))


def tokenize(examples: Sequence[Example], records: Sequence[Record], encoder: PromptEncoder, max_length: int,
             split: str, long_records: str = "error") -> tuple[Any, int]:
    """A datasets.Dataset of input_ids/labels/length, cached by content; returns it and how many were skipped.

    A record longer than `max_length` is an error naming its line, or with `long_records = "skip"` is left out and
    counted; never truncated, as a cut target would teach the model to stop mid-answer.
    """
    import datasets

    tok = encoder.tokenizer
    key = digest([(e.prompt, e.target) for e in examples], max_length, long_records, encoder.use_chat_template,
                 tokenizer_fingerprint(tok))
    folder = cache_dir("tokenized") / f"{split}-{key}"
    meta_file = folder / "dropped.json"
    if meta_file.exists():
        return datasets.load_from_disk(str(folder)), json.loads(meta_file.read_text())["dropped"]
    rows: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": []}
    dropped = 0
    for example, record in zip(examples, records):
        prompt, target = encoder.prompt_ids(example.prompt), encoder.target_ids(example.target)
        if len(prompt) + len(target) > max_length:
            if long_records == "skip":
                dropped += 1
                continue
            raise DataError(f"the record is {len(prompt) + len(target)} tokens (prompt {len(prompt)}, target "
                            f"{len(target)}), longer than training.max_length ({max_length})", file=record.file,
                            line=record.line, key="training.max_length",
                            hint=f"Raise training.max_length to at least {len(prompt) + len(target)}, shorten the "
                                 "record, or set training.long_records = \"skip\" to leave such records out.")
        rows["input_ids"].append(prompt + target)
        rows["labels"].append([IGNORE_INDEX] * len(prompt) + target)
        rows["length"].append(len(prompt) + len(target))
    dataset = datasets.Dataset.from_dict(rows)
    with atomic_dir(folder, replace=False) as tmp:
        dataset.save_to_disk(str(tmp))
        (tmp / "dropped.json").write_text(json.dumps({"dropped": dropped}))
    return dataset, dropped


def tokenizer_fingerprint(tok: Any) -> str:
    """A hash of everything that decides token ids: vocabulary, merges, normalisation, special tokens."""
    backend = getattr(tok, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else sorted(tok.get_vocab().items())
    return digest(type(tok).__name__, vocab, tok.bos_token_id, tok.eos_token_id, tok.chat_template)


class PadCollator:
    """Right-pads a batch to its longest sequence; padded labels are ignored by the loss.

    With `logits_on_targets`, the batch also says how many trailing positions need logits at all: prompts come
    first and are masked out of the loss, so the LM head (and its softmax) can skip every position before the
    earliest target of the batch. `target_loss` then computes the same loss on that tail.

    With `share_prefix` as well, the batch says how many leading tokens every row has in common before any target
    (an instruction template, a system prompt): `prefix_length`, at least `min_prefix` tokens, else 0. The trainer
    then runs that prefix once instead of once per row (see `prefix.shared_prefix_inputs`).
    """

    def __init__(self, pad_token_id: int, logits_on_targets: bool = False, share_prefix: bool = False,
                 min_prefix: int = MIN_SHARED_PREFIX) -> None:
        self.pad_token_id = pad_token_id
        self.logits_on_targets = logits_on_targets
        self.share_prefix = share_prefix and logits_on_targets
        self.min_prefix = min_prefix

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        lengths = [len(f["input_ids"]) for f in features]
        longest = max(lengths)

        def padded(key: str, value: int) -> Any:  # one tensor from Python lists: one call, not one per row
            return torch.tensor([list(f[key]) + [value] * (longest - n) for f, n in zip(features, lengths)],
                                dtype=torch.long)

        ids, labels = padded("input_ids", self.pad_token_id), padded("labels", IGNORE_INDEX)
        mask = (torch.arange(longest)[None] < torch.tensor(lengths)[:, None]).long()
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if self.logits_on_targets:
            # logits at position t predict token t+1: keep from one before the earliest target token
            first_target = int((labels != IGNORE_INDEX).int().argmax(dim=1).min())
            batch["logits_to_keep"] = longest - max(first_target - 1, 0)
            if self.share_prefix and len(features) > 1:
                common = int((ids == ids[:1]).all(dim=0).int().cumprod(dim=0).sum())
                batch["prefix_length"] = shared_prefix_length(common, first_target, self.min_prefix)
        return batch


def shared_prefix_length(common: int, first_target: int, minimum: int = MIN_SHARED_PREFIX) -> int:
    """How much of a batch's `common` leading tokens runs once: up to one before the earliest target (no logit
    the loss needs falls inside it), and nothing when that leaves fewer than `minimum` tokens."""
    prefix = min(common, first_target - 1)
    return prefix if prefix >= minimum else 0


def target_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Causal-LM cross-entropy over the kept tail of logits; equal to the full loss, as prompts are masked.

    1-D `labels` are one per logit, already aligned (`prefix.shared_prefix_inputs` computes logits only where a
    label follows)."""
    import torch.nn.functional as F

    logits = outputs.logits
    if labels.dim() == 1:
        targets = labels
    else:
        kept = logits.shape[1]
        # position t is scored against token t+1; the last kept position has nothing to predict. Padding the
        # targets (rather than slicing the logits) keeps the logits contiguous: no copy, no zero-filled gradient.
        targets = F.pad(labels[:, labels.shape[1] - kept + 1:], (0, 1), value=IGNORE_INDEX)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    return loss / count

