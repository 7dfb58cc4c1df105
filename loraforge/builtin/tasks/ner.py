"""Generative named-entity recognition: the reference task.

The model reads an instruction, the allowed labels and the text, and answers in one of two styles:

* ``lines`` (default): one `LABEL: mention` line per entity in order of appearance, or `none`. Short answers,
  the usual choice for pretrained instruction models.
* ``inline``: the text written out again with each entity marked in place, `[LABEL mention]`. Longer answers,
  but the model copies the text in order and decides at each word whether an entity starts or ends there: it
  never has to jump to the next mention. Small models that copy imperfectly learn this far better.

Either way mentions are mapped back to character offsets by searching the text, so the answer holds no offsets
for the model to count and every prediction is grounded in the input.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ...components import Example, Record, Task
from ...constraints import Constraint
from ...errors import DataError
from ...hookspecs import hookimpl
from ...schema import option
from .brat import BratCounts, read_brat
from .ner_answers import MarkedCopy, MentionLines, normalize

Span = tuple[int, int, str]

DEFAULT_INSTRUCTION = (
    "Extract the named entities from the text. Answer with one 'LABEL: mention' line per entity, "
    "in order of appearance, or 'none'."
)
INLINE_INSTRUCTION = "Write the text again, marking each named entity in place as [LABEL mention]."
#: a generation is cut here: end-of-sequence markers a tokenizer may leave in decoded text
_EOS = re.compile(r"</s>|<\|?(?:end|eos|eot|im_end)[a-z_|]*>", re.IGNORECASE)
_BULLET = re.compile(r"^(?:[-*•+]\s*|\d+[.)]\s+)+")
_TAG = re.compile(r"^([BI])-(\S+)$")
_QUOTES = "\"'`“”‘’*"
#: a line answer ends once the same line comes this many times in a row (`NerTask.stops`)
REPEATS_TO_STOP = 3
_MAX_GENERATED = 50_000  # bounds parse time on runaway generations
_MARK = re.compile(r"\[\s*([^\s\[\]:]+)\s*:?\s+([^\[\]\n]*?)\s*\]")  # [LABEL mention]


@dataclass(frozen=True, eq=False)
class Spans:
    """Entity spans of one text; keeps the text so metrics can tokenize it. Equal when the spans are equal."""

    text: str
    spans: tuple[Span, ...] = field(default=())

    def __iter__(self) -> Iterator[Span]:
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Spans):
            return self.spans == other.spans
        if isinstance(other, (list, tuple)):
            return self.spans == tuple(tuple(s) for s in other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.spans)

    def __repr__(self) -> str:
        return f"Spans({list(self.spans)!r})"

    def entities(self) -> list[dict[str, Any]]:
        """JSON-ready entities (with their mention), for prediction files."""
        return [{"start": s, "end": e, "label": lab, "text": self.text[s:e]} for s, e, lab in self.spans]


class NerTask(Task):
    """Named entities as `LABEL: mention` lines or inline `[LABEL mention]` marks; records carry character offsets
    (end exclusive)."""

    @dataclass
    class Options:
        labels: list[str] = option(help="Entity labels the model may produce, e.g. [\"PER\", \"ORG\", \"LOC\"].")
        output: Literal["lines", "inline"] = option(
            "lines", help="Answer style: `LABEL: mention` lines, or the text rewritten with `[LABEL mention]` marks "
                          "(easier for small models; see docs/tasks.md).")
        instruction: str | None = option(
            None, help="First line of every prompt; the labels follow it. Default: one fitting `output`.")
        text_field: str = option("text", help="Record key holding the text.")
        entities_field: str = option("entities", help="Record key holding the list of {start, end, label}.")
        label_map: dict[str, str] | None = option(
            None, help="Source label -> task label for brat folders, e.g. {Disease_disorder = \"CONDITION\"}; "
                       "spans with an unmapped label are dropped and counted.")
        discontinuous: Literal["drop", "join", "split"] = option(
            "drop", help="brat spans written in fragments: drop them, join them into one span from the first start "
                         "to the last end, or split them into one entity per fragment (counted either way).")

        def check(self) -> Iterator[tuple[str, str]]:
            """Labels are matched case-insensitively and written as `LABEL: ...`, so they must stay distinct."""
            if not self.labels:
                yield "labels", "must list at least one label"
            seen: set[str] = set()
            for label in self.labels:
                if not label.strip() or ":" in label or "\n" in label or label != label.strip():
                    yield "labels", f"label {label!r} must be non-empty, without ':' or surrounding spaces"
                elif label.lower() in seen:
                    yield "labels", f"label {label!r} is listed twice (labels are compared case-insensitively)"
                seen.add(label.lower())
            for source, target in (self.label_map or {}).items():
                if target not in self.labels:
                    yield f"label_map.{source}", f"maps to {target!r}, which is not in `labels` " \
                                                 f"({', '.join(self.labels)})"

    formats: ClassVar[tuple[str, ...]] = ("conll", "brat")
    default_metrics: ClassVar[tuple[str, ...]] = ("seqeval",)

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._by_lower = {label.lower(): label for label in self.options.labels}
        self._reports: dict[str, BratCounts] = {}

    # ------------------------------------------------------------------ records
    def _text(self, record: Record) -> str:
        return record.data[self.options.text_field]

    def _spans(self, record: Record) -> tuple[Span, ...]:
        ents = record.data.get(self.options.entities_field) or []
        return tuple(sorted((int(e["start"]), int(e["end"]), str(e["label"])) for e in ents))

    def check(self, record: Record) -> None:
        """Reject records the model would learn wrong things from, naming file, line and the fix."""
        o = self.options

        data = record.data if isinstance(record.data, dict) else {}
        text = data.get(o.text_field)
        if not isinstance(text, str):
            got = "missing" if o.text_field not in data else f"a {type(text).__name__}, not a string"
            keys = ", ".join(map(str, data)) or "none"
            raise record.error(f"field '{o.text_field}' is {got}",
                 f"each record needs the text under '{o.text_field}' (keys found: {keys});"
                 " set `task.text_field` in the recipe if it is stored under another key")
        ents = data.get(o.entities_field)
        if not isinstance(ents, list):
            got = "missing" if o.entities_field not in data else f"a {type(ents).__name__}, not a list"
            raise record.error(f"field '{o.entities_field}' is {got}",
                 f"give a list of {{start, end, label}} under '{o.entities_field}' ([] when there are none);"
                 " set `task.entities_field` in the recipe if it is stored under another key")
        where = "entity {i}"
        spans: list[tuple[int, int, int]] = []
        for i, ent in enumerate(ents):
            if not isinstance(ent, dict):
                raise record.error(f"{where.format(i=i)} is a {type(ent).__name__}, not a table",
                     'write each entity as {"start": 0, "end": 5, "label": "PER"}')
            missing = [k for k in ("start", "end", "label") if k not in ent]
            if missing:
                raise record.error(f"{where.format(i=i)} has no {', '.join(missing)}",
                     'each entity needs "start" and "end" (character offsets, end exclusive) and "label"')
            start, end, label = ent["start"], ent["end"], ent["label"]
            for key, value in (("start", start), ("end", end)):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise record.error(f"{where.format(i=i)} has {key} {value!r}, not an integer",
                         "offsets are integer character positions into the text")
            if not 0 <= start <= len(text) or not 0 <= end <= len(text):
                raise record.error(f"{where.format(i=i)} [{start}, {end}) lies outside the text (length {len(text)})",
                     "offsets count characters from 0, end exclusive; check the offsets were not computed on tokens"
                     " or bytes")
            if start >= end:
                raise record.error(f"{where.format(i=i)} has start {start} >= end {end}",
                     "end is exclusive: an entity covering text[3:8] has start 3 and end 8")
            mention = ent.get("text")
            if mention is not None and mention != text[start:end]:
                raise record.error(f"{where.format(i=i)} mention {mention!r} does not match text[{start}:{end}] = "
                     f"{text[start:end]!r}",
                     "fix the offsets (or the mention); the offsets are what training uses")
            if not text[start:end].strip():
                raise record.error(f"{where.format(i=i)} [{start}, {end}) covers only whitespace", "fix or drop this entity")
            if not isinstance(label, str) or label not in o.labels:
                raise record.error(f"{where.format(i=i)} has label {label!r}, which is not declared",
                     f"add it to `task.labels` in the recipe or fix the data (declared: {', '.join(o.labels)})")
            spans.append((start, end, i))
        spans.sort()
        for (s1, e1, i1), (s2, e2, i2) in zip(spans, spans[1:]):
            if s2 < e1:
                raise record.error(f"entities overlap: entity {i1} [{s1}, {e1}) {text[s1:e1]!r} and entity {i2} [{s2}, {e2}) "
                     f"{text[s2:e2]!r}", "this task supports flat entities only: keep one of the two")

    def read(self, path: Path, fmt: str = "conll") -> Iterable[Record]:
        """CoNLL/BIO (token first, tag in the last column, blank lines between sentences), or brat standoff
        (`brat.read_brat`: passages by line, the label map and the span policies stated there)."""
        if fmt == "brat":
            o = self.options
            counts = self._reports[str(path)] = BratCounts()
            yield from read_brat(path, o.label_map, discontinuous=o.discontinuous, text_field=o.text_field,
                                 entities_field=o.entities_field, counts=counts)
            return
        yield from self._read_conll(path, fmt)

    def read_report(self, path: Path) -> str | None:
        counts = self._reports.get(str(path))
        return counts.summary() if counts is not None else None

    def _read_conll(self, path: Path, fmt: str) -> Iterable[Record]:
        if fmt != "conll":
            raise DataError(f"the ner task cannot read format '{fmt}'", file=path,
                            hint=f"use jsonl or csv, or one of: {', '.join(self.formats)}")
        try:
            lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read: {exc}", file=path, hint="CoNLL files must be UTF-8 text") from exc
        sentence: list[tuple[str, str]] = []
        first = 0
        for number, line in enumerate(lines, start=1):
            parts = line.split()
            if not parts or parts[0].startswith("-DOCSTART-"):
                if sentence:
                    yield self._conll_record(sentence, str(path), first)
                sentence = []
                continue
            if len(parts) < 2:
                raise DataError(f"token {parts[0]!r} has no tag column", file=path, line=number,
                                hint="write one token per line followed by its tag, e.g. 'Paris B-LOC'")
            tag = parts[-1]
            if tag != "O" and not _TAG.match(tag):
                raise DataError(f"tag {tag!r} is not O, B-<label> or I-<label>", file=path, line=number,
                                hint="only the BIO scheme is read; the tag must be the last column")
            if not sentence:
                first = number
            sentence.append((parts[0], tag))
        if sentence:
            yield self._conll_record(sentence, str(path), first)

    def _conll_record(self, tokens: list[tuple[str, str]], file: str, line: int) -> Record:
        """Tokens joined by single spaces; an I- that does not continue its label starts an entity (as seqeval)."""
        pieces: list[str] = []
        entities: list[dict[str, Any]] = []
        offset = 0
        open_label: str | None = None
        for token, tag in tokens:
            if pieces:
                offset += 1
            start, end = offset, offset + len(token)
            pieces.append(token)
            offset = end
            if tag == "O":
                open_label = None
                continue
            prefix, label = tag[0], tag[2:]
            if prefix == "I" and open_label == label:
                entities[-1]["end"] = end
            else:
                entities.append({"start": start, "end": end, "label": label})
                open_label = label
        data = {self.options.text_field: " ".join(pieces), self.options.entities_field: entities}
        return Record(data, file=file, line=line)

    # ------------------------------------------------------------------ text
    def format(self, record: Record) -> Example:
        """Compact prompt ending in 'Entities:\\n'; target is one 'LABEL: mention' line per entity (or 'none'), or
        with `output = "inline"` the text with `[LABEL mention]` marks."""
        text = self._text(record)
        o = self.options
        inline = o.output == "inline"
        instruction = o.instruction or (INLINE_INSTRUCTION if inline else DEFAULT_INSTRUCTION)
        prompt = f"{instruction}\nLabels: {', '.join(o.labels)}\nText: {text}\nEntities:\n"
        if inline:
            return Example(prompt=prompt, target=normalize(self._marked(text, self._spans(record))))
        lines = [f"{label}: {normalize(text[s:e])}" for s, e, label in self._spans(record)]
        return Example(prompt=prompt, target="\n".join(lines) if lines else "none")

    @staticmethod
    def _marked(text: str, spans: Sequence[Span]) -> str:
        pieces, pos = [], 0
        for start, end, label in spans:
            pieces += [text[pos:start], f"[{label} {text[start:end]}]"]
            pos = end
        return "".join(pieces) + text[pos:]

    def reference(self, record: Record) -> Spans:
        return Spans(self._text(record), self._spans(record))

    def constraint(self, record: Record) -> Constraint:
        """Inline answers must be the text itself with marks added; line answers must name declared labels and
        mentions found in the text."""
        kind = MarkedCopy if self.options.output == "inline" else MentionLines
        return kind(self._text(record), self.options.labels)

    def stops(self, generated: str) -> bool:
        """Line answers end at a line written three times in a row: a model caught in a loop (k-shot base models
        are) repeats one to the token budget. Gold answers almost never do (3 of MACCROBAT's 3,723 passages)."""
        if self.options.output == "inline":
            return False
        lines = generated.split("\n")[:-1][-REPEATS_TO_STOP:]  # complete lines only
        return len(lines) == REPEATS_TO_STOP and bool(lines[0].strip()) and lines.count(lines[0]) == REPEATS_TO_STOP

    def parse(self, generated: str, record: Record) -> Spans:
        """Map 'LABEL: mention' lines (or inline `[LABEL mention]` marks) to offsets; lenient about layout, strict
        about grounding. Never raises."""
        text = record.data.get(self.options.text_field) if isinstance(record.data, dict) else None
        if not isinstance(text, str):
            return Spans("", ())
        if not isinstance(generated, str):
            return Spans(text, ())
        generated = generated[:_MAX_GENERATED]
        eos = _EOS.search(generated)
        if eos:
            generated = generated[:eos.start()]
        starts: list[int] = []
        accepted: list[Span] = []  # sorted by start, parallel to `starts`
        cursor: dict[str, int] = {}
        failed: set[object] = set()
        last_end = 0
        for label_part, mention in self._answers(generated):
            label = self._by_lower.get(label_part.strip().strip(_QUOTES + "[]").strip().lower())
            if label is None:
                continue
            found = self._locate(text, mention, cursor, failed, last_end, starts, accepted)
            if found is None:
                continue
            key, start, end = found
            i = bisect_right(starts, start)
            starts.insert(i, start)
            accepted.insert(i, (start, end, label))
            cursor[key] = end
            last_end = end
        return Spans(text, tuple(accepted))

    def _answers(self, generated: str) -> Iterator[tuple[str, str]]:
        """(label, mention) pairs in the order written."""
        if self.options.output == "inline":
            for match in _MARK.finditer(generated):
                yield match.group(1), match.group(2)
            return
        for raw in generated.splitlines():
            label_part, colon, mention = _BULLET.sub("", raw.strip()).partition(":")
            if colon:
                yield label_part, mention

    def _locate(self, text: str, mention: str, cursor: dict[str, int], failed: set[object], last_end: int,
                starts: list[int], accepted: list[Span]) -> tuple[str, int, int] | None:
        """First free occurrence: after the previous entity, then anywhere after this mention's last use;
        word-boundary matches before partial-word ones. A search that failed from this mention's cursor fails
        forever (spans only get added, the cursor only moves on success): `failed` keeps runaway generations fast."""
        variants = []
        for m in (mention, mention.strip().strip(_QUOTES), mention.strip().rstrip(".,;")):
            m = normalize(m)
            if m and m not in variants and m not in failed:
                variants.append(m)
        for m in variants:
            body = r"\s+".join(re.escape(w) for w in m.split())
            if re.search(body, text, re.IGNORECASE) is None:
                failed.add(m)
                continue
            # whole words only where the mention starts/ends with a word character ('York', not 'Yorkshire')
            bounded = ("(?<!\\w)" if re.match(r"\w", m) else "") + body + ("(?!\\w)" if re.search(r"\w$", m) else "")
            origin = cursor.get(m, 0)
            froms = [max(origin, last_end), origin] if last_end > origin else [origin]
            for flags in (0, re.IGNORECASE):
                for kind, source in (("word", bounded), ("any", body)):
                    if (m, flags, kind) in failed:
                        continue
                    pattern = re.compile(source, flags)
                    for pos in froms:
                        hit = _first_free(pattern, text, pos, starts, accepted)
                        if hit is not None:
                            return (m, *hit)
                    failed.add((m, flags, kind))
            failed.add(m)
        return None


def _first_free(pattern: re.Pattern[str], text: str, pos: int, starts: list[int],
                accepted: Sequence[Span]) -> tuple[int, int] | None:
    """Leftmost match from `pos` that overlaps no accepted span."""
    while True:
        match = pattern.search(text, pos)
        if match is None:
            return None
        s, e = match.span()
        i = bisect_right(starts, s)
        if i > 0 and accepted[i - 1][1] > s:
            pos = accepted[i - 1][1]  # every match starting inside that span overlaps it
            continue
        if i < len(accepted) and accepted[i][0] < e:
            pos = s + 1
            continue
        return s, e


@hookimpl
def register_tasks(register: Any) -> None:
    register("ner", NerTask)
