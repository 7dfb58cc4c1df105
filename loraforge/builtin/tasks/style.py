"""Style transfer and style imitation: the model learns to write like the training responses.

Records are either pairs, `{"prompt": ..., "response": ...}` (rewrite this in the target style), or plain
`{"text": ...}` (text in the target style, learnt from the instruction alone). There is no single right answer to
compare against, so the task ships two honest, limited measures: `perplexity` (how likely the held-out gold
responses are under the adapted model against the base model) and `style_match` (how many generations show the
surface markers of a style profile declared on the task, next to how many gold responses do).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ...components import Example, Metric, Record, Task
from ...hookspecs import hookimpl
from ...run import Run
from ...schema import option

DEFAULT_INSTRUCTION = "Write in the target style."

#: a generation is cut here: end-of-sequence markers a tokenizer may leave in decoded text
_EOS = re.compile(r"</s>|<\|?(?:end|eos|eot|im_end)[a-z_|]*>", re.IGNORECASE)


class StyleTask(Task):
    """Prompt/response pairs or plain texts; the target is the text in the target style."""

    @dataclass
    class Options:
        instruction: str = option(DEFAULT_INSTRUCTION, help="First line of every prompt (may be empty).")
        prompt_field: str = option("prompt", help="Record key (or CSV column) holding the source text of a pair.")
        response_field: str = option("response", help="Record key (or CSV column) holding the styled response.")
        text_field: str = option("text", help="Record key of a plain record: the whole text is the target.")
        style_keywords: list[str] = option(
            factory=list, help="Style profile for `style_match`: words or phrases typical of the style, matched "
                               "case-insensitively as whole words.")
        style_patterns: list[str] = option(
            factory=list, help="Style profile for `style_match`: Python regular expressions (searched, case-"
                               "sensitive unless they start with (?i)).")

        def check(self) -> Iterator[tuple[str, str]]:
            for i, keyword in enumerate(self.style_keywords):
                if not keyword.strip():
                    yield "style_keywords", f"item {i} is empty"
            for i, pattern in enumerate(self.style_patterns):
                try:
                    compiled = re.compile(pattern)
                except re.error as exc:
                    yield "style_patterns", f"item {i} {pattern!r} is not a valid regular expression: {exc}"
                    continue
                if compiled.search(""):
                    yield "style_patterns", f"item {i} {pattern!r} matches the empty string, so every text"
            fields = [("prompt_field", self.prompt_field), ("response_field", self.response_field),
                      ("text_field", self.text_field)]
            for i, (name, value) in enumerate(fields):
                for other, other_value in fields[:i]:
                    if value == other_value:
                        yield name, f"is the same key as {other} ({value!r})"

    default_metrics: ClassVar[tuple[str, ...]] = ("perplexity", "style_match")

    # ------------------------------------------------------------------ records
    def _is_pair(self, data: dict[str, Any]) -> bool:
        """A record with a prompt or a response (empty CSV cells count as absent), or without a text, is a pair;
        otherwise it is a plain text."""
        o = self.options
        return (data.get(o.response_field) not in (None, "") or data.get(o.prompt_field) not in (None, "")
                or o.text_field not in data)

    def check(self, record: Record) -> None:
        """Pairs need a string prompt (may be empty) and a non-empty response; plain records a non-empty text."""
        o = self.options

        data = record.data if isinstance(record.data, dict) else {}
        keys = ", ".join(map(str, data)) or "none"
        shapes = (f'each record is either {{"{o.prompt_field}": ..., "{o.response_field}": ...}} or '
                  f'{{"{o.text_field}": ...}} (keys found: {keys}); the `task.*_field` options rename them')
        if not any(k in data for k in (o.prompt_field, o.response_field, o.text_field)):
            raise record.error(f"record has no '{o.prompt_field}', '{o.response_field}' or '{o.text_field}'", shapes)
        if self._is_pair(data):
            wanted: tuple[tuple[str, bool], ...] = ((o.prompt_field, False), (o.response_field, True))
        else:
            wanted = ((o.text_field, True),)
        for key, required in wanted:
            value = data.get(key)
            if not isinstance(value, str):
                got = "missing" if value is None else f"a {type(value).__name__}, not a string"
                raise record.error(f"field '{key}' is {got}", shapes)
            if required and not value.strip():
                raise record.error(f"field '{key}' is empty", "the target text must say something; drop this record")

    # ------------------------------------------------------------------ text
    def _head(self) -> str:
        return f"{self.options.instruction}\n" if self.options.instruction else ""

    def format(self, record: Record) -> Example:
        """Pair: instruction, 'Input: <prompt>', 'Output:' and a newline; target the response.
        Plain: instruction, 'Output:' and a newline; target the whole text."""
        o, data = self.options, record.data
        if self._is_pair(data):
            source = data[o.prompt_field]
            body = f"Input: {source}\n" if source.strip() else ""
            return Example(prompt=f"{self._head()}{body}Output:\n", target=data[o.response_field])
        return Example(prompt=f"{self._head()}Output:\n", target=data[o.text_field])

    def reference(self, record: Record) -> str:
        o = self.options
        return record.data[o.response_field] if self._is_pair(record.data) else record.data[o.text_field]

    def parse(self, generated: str, record: Record) -> str:
        """The generated text up to any end-of-sequence marker, stripped. Never raises."""
        if not isinstance(generated, str):
            return ""
        eos = _EOS.search(generated)
        return (generated[:eos.start()] if eos else generated).strip()


# ---------------------------------------------------------------------------------------------- metrics


def _perplexity(mean_nll: float) -> float | None:
    """exp(mean NLL); None where it would overflow a float (a useless model, reported as such)."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return None


