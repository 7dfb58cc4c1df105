"""Scoring: batched greedy generation with a KV cache and left padding, kept to the task's well-formed answers
(`evaluation.constrained`), parsed by the task, scored by metrics.

Records are sorted by prompt length so each batch pads little; results are put back in the original order.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .components import Record, Task
from .constraints import Constraint, ConstrainedGreedy, Vocabulary
from .kvcache import PrefixCache, batch_cache, cache_argument, shared_prefix_decoding
from .prefix import attends_through_interface
from .precision import autocast_dtype, frozen_weights_in, merged_for_inference
from .run import Run

#: shorter common prompt prefixes are recomputed per row: a forward of their own would not pay for itself
MIN_PREFIX_CACHE = 32


def generate(run: Run, prompts: Sequence[list[int]], max_new_tokens: int | Sequence[int], batch_size: int,
             label: str = "generate", constraints: Sequence[Constraint | None] | None = None,
             vocabulary: Vocabulary | None = None) -> list[str]:
    """Greedy completions of token-id prompts, decoded without special tokens; `max_new_tokens` bounds all of them
    or each its own; with `constraints` (one per prompt, with the tokenizer's `vocabulary`), each keeps to its own.

    For the whole pass each plain LoRA layer runs as one matmul with W + ΔW, and frozen weights are cast once to
    the autocast dtype (`loraforge.precision`)."""
    model = run.model
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    dtype = autocast_dtype(run.precision)
    began = time.perf_counter()
    try:
        with merged_for_inference(model, dtype), frozen_weights_in(model, dtype):
            prefix = _shared_prefix(run, prompts, dtype)
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                texts = _generate_batch(run, [prompts[i] for i in rows], [budgets[i] for i in rows], dtype, prefix,
                                        None if constraints is None else [constraints[i] for i in rows], vocabulary)
                for i, text in zip(rows, texts):
                    outputs[i] = text
                done = start + len(rows)
                eta = (time.perf_counter() - began) / done * (len(order) - done)
                run.report(done, len(order), "record", what=label, eta_s=eta)
    finally:
        model.train(was_training)
    return outputs


def _shared_prefix(run: Run, prompts: Sequence[list[int]], dtype: Any) -> PrefixCache | None:
    """The pass's common prompt prefix with its KV cache, when long enough to be worth a forward of its own."""
    import os

    import torch

    common = os.path.commonprefix([list(p) for p in prompts]) if len(prompts) > 1 else []
    common = common[:min(map(len, prompts)) - 1]  # every row keeps a token of its own to start from
    if len(common) < MIN_PREFIX_CACHE:
        return None
    model = run.model
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        out = model(input_ids=torch.tensor([common], device=device), use_cache=True)
    return PrefixCache(common, out[cache_argument(model)], shared=attends_through_interface(model))


def _generate_batch(run: Run, batch: list[list[int]], budgets: list[int], dtype: Any, prefix: PrefixCache | None,
                    constraints: list[Constraint | None] | None, vocabulary: Vocabulary | None) -> list[str]:
    """One batch through `generate` with a KV cache: padded on the left, or, after a shared prefix whose cache is
    reused, padded between the prefix and each row's own tokens (masked; positions follow the mask). The batch
    runs to its largest budget and each row is cut to its own: a row's budget does not depend on its batch."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    model, tok = run.model, run.tokenizer
    device = next(model.parameters()).device
    pad = tok.pad_token_id
    shared = len(prefix.ids) if prefix is not None else 0
    longest = max(len(p) for p in batch)
    ids = torch.full((len(batch), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, p in enumerate(batch):
        ids[row, :shared], mask[row, :shared] = torch.tensor(p[:shared], dtype=torch.long), 1
        ids[row, longest - len(p) + shared:] = torch.tensor(p[shared:])
        mask[row, longest - len(p) + shared:] = 1
    processors = LogitsProcessorList()
    if constraints is not None and vocabulary is not None and tok.eos_token_id is not None:
        processors.append(ConstrainedGreedy(constraints, vocabulary, [tok.eos_token_id], longest))
    stopping = StoppingCriteriaList([RowStop(tok, longest, budgets, run.task)])
    cache = batch_cache(len(batch), longest + max(budgets), dtype, prefix)
    held_once = prefix is not None and prefix.shared
    decoding = shared_prefix_decoding(model, cache) if held_once else contextlib.nullcontext()
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.inference_mode(), autocast, decoding:
        generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                   max_new_tokens=max(budgets), do_sample=False, num_beams=1, pad_token_id=pad,
                                   eos_token_id=tok.eos_token_id, use_cache=True, logits_processor=processors,
                                   stopping_criteria=stopping, **{cache_argument(model): cache})
    return [tok.decode(row[longest:longest + budget], skip_special_tokens=True)
            for row, budget in zip(generated, budgets)]


class RowStop:
    """Ends each row of a batch on its own: at its token budget, or once the task says its answer is over
    (`Task.stops`), so a batch ends when its last row does, not at its largest budget."""

    def __init__(self, tokenizer: Any, start: int, budgets: Sequence[int], task: Task) -> None:
        self.tokenizer, self.start, self.budgets = tokenizer, start, list(budgets)
        self.done = [False] * len(self.budgets)
        self.stops = task.stops if type(task).stops is not Task.stops else None  # decode only for a task that asks

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        new = input_ids.shape[1] - self.start
        for row, budget in enumerate(self.budgets):
            if self.done[row]:
                continue
            self.done[row] = new >= budget or (self.stops is not None and self.stops(
                self.tokenizer.decode(input_ids[row, self.start:], skip_special_tokens=True)))
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


@dataclass
class EvalContext:
    """The split being scored, `run.evaluation` while evaluation runs: what a metric may need beyond predictions
    and references."""

    run: Run
    split: str
    records: list[Record]
    _train: list[Any] | None = field(default=None, init=False, repr=False)
    _constraints: tuple[list[Constraint | None] | None, Vocabulary | None] | None = field(default=None, init=False,
                                                                                           repr=False)

    def train_references(self) -> list[Any]:
        """The task's references for the training records (for seen-vs-unseen breakdowns), computed once."""
        if self._train is None:
            self._train = [self.run.task.reference(r) for r in self.run.records.get("train", [])]
        return self._train

    def constraints(self) -> tuple[list[Constraint | None] | None, Vocabulary | None]:
        """The task's answer constraint per record and the tokenizer's vocabulary, when decoding is constrained;
        built once (constraints hold no generation state) for the adapter and the baseline passes."""
        if self._constraints is None:
            self._constraints = None, None
            if self.run.recipe.evaluation.constrained:
                constraints = [self.run.task.constraint(r) for r in self.records]
                if any(c is not None for c in constraints):
                    self._constraints = constraints, Vocabulary.of(self.run.tokenizer)
        return self._constraints

    def target_nll(self, adapted: bool = True) -> tuple[float, int]:
        """Summed negative log-likelihood of the split's targets given their prompts, and the token count.

        `adapted=False` scores the base model (the adapter disabled), for adapted-vs-base comparisons.
        """
        import torch

        run = self.run
        model = run.model
        device = next(model.parameters()).device
        total, tokens = 0.0, 0
        was_training = model.training
        model.eval()
        switch = contextlib.nullcontext() if adapted else model.disable_adapter()
        try:
            with torch.inference_mode(), switch:
                for record in self.records:
                    ex = run.task.format(record)
                    prompt, target = run.encoder.prompt_ids(ex.prompt), run.encoder.target_ids(ex.target)
                    ids = torch.tensor([prompt + target], device=device)
                    labels = torch.tensor([[-100] * len(prompt) + target], device=device)
                    loss = model(input_ids=ids, labels=labels).loss.float().item()
                    total += loss * len(target)
                    tokens += len(target)
        finally:
            model.train(was_training)
        return total, tokens


def evaluate(run: Run, split: str) -> dict[str, Any]:
    """Score the adapted model on `split`; with `baseline_shots`, also the base model prompted k-shot."""
    task, settings = run.task, run.recipe.evaluation
    records: list[Record] = run.records[split][: settings.max_records]
    prompts = [run.encoder.prompt_ids(task.format(r).prompt) for r in records]
    max_new = settings.max_new_tokens or answer_budgets(run, prompts)
    context = EvalContext(run, split, records)  # one for both passes: the training references are built once
    scores, texts = score(context, prompts, max_new, adapted=True)
    _write_predictions(run, split, records, texts)
    result: dict[str, Any] = {split: scores}
    if settings.baseline_shots is not None:
        run.enter("baseline")
        shots = few_shot_examples(run, settings.baseline_shots)
        prompts = [run.encoder.few_shot_ids(shots, task.format(r).prompt) for r in records]
        base_scores, base_texts = score(context, prompts, max_new, adapted=False)
        _write_predictions(run, f"{split}-base", records, base_texts)
        result["baseline"] = {"shots": len(shots), "split": split, "scores": base_scores}
    return result


def answer_budgets(run: Run, prompts: Sequence[list[int]]) -> list[int]:
    """Per record, the task's generation bound (`Task.max_new_tokens`) over the training examples whose prompt is
    no longer than the record's own (the shortest one at least).

    Answers grow with their input (NER lines, rewritten styles), so a short passage does not get the budget of the
    longest training answer: a model that never stops (a k-shot base model repeating lines) is cut sooner, and a
    batch of short prompts ends sooner. Never more than the task's bound for the whole split."""
    import bisect
    import functools

    task, encoder = run.task, run.encoder
    count = functools.cache(encoder.count)  # each target is counted once, however many bounds it enters
    seen = sorted(((len(encoder.prompt_ids(e.prompt)), i) for i, e in enumerate(run.train_examples)))
    examples = [run.train_examples[i] for _, i in seen]
    lengths = [n for n, _ in seen]

    @functools.cache
    def bound(shorter: int) -> int:
        return task.max_new_tokens(examples[:shorter], count)

    cap = bound(len(examples))
    return [min(cap, bound(max(1, bisect.bisect_right(lengths, len(p))))) for p in prompts]


def few_shot_examples(run: Run, k: int) -> list[Any]:
    """k training examples, drawn once with the recipe's seed, shared by every prompt (the usual k-shot setup)."""
    import random

    examples = run.train_examples
    picks = random.Random(run.recipe.training.seed).sample(range(len(examples)), min(k, len(examples)))
    return [examples[i] for i in picks]


def score(context: EvalContext, prompts: list[list[int]], max_new: int,
          adapted: bool) -> tuple[dict[str, Any], list[str]]:
    """Generate for the context's records, parse through the task and compute every metric; `adapted=False`
    disables the adapter."""
    run, split, records = context.run, context.split, context.records
    task = run.task
    switch = contextlib.nullcontext() if adapted else run.model.disable_adapter()
    constraints, vocabulary = context.constraints()
    with switch:
        texts = generate(run, prompts, max_new, run.recipe.evaluation.batch_size,
                         label=split if adapted else f"{split} (base)", constraints=constraints,
                         vocabulary=vocabulary)
    predictions = [task.parse(t, r) for t, r in zip(texts, records)]
    references = [task.reference(r) for r in records]
    scores = {}
    run.evaluation = context
    try:
        for name, metric in run.components.metrics.items():
            if adapted or not metric.needs_model:
                scores[name] = metric.compute(run, predictions, references)
    finally:
        run.evaluation = None
    return scores, texts


def _write_predictions(run: Run, split: str, records: Sequence[Record], texts: Sequence[str]) -> None:
    import json

    from . import runfolder
    from .files import write_text_atomic

    if not run.is_main_process:
        return
    lines = [json.dumps({"file": r.file, "line": r.line, "generated": t}, ensure_ascii=False)
             for r, t in zip(records, texts)]
    write_text_atomic(runfolder.predictions(run.out_dir, split), "\n".join(lines) + "\n")
