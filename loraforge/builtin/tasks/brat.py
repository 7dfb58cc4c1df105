"""Brat standoff annotations read as NER records.

Brat keeps each document as `<doc>.txt` (the text) beside `<doc>.ann` (its annotations), the form most clinical
NER corpora ship in. Only text-bound (`T`) lines carry entity spans:

    T1<TAB>Label 10 17<TAB>mention
    T2<TAB>Label 30 34;40 45<TAB>mention written as the fragments joined by one space

`read_brat` turns a folder of such pairs (or one pair) into records the `ner` task accepts. The policies, in the
order a span meets them (each dropped span is counted once, under the first policy that drops it):

* **Files.** A folder gives every `*.txt` in it, sorted by name, each with its `.ann` beside it; a `.txt` or `.ann`
  path gives that one pair. A `.txt` without its `.ann`, or a folder without any `.txt`, is a DataError.
* **Offsets.** Texts are decoded as UTF-8 without newline translation, as brat itself reads them: offsets count
  the characters of the file as stored, so the `\\r` of a `\\r\\n` line ending counts, and so does a leading byte
  order mark (U+FEFF is character 0 and the first line's text starts after it).
* **Passages.** Each non-blank line of the `.txt` (split at `\\n` only) is one record: its text is the line as
  written, without the line ending (and without the byte order mark on line 1); `line` is its 1-based line number;
  entity offsets are relative to the line; `document` holds the file's stem, so data can be split by document,
  never by sentence. A blank line gives no record; a line without entities gives a record
  with none, so the model also learns where there is nothing to extract.
* **Lines of the `.ann`.** `T` lines are read; `E`, `R`, `A`, `M`, `N`, `#` and `*` lines (events, relations,
  attributes, normalizations, notes, equivalences) are ignored, as are blank lines. Any other line, or a `T` line
  without three tab-separated fields, integer offsets, start <= end and a label, is a DataError naming the `.ann`
  file and line. As in brat, the mention is everything after the second tab.
* **Label map.** `None` keeps every label as written. A mapping keeps the labels it maps, renamed; a span with any
  other label is dropped and counted in `unmapped` under its source label, before any other check.
* **Discontinuous spans** (`s1 e1;s2 e2`, with a kept label) are counted in `discontinuous` and handled by the
  `discontinuous` argument: "drop" (default) drops them; "join" keeps one span from the first start to the last end,
  gap included; "split" keeps each fragment as an entity of its own. Under "join" and "split" such a span goes on
  through the checks below and may be counted again where it is dropped (under "split", per fragment for
  `overlapping` and `duplicates`).
* **Mismatched.** A span with an offset past the end of the text (or inside the byte order mark) is dropped as
  `mismatched`. Each fragment's edges are then trimmed of whitespace, offsets adjusted; a fragment left empty
  makes the span `mismatched`.
* **Crossing.** A span (for "split", any of its fragments) that does not lie within one line is dropped as
  `crossing`: a passage cannot hold it.
* **Mention.** The mention in the `.ann` must equal the text at the offsets (the fragments joined by one space),
  both compared without surrounding whitespace; otherwise the offsets point somewhere else and the span is dropped
  as `mismatched`.
* **Flat entities.** Within a passage, spans are kept longest first (ties: earlier start, then the order of the
  labels in the map, or alphabetical order without a map). A span identical in start, end and mapped label to a
  kept one is a `duplicate` (e.g. two source labels mapped to one class); a span overlapping or nested in a kept
  one is dropped as `overlapping`.

Kept entities are sorted by start and carry their mention (`text`), so `NerTask.check` can verify every offset.
`BratCounts` records all of this for a report to the user (`summary()`).
"""

from __future__ import annotations

import collections
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...components import Record
from ...errors import DataError

Discontinuous = Literal["drop", "join", "split"]
Fragment = tuple[int, int]

_BOM = "\ufeff"
_IGNORED_KINDS = frozenset("ERAMN#*")
_T_FORM = ("a text-bound line is `T1<TAB>Label 10 17<TAB>mention` (a discontinuous span: "
           "`T1<TAB>Label 10 17;20 25<TAB>mention`), with character offsets into the .txt, end exclusive")
_POLICY_WORDS = {"drop": "dropped", "join": "joined", "split": "split into fragments"}
_TOP_UNMAPPED = 5