class PerplexityMetric(Metric):
    """Per-token perplexity of the split's gold targets under the adapted model and under the base model.

    `ratio` is adapted/base (computed from the NLL difference, so it stays finite when both are huge): well below
    1 means the adapter made the held-out targets much more likely. It scores likelihood of the references, not
    the quality of what the model generates.
    """

    needs_model: ClassVar[bool] = True

    def compute(self, run: Run, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        ctx = run.evaluation
        if ctx is None:
            raise ValueError("the perplexity metric needs the model: it scores while a run evaluates a split")
        adapted_nll, tokens = ctx.target_nll(adapted=True)
        base_nll, _ = ctx.target_nll(adapted=False)
        if not tokens:
            return {"adapted": None, "base": None, "ratio": None, "tokens": 0}
        adapted, base = adapted_nll / tokens, base_nll / tokens
        return {"adapted": _perplexity(adapted), "base": _perplexity(base), "ratio": _perplexity(adapted - base),
                "adapted_nll": adapted, "base_nll": base, "tokens": tokens}


class StyleProfile:
    """Keywords (case-insensitive, whole words where they begin/end with a word character) and regexes."""

    def __init__(self, keywords: Sequence[str], patterns: Sequence[str]) -> None:
        self.keywords = [k for k in keywords if k.strip()]
        self.patterns = list(patterns)
        compiled = [re.compile(p) for p in self.patterns]
        for keyword in self.keywords:
            k = keyword.strip()
            body = r"\s+".join(re.escape(w) for w in k.split())
            start = r"(?<!\w)" if re.match(r"\w", k) else ""
            end = r"(?!\w)" if re.search(r"\w$", k) else ""
            compiled.append(re.compile(start + body + end, re.IGNORECASE))
        self._compiled = compiled

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def matches(self, text: str) -> bool:
        return isinstance(text, str) and any(p.search(text) for p in self._compiled)


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


class StyleMatchMetric(Metric):
    """Share of generations that show the task's style profile, the same share for the gold references (the
    ceiling a perfect imitator would reach on this split), and the mean generated/reference length in words.

    The profile is `style_keywords` and `style_patterns` on the task's options. Without one, only the length
    ratio is reported, with "profile": "none". Matching is surface-level: it says whether the markers appear,
    not whether the text is fluent, faithful to the input, or otherwise in style.
    """

    def compute(self, run: Run, predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, Any]:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        options = getattr(run.task, "options", None)
        profile = StyleProfile(getattr(options, "style_keywords", None) or [],
                               getattr(options, "style_patterns", None) or [])
        ratios = [_words(p) / _words(r) for p, r in zip(predictions, references) if _words(r)]
        n = len(references)
        result: dict[str, Any] = {"records": n,
                                  "length_ratio": sum(ratios) / len(ratios) if ratios else None}
        if not profile:
            result["profile"] = "none"
            return result
        generated = sum(profile.matches(p) for p in predictions)
        gold = sum(profile.matches(r) for r in references)
        result["generated_match"] = generated / n if n else 0.0
        result["reference_match"] = gold / n if n else 0.0
        result["profile"] = f"{len(profile.keywords)} keywords, {len(profile.patterns)} patterns"
        return result


@hookimpl
def register_tasks(register: Any) -> None:
    register("style", StyleTask)


@hookimpl
def register_metrics(register: Any) -> None:
    register("perplexity", PerplexityMetric)
    register("style_match", StyleMatchMetric)
