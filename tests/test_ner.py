"""The NER task: record checks, CoNLL reading, prompt/target format and lenient parsing of generations."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from loraforge.builtin.tasks.ner import DEFAULT_INSTRUCTION, INLINE_INSTRUCTION, NerTask, Spans, register_tasks
from loraforge.components import Record
from loraforge.errors import DataError
from loraforge.schema import parse

LABELS = ["PER", "LOC", "ORG", "MISC"]


@pytest.fixture
def task() -> NerTask:
    return NerTask(NerTask.Options(labels=list(LABELS)))


def rec(text: str, *spans: tuple[int, int, str], line: int = 1, **extra: object) -> Record:
    ents = [{"start": s, "end": e, "label": lab} for s, e, lab in spans]
    return Record({"text": text, "entities": ents, **extra}, file="data.jsonl", line=line)


def span_of(text: str, mention: str, label: str, nth: int = 0) -> tuple[int, int, str]:
    start = -1
    for _ in range(nth + 1):
        start = text.index(mention, start + 1)
    return start, start + len(mention), label


# ---------------------------------------------------------------- options and registration
def test_options_parse_and_check() -> None:
    opts, problems = parse(NerTask.Options, {"labels": ["PER", "LOC"]}, "task")
    assert problems == [] and opts.labels == ["PER", "LOC"] and opts.text_field == "text"
    assert opts.output == "lines" and opts.instruction is None  # the instruction then fits the output style
    _, problems = parse(NerTask.Options, {"labels": ["PER"], "output": "tags"}, "task")
    assert [p.key for p in problems] == ["task.output"]
    _, problems = parse(NerTask.Options, {}, "task")
    assert [p.key for p in problems] == ["task.labels"]
    _, problems = parse(NerTask.Options, {"labels": []}, "task")
    assert "at least one" in problems[0].message
    _, problems = parse(NerTask.Options, {"labels": ["PER", "per"]}, "task")
    assert "twice" in problems[0].message
    _, problems = parse(NerTask.Options, {"labels": ["A:B", " X"]}, "task")
    assert len(problems) == 2


def test_registers_under_ner() -> None:
    found: dict[str, object] = {}
    register_tasks(lambda name, factory: found.setdefault(name, factory))
    assert found == {"ner": NerTask}
    assert NerTask.formats == ("conll", "brat") and NerTask.default_metrics == ("seqeval",)


# ---------------------------------------------------------------- format
def test_format_exact(task: NerTask) -> None:
    text = "John lives in Paris."
    r = rec(text, span_of(text, "Paris", "LOC"), span_of(text, "John", "PER"))
    ex = task.format(r)
    assert ex.prompt == f"{DEFAULT_INSTRUCTION}\nLabels: PER, LOC, ORG, MISC\nText: {text}\nEntities:\n"
    assert ex.target == "PER: John\nLOC: Paris"
    assert task.format(rec("Nothing here.")).target == "none"
    assert task.reference(r) == [(0, 4, "PER"), (14, 19, "LOC")]


def test_format_normalizes_whitespace_in_mentions(task: NerTask) -> None:
    text = "We met in New\n  York today."
    r = rec(text, (10, 20, "LOC"))
    assert task.format(r).target == "LOC: New York"
    assert task.parse(task.format(r).target, r) == task.reference(r)


def test_custom_fields(tmp_path: Path) -> None:
    task = NerTask(NerTask.Options(labels=["PER"], text_field="sentence", entities_field="ents"))
    r = Record({"sentence": "Ann ran.", "ents": [{"start": 0, "end": 3, "label": "PER"}]}, "f", 3)
    task.check(r)
    assert task.format(r).target == "PER: Ann"
    assert task.parse("PER: Ann", r) == [(0, 3, "PER")]


# ---------------------------------------------------------------- round trip
FILLER = ["the", "a", "visited", "said", "on", "Monday", "and", "with", "Yorkshire", "Parisian", ",", ".", "(", ")"]
ENTITY_WORDS = ["Paris", "York", "New", "John", "Smith", "U.S.", "AT&T", "Acme", "Corp", "Müller", "São", "Paulo"]


def random_record(rng: random.Random) -> Record:
    """Filler words never form an entity, so every mention has one right occurrence to find."""
    text, spans = "", []
    for _ in range(rng.randint(0, 25)):
        sep = rng.choice([" ", " ", " ", "  ", "\n"]) if text else ""
        if rng.random() < 0.35:
            words = [rng.choice(ENTITY_WORDS) for _ in range(rng.randint(1, 3))]
            chunk = rng.choice([" ", " ", "\n"]).join(words)
            sep = sep or " "
            start = len(text) + len(sep)
            text += sep + chunk
            spans.append((start, len(text), rng.choice(LABELS)))
        else:
            word = rng.choice(FILLER)
            text += ("" if word in ",.)" else sep) + word
    return rec(text, *spans)


@pytest.mark.parametrize("output", ["lines", "inline"])
def test_round_trip_many_records(output: str) -> None:
    task = NerTask(NerTask.Options(labels=list(LABELS), output=output))
    rng = random.Random(1234)
    for _ in range(600):
        r = random_record(rng)
        task.check(r)
        target = task.format(r).target
        assert task.parse(target, r) == task.reference(r), (r.data, target)
        assert not target.endswith("\n")


# ---------------------------------------------------------------- inline output
@pytest.fixture
def inline() -> NerTask:
    return NerTask(NerTask.Options(labels=list(LABELS), output="inline"))


def test_inline_format_exact(inline: NerTask) -> None:
    text = "John lives in New\n York."
    r = rec(text, span_of(text, "John", "PER"), (14, 23, "LOC"))
    ex = inline.format(r)
    assert ex.prompt == (f"{INLINE_INSTRUCTION}\nLabels: PER, LOC, ORG, MISC\nText: {text}\nEntities:\n")
    assert ex.target == "[PER John] lives in [LOC New York]."  # one line, like the mention lines
    assert inline.format(rec("Nothing here.")).target == "Nothing here."
    custom = NerTask(NerTask.Options(labels=["PER"], output="inline", instruction="Tag people."))
    assert custom.format(r).prompt.startswith("Tag people.\nLabels: PER\n")


def test_inline_parse_is_lenient_about_the_copy_and_strict_about_grounding(inline: NerTask) -> None:
    text = "Paris Hilton visited Paris, then Acme Corp."
    r = rec(text)
    hilton, paris, acme = span_of(text, "Paris Hilton", "PER"), span_of(text, "Paris", "LOC", 1), \
        span_of(text, "Acme Corp", "ORG")
    # a garbled copy outside the marks does not matter; marks map to successive occurrences in order
    assert inline.parse("[PER Paris Hilton] visted [LOC Paris], then [ORG Acme Corp]", r) == [hilton, paris, acme]
    # a colon after the label, lower case, spaces inside the brackets
    assert inline.parse("[ per: Paris Hilton ] went to [loc Paris]", r) == [hilton, paris]
    # unknown labels, mentions not in the text, unclosed and empty marks, bare brackets: ignored
    assert inline.parse("[CITY Paris] [PER Bob] [ORG Acme Corp [LOC] [] [LOC Paris", r) == []
    # line-style answers mean nothing to the inline parser, and the other way round
    assert inline.parse("PER: Paris Hilton", r) == []
    assert NerTask(NerTask.Options(labels=list(LABELS))).parse("[PER Paris Hilton]", r) == []


def test_round_trip_repeated_mentions(task: NerTask) -> None:
    text = "Paris Hilton visited Paris, then Paris again with Paris Hilton."
    spans = [span_of(text, "Paris Hilton", "PER"), span_of(text, "Paris", "LOC", 1),
             span_of(text, "Paris", "LOC", 2), span_of(text, "Paris Hilton", "PER", 1)]
    r = rec(text, *spans)
    target = task.format(r).target
    assert target == "PER: Paris Hilton\nLOC: Paris\nLOC: Paris\nPER: Paris Hilton"
    assert task.parse(target, r) == task.reference(r)


def test_parse_follows_order_of_appearance(task: NerTask) -> None:
    text = "Paris is big. John went to Paris."
    r = rec(text, span_of(text, "John", "PER"), span_of(text, "Paris", "LOC", 1))
    assert task.parse(task.format(r).target, r) == task.reference(r)


# ---------------------------------------------------------------- lenient parsing
TEXT = "John Smith flew from York to Yorkshire for Acme Corp."


@pytest.fixture
def r() -> Record:
    return rec(TEXT)


def test_parse_tolerates_layout(task: NerTask, r: Record) -> None:
    expected = [(0, 10, "PER"), (21, 25, "LOC"), (43, 52, "ORG")]
    variants = [
        "PER: John Smith\nLOC: York\nORG: Acme Corp",
        "  - PER:   John Smith  \n* loc: York\n\n1. Org : Acme  Corp",
        "**PER**: John Smith\n[LOC]: \"York\"\nORG: Acme Corp,",
        "PER: John Smith\nLOC: York\nORG: Acme Corp</s>",
        "PER: John Smith\nLOC: York\nORG: Acme Corp<|im_end|>\nPER: Paul",
        "PER: John Smith\r\nLOC: York\r\nORG: Acme Corp\n",
        "LOC: York\nPER: John Smith\nORG: Acme Corp",
    ]
    for generated in variants:
        assert task.parse(generated, r) == expected, generated


def test_parse_ignores_unknown_labels_and_missing_mentions(task: NerTask, r: Record) -> None:
    generated = "DATE: Monday\nPER: Paul\nJohn Smith\nPER John Smith\nLOC: York\n: York\nPER:"
    assert task.parse(generated, r) == [(21, 25, "LOC")]


def test_parse_prefers_word_boundaries(task: NerTask) -> None:
    r = rec("Yorkshire is not York.")
    assert task.parse("LOC: York", r) == [(17, 21, "LOC")]
    # a second "York" is a duplicate, not the "York" inside "Yorkshire" before the first one
    assert task.parse("LOC: York\nLOC: York", r) == [(17, 21, "LOC")]
    assert task.parse("LOC: Yorks", r) == [(0, 5, "LOC")]  # inside a word only when nothing else fits


def test_parse_drops_overlapping_predictions(task: NerTask, r: Record) -> None:
    assert task.parse("PER: John Smith\nPER: John\nPER: Smith flew", r) == [(0, 10, "PER")]


def test_parse_repeated_mentions_map_to_successive_occurrences(task: NerTask) -> None:
    r = rec("Ann met Ann and Ann.")
    assert task.parse("PER: Ann\nPER: Ann", r) == [(0, 3, "PER"), (8, 11, "PER")]
    assert task.parse("PER: Ann\nPER: Ann\nPER: Ann\nPER: Ann", r) == [(0, 3, "PER"), (8, 11, "PER"),
                                                                             (16, 19, "PER")]


def test_parse_case_fallback(task: NerTask, r: Record) -> None:
    assert task.parse("PER: john smith", r) == [(0, 10, "PER")]


@pytest.mark.parametrize("generated", [
    "", "none", "None.", "\n\n\n", ":::", "PER", "PER:", "PER: ", "  -  ", "\x00\x01PER: \ud800",
    "PER: (", "PER: [a-z]+", "PER: .*", "LOC: \\", "PER: " + "John " * 5000, "x" * 200_000,
    "PER: John\n" * 20_000, "🙂: 🙂\nPER: 🙂", None, 42, b"PER: John",
])
def test_parse_never_raises(task: NerTask, r: Record, generated: object) -> None:
    out = task.parse(generated, r)  # type: ignore[arg-type]
    assert isinstance(out, Spans)
    assert all(TEXT[s:e] and lab in LABELS for s, e, lab in out)


def test_parse_on_broken_record_never_raises(task: NerTask) -> None:
    assert task.parse("PER: John", Record({"entities": []}, "f", 1)) == []


def test_spans_value() -> None:
    a = Spans("John ran", ((0, 4, "PER"),))
    assert a == Spans("other text", ((0, 4, "PER"),)) and hash(a) == hash(Spans("", ((0, 4, "PER"),)))
    assert a == [(0, 4, "PER")] and a != [] and list(a) == [(0, 4, "PER")] and len(a) == 1
    assert a.entities() == [{"start": 0, "end": 4, "label": "PER", "text": "John"}]


# ---------------------------------------------------------------- check()
def check_error(task: NerTask, record: Record) -> DataError:
    with pytest.raises(DataError) as info:
        task.check(record)
    err = info.value
    assert err.file == "data.jsonl" and err.problems[0].line == record.line and err.hint
    return err


def test_check_accepts_good_records(task: NerTask) -> None:
    task.check(rec("John ran.", (0, 4, "PER")))
    task.check(rec("Nothing.", ))
    task.check(Record({"text": "Ann", "entities": [{"start": 0, "end": 3, "label": "PER", "text": "Ann"}]}, "f", 1))
    task.check(rec("AB", (0, 1, "PER"), (1, 2, "LOC")))  # touching is not overlapping


def test_check_text(task: NerTask) -> None:
    err = check_error(task, Record({"entities": []}, "data.jsonl", 7))
    assert "'text' is missing" in str(err) and "line 7" in str(err) and "task.text_field" in str(err)
    err = check_error(task, Record({"text": 5, "entities": []}, "data.jsonl", 2))
    assert "not a string" in str(err)


def test_check_entities_field(task: NerTask) -> None:
    err = check_error(task, Record({"text": "a"}, "data.jsonl", 1))
    assert "'entities' is missing" in str(err) and "task.entities_field" in str(err)
    err = check_error(task, Record({"text": "a", "entities": {"start": 0}}, "data.jsonl", 1))
    assert "not a list" in str(err)


@pytest.mark.parametrize("entity, words", [
    ("PER", ["not a table"]),
    ({"start": 0, "end": 4}, ["no label"]),
    ({"label": "PER"}, ["no start, end"]),
    ({"start": "0", "end": 4, "label": "PER"}, ["start '0'", "not an integer"]),
    ({"start": 0, "end": 4.0, "label": "PER"}, ["end 4.0", "not an integer"]),
    ({"start": True, "end": 4, "label": "PER"}, ["not an integer"]),
    ({"start": 0, "end": 40, "label": "PER"}, ["outside the text", "length 9"]),
    ({"start": -1, "end": 3, "label": "PER"}, ["outside the text"]),
    ({"start": 4, "end": 4, "label": "PER"}, ["start 4 >= end 4"]),
    ({"start": 5, "end": 2, "label": "PER"}, ["start 5 >= end 2"]),
    ({"start": 0, "end": 4, "label": "PER", "text": "Jon"}, ["'Jon'", "text[0:4] = 'John'"]),
    ({"start": 4, "end": 5, "label": "PER"}, ["only whitespace"]),
    ({"start": 0, "end": 4, "label": "DATE"}, ["'DATE'", "not declared"]),
    ({"start": 0, "end": 4, "label": "per"}, ["'per'", "not declared"]),
])
def test_check_entity_errors(task: NerTask, entity: object, words: list[str]) -> None:
    r = Record({"text": "John ran.", "entities": [entity]}, "data.jsonl", 4)
    err = check_error(task, r)
    for word in words:
        assert word in str(err), str(err)


def test_check_undeclared_label_hint(task: NerTask) -> None:
    err = check_error(task, rec("John ran.", (0, 4, "DATE")))
    assert "add it to `task.labels`" in err.hint and "PER, LOC, ORG, MISC" in err.hint


def test_check_overlap_names_both(task: NerTask) -> None:
    text = "New York City"
    err = check_error(task, rec(text, (4, 13, "LOC"), (0, 8, "LOC"), line=9))
    assert "entity 1 [0, 8) 'New York'" in str(err) and "entity 0 [4, 13) 'York City'" in str(err)


# ---------------------------------------------------------------- CoNLL
def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "train.conll"
    path.write_text(content, encoding="utf-8")
    return path


def test_conll_offsets(task: NerTask, tmp_path: Path) -> None:
    path = write(tmp_path, "-DOCSTART- -X- -X- O\n\n"
                           "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n"
                           ". . O O\n\n\n"
                           "Peter\tB-PER\nBlackburn\tI-PER\n\n"
                           "New B-LOC\nYork I-LOC\nYork B-LOC\nand O\nBerlin I-LOC\nJohn I-PER\nSmith I-LOC\n")
    records = list(task.read(path, "conll"))
    assert [r.line for r in records] == [3, 10, 13]
    assert all(r.file == str(path) for r in records)
    first, second, third = records
    assert first.data == {"text": "EU rejects German call .", "entities": [
        {"start": 0, "end": 2, "label": "ORG"}, {"start": 11, "end": 17, "label": "MISC"}]}
    assert task.reference(second) == [(0, 15, "PER")]
    text = third.data["text"]
    assert text == "New York York and Berlin John Smith"
    got = [(text[s:e], lab) for s, e, lab in task.reference(third)]
    assert got == [("New York", "LOC"), ("York", "LOC"), ("Berlin", "LOC"), ("John", "PER"), ("Smith", "LOC")]
    for r in records:
        task.check(r)
        assert task.parse(task.format(r).target, r) == task.reference(r)


def test_conll_custom_fields_and_no_trailing_blank(tmp_path: Path) -> None:
    task = NerTask(NerTask.Options(labels=["PER"], text_field="t", entities_field="e"))
    (record,) = task.read(write(tmp_path, "\n\nAnn B-PER"), "conll")
    assert record.data == {"t": "Ann", "e": [{"start": 0, "end": 3, "label": "PER"}]} and record.line == 3


def test_conll_empty_file(task: NerTask, tmp_path: Path) -> None:
    assert list(task.read(write(tmp_path, "\n-DOCSTART- O\n\n"), "conll")) == []


@pytest.mark.parametrize("content, line, words", [
    ("Ann B-PER\nran X\n", 2, ["'X'", "not O, B-<label> or I-<label>"]),
    ("Ann B-PER\n\nBob E-PER\n", 3, ["'E-PER'"]),
    ("Ann B-PER\nran o\n", 2, ["'o'"]),
    ("Ann B-\n", 1, ["'B-'"]),
    ("Ann B-PER\nran\n", 2, ["'ran' has no tag column"]),
])
def test_conll_errors(task: NerTask, tmp_path: Path, content: str, line: int, words: list[str]) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as info:
        list(task.read(path, "conll"))
    err = info.value
    assert err.file == str(path) and err.problems[0].line == line and err.hint
    for word in words:
        assert word in str(err)


def test_conll_unreadable(task: NerTask, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        list(task.read(tmp_path / "missing.conll", "conll"))
    path = tmp_path / "latin1.conll"
    path.write_bytes("Müller B-PER\n".encode("latin-1"))
    with pytest.raises(DataError, match="cannot read"):
        list(task.read(path, "conll"))
    with pytest.raises(DataError, match="cannot read format 'iob2'"):
        list(task.read(path, "iob2"))


def test_conll_undeclared_label_caught_by_check(task: NerTask, tmp_path: Path) -> None:
    (record,) = task.read(write(tmp_path, "\nAnn B-DATE\n"), "conll")
    with pytest.raises(DataError, match="'DATE', which is not declared") as info:
        task.check(record)
    assert info.value.problems[0].line == 2


def test_line_answers_stop_at_a_line_written_three_times_in_a_row(task: NerTask) -> None:
    looping = "CONDITION: fever\nCONDITION: fever\nCONDITION: fever\n"
    assert task.stops(looping)
    assert not task.stops(looping[:-1])  # the third line is not complete yet
    assert not task.stops("CONDITION: fever\nCONDITION: fever\n")  # gold answers repeat a line twice at times
    assert not task.stops("CONDITION: fever\nDOSAGE: 5 mg\nCONDITION: fever\nDOSAGE: 5 mg\n")
    assert not task.stops("\n\n\n\n")
    inline = NerTask(NerTask.Options(labels=["CONDITION"], output="inline"))
    assert not inline.stops(looping)