@dataclass
class BratCounts:
    """What `read_brat` kept and dropped, so a user can see what the label map and policies cost."""

    documents: int = 0
    passages: int = 0
    entities: int = 0
    unmapped: collections.Counter[str] = field(default_factory=collections.Counter)
    discontinuous: int = 0
    crossing: int = 0
    overlapping: int = 0
    duplicates: int = 0
    mismatched: int = 0
    #: the `discontinuous` policy the counts were made under ("" until a reader sets it), for `summary()`
    discontinuous_policy: str = ""

    def add(self, other: BratCounts) -> None:
        """Sum another's counts into this one (e.g. the train and test folders of one corpus)."""
        for name in ("documents", "passages", "entities", "discontinuous", "crossing", "overlapping", "duplicates",
                     "mismatched"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unmapped.update(other.unmapped)
        if not self.discontinuous_policy:
            self.discontinuous_policy = other.discontinuous_policy
        elif other.discontinuous_policy and other.discontinuous_policy != self.discontinuous_policy:
            self.discontinuous_policy = "mixed"

    def summary(self) -> str:
        """One line for users: what was kept, then each non-zero reason spans were dropped."""
        text = f"{self.documents:,} documents, {self.passages:,} passages, {self.entities:,} entities kept"
        dropped = [part for count, part in (
            (sum(self.unmapped.values()), self._unmapped_part()),
            (self.crossing, f"{self.crossing:,} crossing a line"),
            (self.overlapping, f"{self.overlapping:,} overlapping"),
            (self.duplicates, f"{self.duplicates:,} duplicates"),
            (self.mismatched, f"{self.mismatched:,} mismatched"),
        ) if count]
        if dropped:
            text += "; dropped: " + ", ".join(dropped)
        if self.discontinuous:
            policy = _POLICY_WORDS.get(self.discontinuous_policy, "mixed policies")
            text += f"; {self.discontinuous:,} discontinuous ({policy})"
        return text

    def _unmapped_part(self) -> str:
        """Total, then the labels that cost most, so a missing map entry stands out."""
        ranked = self.unmapped.most_common()
        top = [f"{label} {count:,}" for label, count in ranked[:_TOP_UNMAPPED]]
        rest = ranked[_TOP_UNMAPPED:]
        if rest:
            top.append(f"{len(rest)} other labels {sum(count for _, count in rest):,}")
        return f"{sum(self.unmapped.values()):,} unmapped ({', '.join(top)})"


@dataclass(frozen=True)
class _TextBound:
    """One `T` line of a .ann file."""

    label: str
    fragments: tuple[Fragment, ...]
    mention: str


@dataclass(frozen=True)
class _Passage:
    """One non-blank line of a .txt: document offsets of its text (line ending excluded) and its line number."""

    start: int
    end: int
    number: int


def read_brat(path: Path, label_map: Mapping[str, str] | None = None, *, discontinuous: Discontinuous = "drop",
              text_field: str = "text", entities_field: str = "entities",
              counts: BratCounts | None = None) -> Iterator[Record]:
    """NER records, one per non-blank line, from a brat folder or one `.txt`/`.ann` pair (policies: module doc).

    The files are found and paired at once, so a missing one is reported before any is read; documents are then
    read one at a time as records are taken. `counts`, when given, receives each document's counts once that
    document has been read in full, so after a DataError it holds the documents before the faulty one.
    """
    if discontinuous not in _POLICY_WORDS:
        raise ValueError(f"discontinuous must be one of {', '.join(_POLICY_WORDS)}, not {discontinuous!r}")
    pairs = _pairs(Path(path))
    return _records(pairs, label_map, discontinuous, text_field, entities_field, counts)


def _records(pairs: list[tuple[Path, Path]], label_map: Mapping[str, str] | None, policy: Discontinuous,
             text_field: str, entities_field: str, counts: BratCounts | None) -> Iterator[Record]:
    """The records of each pair in turn."""
    rank = _label_rank(label_map)
    for txt, ann in pairs:
        doc_counts = BratCounts(discontinuous_policy=policy)
        records = _document(txt, ann, label_map, policy, rank, text_field, entities_field, doc_counts)
        if counts is not None:
            counts.add(doc_counts)
        yield from records


# ---------------------------------------------------------------- files
def _pairs(path: Path) -> list[tuple[Path, Path]]:
    """(txt, ann) pairs, checked before any is read so a missing file is reported before work is done."""
    if path.is_dir():
        texts = sorted((p for p in path.glob("*.txt") if p.is_file()), key=lambda p: p.name)
        if not texts:
            raise DataError("no .txt documents in this folder", file=path,
                            hint="a brat folder holds <doc>.txt files, each with its <doc>.ann beside it")
    elif path.suffix in (".txt", ".ann"):
        texts = [path.with_suffix(".txt")]
        if not texts[0].is_file():
            raise DataError(f"the text of {path.name} is missing", file=texts[0],
                            hint="brat offsets point into <doc>.txt, which must sit beside <doc>.ann")
    elif not path.exists():
        raise DataError("no such file or folder", file=path,
                        hint="give a folder of brat documents, or one document's .txt or .ann file")
    else:
        raise DataError("not a brat document", file=path,
                        hint="give a folder of brat documents, or one document's .txt or .ann file")
    pairs = [(txt, txt.with_suffix(".ann")) for txt in texts]
    for txt, ann in pairs:
        if not ann.is_file():
            raise DataError(f"the annotations of {txt.name} are missing", file=ann,
                            hint="brat keeps a document's annotations in <doc>.ann beside <doc>.txt; "
                                 "an empty .ann file stands for a document without entities")
    return pairs


def _read(path: Path, encoding: str) -> str:
    """The file exactly as stored: no newline translation, since brat offsets count every character."""
    try:
        with open(path, encoding=encoding, newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"is not UTF-8 text ({exc.reason} at byte {exc.start})", file=path,
                        hint="brat files are UTF-8; convert the file (e.g. with iconv) and keep the offsets") from exc
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", file=path) from exc


# ---------------------------------------------------------------- .ann lines
def _parse_ann(content: str, file: Path) -> list[_TextBound]:
    """The `T` lines; other annotation kinds carry no spans of their own and are skipped."""
    found = []
    for number, raw in enumerate(content.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        kind = line[0]
        if kind == "T":
            found.append(_textbound(line, file, number))
        elif kind not in _IGNORED_KINDS:
            raise DataError(f"line starts with {kind!r}, not an annotation id (T, E, R, A, M, N, # or *)",
                            file=file, line=number, hint=f"is this a brat .ann file? {_T_FORM}")
    return found


def _textbound(line: str, file: Path, number: int) -> _TextBound:
    """One `T` line; anything malformed is an error, since guessing would shift or invent entities."""
    def bad(message: str) -> DataError:
        return DataError(message, file=file, line=number, hint=_T_FORM)

    fields = line.split("\t", 2)
    if len(fields) != 3:
        raise bad(f"text-bound line has {len(fields)} tab-separated field{'s' if len(fields) > 1 else ''}, not 3")
    ident, body, mention = fields
    label, _, offsets = body.strip().partition(" ")
    if not label or label.isdigit():
        raise bad(f"{ident} has no label before its offsets")
    fragments = []
    for piece in offsets.split(";"):
        bounds = piece.split()
        if len(bounds) != 2:
            raise bad(f"{ident} has offsets {piece.strip()!r}, not a start and an end")
        if not all(b.isascii() and b.isdigit() for b in bounds):
            raise bad(f"{ident} has offsets {piece.strip()!r}, not integers")
        start, end = int(bounds[0]), int(bounds[1])
        if start > end:
            raise bad(f"{ident} starts at {start}, after its end {end}")
        fragments.append((start, end))
    return _TextBound(label, tuple(fragments), mention)


# ---------------------------------------------------------------- documents
def _document(txt: Path, ann: Path, label_map: Mapping[str, str] | None, policy: Discontinuous,
              rank: Callable[[str], tuple[int, str]], text_field: str, entities_field: str,
              counts: BratCounts) -> list[Record]:
    """All records of one document; built in full so its counts are final before the first is yielded."""
    text = _read(txt, "utf-8")
    annotations = _parse_ann(_read(ann, "utf-8-sig"), ann)
    passages = _passages(text)
    starts = [p.start for p in passages]
    found: list[list[tuple[int, int, str]]] = [[] for _ in passages]
    for annotation in annotations:
        for index, start, end, label in _place(annotation, text, passages, starts, label_map, policy, counts):
            found[index].append((start, end, label))
    records = []
    for passage, spans in zip(passages, found):
        line_text = text[passage.start:passage.end]
        entities = [{"start": s - passage.start, "end": e - passage.start, "label": label, "text": text[s:e]}
                    for s, e, label in _flatten(spans, rank, counts)]
        counts.entities += len(entities)
        data: dict[str, Any] = {text_field: line_text, entities_field: entities, "document": txt.stem}
        records.append(Record(data, file=str(txt), line=passage.number))
    counts.documents += 1
    counts.passages += len(passages)
    return records


def _passages(text: str) -> list[_Passage]:
    """Non-blank lines split at `\\n` only: other characters Python counts as line breaks are text to brat."""
    passages = []
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        start, end = offset, offset + len(line)
        offset = end + 1
        if line.endswith("\r"):
            end -= 1
        if number == 1 and line.startswith(_BOM):
            start += 1
        if text[start:end].strip():
            passages.append(_Passage(start, end, number))
    return passages


def _place(annotation: _TextBound, text: str, passages: list[_Passage], starts: list[int],
           label_map: Mapping[str, str] | None, policy: Discontinuous,
           counts: BratCounts) -> list[tuple[int, int, int, str]]:
    """(passage index, start, end, label) in document offsets for each entity the annotation gives, counting why
    it gives none."""
    label = annotation.label if label_map is None else label_map.get(annotation.label)
    if label is None:
        counts.unmapped[annotation.label] += 1
        return []
    if len(annotation.fragments) > 1:
        counts.discontinuous += 1
        if policy == "drop":
            return []
    pieces = _pieces(annotation, text, policy, counts)
    if pieces is None:
        return []
    located = [i for i in (_passage_of(s, e, passages, starts) for s, e in pieces) if i is not None]
    if len(located) < len(pieces):
        counts.crossing += 1
        return []
    if not _mention_matches(annotation, text):
        counts.mismatched += 1
        return []
    return [(index, s, e, label) for index, (s, e) in zip(located, pieces)]


def _pieces(annotation: _TextBound, text: str, policy: Discontinuous, counts: BratCounts) -> list[Fragment] | None:
    """The trimmed spans the annotation becomes under the policy, or None (counted) when its offsets are unusable."""
    lowest = len(_BOM) if text.startswith(_BOM) else 0
    if any(s < lowest or e > len(text) for s, e in annotation.fragments):
        counts.mismatched += 1
        return None
    trimmed = [_trim(text, s, e) for s, e in annotation.fragments]
    if any(s >= e for s, e in trimmed):
        counts.mismatched += 1
        return None
    return [(trimmed[0][0], trimmed[-1][1])] if policy == "join" else trimmed


def _mention_matches(annotation: _TextBound, text: str) -> bool:
    """Brat writes the text at the offsets (fragments joined by one space); anything else means the offsets are
    wrong, so the entity would teach the model a span the annotator never marked."""
    joined = " ".join(text[s:e] for s, e in annotation.fragments)
    return annotation.mention.strip() == joined.strip()


def _trim(text: str, start: int, end: int) -> Fragment:
    """The span without whitespace at its edges: annotators often select a space with a word."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _passage_of(start: int, end: int, passages: list[_Passage], starts: list[int]) -> int | None:
    """Index of the passage holding the whole span, or None when it crosses a line ending."""
    index = bisect_right(starts, start) - 1
    if index < 0 or end > passages[index].end:
        return None
    return index


def _label_rank(label_map: Mapping[str, str] | None) -> Callable[[str], tuple[int, str]]:
    """Tie-break between equally long spans at one start: the map's order of classes, else alphabetical."""
    if label_map is None:
        return lambda label: (0, label)
    order: dict[str, int] = {}
    for target in label_map.values():
        order.setdefault(target, len(order))
    return lambda label: (order.get(label, len(order)), label)


def _flatten(spans: list[tuple[int, int, str]], rank: Callable[[str], tuple[int, str]],
             counts: BratCounts) -> list[tuple[int, int, str]]:
    """Flat entities for one passage: the `ner` task cannot learn nested or overlapping spans."""
    kept: list[tuple[int, int, str]] = []
    seen: set[tuple[int, int, str]] = set()
    for span in sorted(spans, key=lambda sp: (sp[0] - sp[1], sp[0], rank(sp[2]))):
        start, end, _ = span
        if span in seen:
            counts.duplicates += 1
        elif any(start < k_end and k_start < end for k_start, k_end, _ in kept):
            counts.overlapping += 1
        else:
            kept.append(span)
            seen.add(span)
    return sorted(kept)
