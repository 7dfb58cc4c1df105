"""The brat standoff reader: files, offsets, each policy and count, and the errors a broken corpus gets."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

from loraforge.builtin.tasks.brat import BratCounts, read_brat
from loraforge.builtin.tasks.ner import NerTask
from loraforge.components import Record
from loraforge.errors import DataError

MACCROBAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "maccrobat-train"
MACCROBAT_MAP = {
    "Medication": "MEDICATION", "Dosage": "DOSAGE", "Disease_disorder": "CONDITION", "Sign_symptom": "CONDITION",
    "Therapeutic_procedure": "PROCEDURE", "Diagnostic_procedure": "PROCEDURE",
}
CLASSES = ["MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE"]
T_FORM = "T1<TAB>Label 10 17<TAB>mention"


def tline(text: str, ident: str, label: str, *fragments: tuple[int, int]) -> str:
    """A `T` line as brat writes it: the mention is the fragments' text joined by one space."""
    offsets = ";".join(f"{s} {e}" for s, e in fragments)
    mention = " ".join(text[s:e] for s, e in fragments)
    return f"{ident}\t{label} {offsets}\t{mention}"


def span(text: str, mention: str, nth: int = 0) -> tuple[int, int]:
    """Document offsets of the nth occurrence of `mention`."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(mention, start + 1)
    return start, start + len(mention)


def write_doc(folder: Path, name: str, text: str, ann_lines: list[str], *, ann_newline: str = "\n",
              ann_prefix: str = "") -> Path:
    """`<name>.txt` and `<name>.ann` written byte for byte (no newline translation)."""
    folder.mkdir(parents=True, exist_ok=True)
    txt = folder / f"{name}.txt"
    txt.write_bytes(text.encode("utf-8"))
    ann_text = ann_prefix + "".join(line + ann_newline for line in ann_lines)
    (folder / f"{name}.ann").write_bytes(ann_text.encode("utf-8"))
    return txt


def read(path: Path, label_map: dict[str, str] | None = None, **kwargs) -> tuple[list[Record], BratCounts]:
    counts = BratCounts()
    return list(read_brat(path, label_map, counts=counts, **kwargs)), counts


def ents(record: Record) -> list[tuple[int, int, str, str]]:
    return [(e["start"], e["end"], e["label"], e["text"]) for e in record.data["entities"]]


def check_all(records: list[Record], labels: list[str]) -> None:
    """Every record is one the `ner` task accepts, and every mention is its passage slice."""
    task = NerTask(NerTask.Options(labels=labels))
    for record in records:
        task.check(record)
        text = record.data["text"]
        for e in record.data["entities"]:
            assert text[e["start"]:e["end"]] == e["text"]


def dropped_nothing(counts: BratCounts) -> bool:
    return not (counts.unmapped or counts.discontinuous or counts.crossing or counts.overlapping
                or counts.duplicates or counts.mismatched)


# ---------------------------------------------------------------- records and passages
def test_one_line_document(tmp_path: Path) -> None:
    text = "Aspirin 100 mg was given for chest pain.\n"
    txt = write_doc(tmp_path, "doc1", text, [
        tline(text, "T1", "Medication", span(text, "Aspirin")),
        tline(text, "T2", "Dosage", span(text, "100 mg")),
        tline(text, "T3", "Sign_symptom", span(text, "chest pain")),
    ])
    records, counts = read(txt)
    assert len(records) == 1
    record = records[0]
    assert record.file == str(txt) and record.line == 1
    assert record.data == {
        "text": "Aspirin 100 mg was given for chest pain.",
        "entities": [
            {"start": 0, "end": 7, "label": "Medication", "text": "Aspirin"},
            {"start": 8, "end": 14, "label": "Dosage", "text": "100 mg"},
            {"start": 29, "end": 39, "label": "Sign_symptom", "text": "chest pain"},
        ],
        "document": "doc1",
    }
    assert (counts.documents, counts.passages, counts.entities) == (1, 1, 3) and dropped_nothing(counts)
    check_all(records, ["Medication", "Dosage", "Sign_symptom"])


def test_multi_line_document_offsets_are_per_line(tmp_path: Path) -> None:
    text = "Fever began.\n\n   \nNo cough.\nCT showed a nodule."
    txt = write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Sign", span(text, "Fever")),
        tline(text, "T2", "Sign", span(text, "nodule")),
        tline(text, "T3", "Test", span(text, "CT")),
    ])
    records, counts = read(txt)
    assert [r.line for r in records] == [1, 4, 5]  # blank and whitespace-only lines give no record
    assert [r.data["text"] for r in records] == ["Fever began.", "No cough.", "CT showed a nodule."]
    assert ents(records[0]) == [(0, 5, "Sign", "Fever")]
    assert ents(records[1]) == []  # a line without entities is still a passage
    assert ents(records[2]) == [(0, 2, "Test", "CT"), (12, 18, "Sign", "nodule")]  # sorted by start
    assert counts.passages == 3 and counts.entities == 3
    check_all(records, ["Sign", "Test"])


def test_line_text_is_kept_exactly(tmp_path: Path) -> None:
    text = "  indented\ttext with\u2028odd\x85breaks  \nnext"
    txt = write_doc(tmp_path, "d", text, [tline(text, "T1", "X", span(text, "odd")),
                                           tline(text, "T2", "X", span(text, "next"))])
    records, _ = read(txt)
    assert [r.data["text"] for r in records] == ["  indented\ttext with\u2028odd\x85breaks  ", "next"]
    assert ents(records[0]) == [(21, 24, "X", "odd")] and records[1].line == 2
    check_all(records, ["X"])


def test_custom_fields(tmp_path: Path) -> None:
    text = "Fever.\n"
    txt = write_doc(tmp_path, "d", text, [tline(text, "T1", "Sign", span(text, "Fever"))])
    records = list(read_brat(txt, text_field="sentence", entities_field="spans"))
    assert set(records[0].data) == {"sentence", "spans", "document"}
    assert records[0].data["spans"][0]["text"] == "Fever"


def test_ignored_lines_and_blank_lines(tmp_path: Path) -> None:
    text = "Fever and cough.\n"
    txt = write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Sign", span(text, "Fever")), "",
        "E1\tSign:T1 ", "R1\tMODIFY Arg1:T1 Arg2:T2\t", "A1\tPOLARITY E1 NEG", "M1\tNegation E1",
        "N1\tReference T1 UMLS:C0015967\tFever", "#1\tAnnotatorNotes T1\ta note", "*\tOVERLAP E1 E2", "   ",
        tline(text, "T2", "Sign", span(text, "cough")),
    ])
    records, counts = read(txt)
    assert ents(records[0]) == [(0, 5, "Sign", "Fever"), (10, 15, "Sign", "cough")] and dropped_nothing(counts)


def test_mention_is_everything_after_the_second_tab(tmp_path: Path) -> None:
    """As brat reads it; real corpora hold mentions with stray tabs and unicode spaces after them."""
    text = "dexamethasone 8\u2005mg.\n"
    s, e = span(text, "8\u2005mg")
    txt = write_doc(tmp_path, "d", text, [f"T1\tDosage {s} {e}\t8\u2005mg\t\u2005"])
    records, counts = read(txt)
    assert ents(records[0]) == [(14, 18, "Dosage", "8\u2005mg")] and counts.mismatched == 0


# ---------------------------------------------------------------- offsets as brat counts them
def test_crlf_text_counts_carriage_returns(tmp_path: Path) -> None:
    text = "Fever began.\r\nNo cough, but dyspnea.\r\n\r\nLast line"
    txt = write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Sign", span(text, "Fever")),
        tline(text, "T2", "Sign", span(text, "dyspnea")),
        tline(text, "T3", "Sign", span(text, "Last")),
    ], ann_newline="\r\n")
    records, counts = read(txt)
    assert [r.data["text"] for r in records] == ["Fever began.", "No cough, but dyspnea.", "Last line"]
    assert [r.line for r in records] == [1, 2, 4]
    assert ents(records[1]) == [(14, 21, "Sign", "dyspnea")]
    assert ents(records[2]) == [(0, 4, "Sign", "Last")]
    assert counts.entities == 3 and dropped_nothing(counts)
    check_all(records, ["Sign"])


def test_byte_order_mark_is_a_character_before_line_one(tmp_path: Path) -> None:
    text = "\ufeffFever began.\nNo cough."
    txt = write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Sign", span(text, "Fever")),  # offsets 1-6: brat counts the mark
        tline(text, "T2", "Sign", span(text, "cough")),
    ], ann_prefix="\ufeff")  # a mark on the .ann is no id character
    assert span(text, "Fever") == (1, 6)
    records, counts = read(txt)
    assert records[0].data["text"] == "Fever began."
    assert ents(records[0]) == [(0, 5, "Sign", "Fever")]
    assert ents(records[1]) == [(3, 8, "Sign", "cough")]
    assert dropped_nothing(counts)
    check_all(records, ["Sign"])


def test_span_on_the_byte_order_mark_is_mismatched(tmp_path: Path) -> None:
    text = "\ufeffFever."
    txt = write_doc(tmp_path, "d", text, ["T1\tSign 0 5\tFever"])  # offsets that ignore the mark
    records, counts = read(txt)
    assert ents(records[0]) == [] and counts.mismatched == 1


# ---------------------------------------------------------------- label map
def test_label_map_renames_and_counts_unmapped(tmp_path: Path) -> None:
    text = "Aspirin 100 mg daily for pain in the left arm since May.\n"
    txt = write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Medication", span(text, "Aspirin")),
        tline(text, "T2", "Dosage", span(text, "100 mg")),
        tline(text, "T3", "Frequency", span(text, "daily")),
        tline(text, "T4", "Sign_symptom", span(text, "pain")),
        tline(text, "T5", "Biological_structure", span(text, "left arm")),
        tline(text, "T6", "Biological_structure", span(text, "arm")),
        tline(text, "T7", "Date", span(text, "May")),
    ])
    records, counts = read(txt, {"Medication": "MEDICATION", "Dosage": "DOSAGE", "Sign_symptom": "CONDITION"})
    assert [e[2:] for e in ents(records[0])] == [("MEDICATION", "Aspirin"), ("DOSAGE", "100 mg"),
                                                 ("CONDITION", "pain")]
    assert counts.unmapped == collections.Counter({"Biological_structure": 2, "Frequency": 1, "Date": 1})
    assert counts.entities == 3 and counts.overlapping == 0  # unmapped spans never compete for a place
    check_all(records, ["MEDICATION", "DOSAGE", "CONDITION"])


def test_no_label_map_keeps_every_label(tmp_path: Path) -> None:
    text = "Aspirin daily.\n"
    txt = write_doc(tmp_path, "d", text, [tline(text, "T1", "Medication", span(text, "Aspirin")),
                                           tline(text, "T2", "Frequency", span(text, "daily"))])
    records, counts = read(txt)
    assert [e[2] for e in ents(records[0])] == ["Medication", "Frequency"] and not counts.unmapped


# ---------------------------------------------------------------- discontinuous spans
DISCONTINUOUS_TEXT = "Hepatitis B and C were ruled out.\n"


def _discontinuous_doc(tmp_path: Path) -> Path:
    text = DISCONTINUOUS_TEXT
    return write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Disease", span(text, "Hepatitis B")),
        tline(text, "T2", "Disease", span(text, "Hepatitis"), span(text, "C")),  # "Hepatitis C"
    ])


def test_discontinuous_drop_is_the_default(tmp_path: Path) -> None:
    records, counts = read(_discontinuous_doc(tmp_path))
    assert ents(records[0]) == [(0, 11, "Disease", "Hepatitis B")]
    assert counts.discontinuous == 1 and counts.overlapping == 0 and counts.entities == 1
    assert counts.summary().endswith("; 1 discontinuous (dropped)")


def test_discontinuous_join_spans_first_start_to_last_end(tmp_path: Path) -> None:
    records, counts = read(_discontinuous_doc(tmp_path), discontinuous="join")
    assert ents(records[0]) == [(0, 17, "Disease", "Hepatitis B and C")]  # the longer span wins
    assert counts.discontinuous == 1 and counts.overlapping == 1 and counts.entities == 1
    assert "1 discontinuous (joined)" in counts.summary()
    check_all(records, ["Disease"])


def test_discontinuous_split_keeps_each_fragment(tmp_path: Path) -> None:
    text = "Pain in the left and right arm.\n"
    txt = write_doc(tmp_path, "d", text, [tline(text, "T1", "Site", span(text, "left"), span(text, "arm"))])
    records, counts = read(txt, discontinuous="split")
    assert ents(records[0]) == [(12, 16, "Site", "left"), (27, 30, "Site", "arm")]
    assert counts.discontinuous == 1 and counts.entities == 2
    assert "1 discontinuous (split into fragments)" in counts.summary()
    check_all(records, ["Site"])


def test_discontinuous_fragments_on_two_lines(tmp_path: Path) -> None:
    text = "A left\narm.\n"
    txt = write_doc(tmp_path, "d", text, [tline(text, "T1", "Site", span(text, "left"), span(text, "arm"))])
    records, counts = read(txt, discontinuous="split")
    assert [ents(r) for r in records] == [[(2, 6, "Site", "left")], [(0, 3, "Site", "arm")]]
    assert counts.crossing == 0
    records, counts = read(txt, discontinuous="join")
    assert all(ents(r) == [] for r in records) and counts.crossing == 1 and counts.discontinuous == 1


def test_bad_discontinuous_policy() -> None:
    with pytest.raises(ValueError, match="drop, join, split"):
        read_brat(Path("."), discontinuous="merge")  # type: ignore[arg-type]


# ---------------------------------------------------------------- crossing, trimming, mismatched
def test_span_crossing_a_line_is_dropped(tmp_path: Path) -> None:
    text = "chest\npain here\n"
    txt = write_doc(tmp_path, "d", text, ["T1\tSign 0 10\tchest pain", tline(text, "T2", "Sign", span(text, "here"))])
    records, counts = read(txt)
    assert [ents(r) for r in records] == [[], [(5, 9, "Sign", "here")]]
    assert counts.crossing == 1 and counts.mismatched == 0
    assert "1 crossing a line" in counts.summary()


def test_whitespace_at_span_edges_is_trimmed(tmp_path: Path) -> None:
    text = "He had  fever \nand cough.\n"
    s, e = span(text, " fever \n")  # the selection took the spaces and even the line ending
    txt = write_doc(tmp_path, "d", text, [f"T1\tSign {s} {e}\t fever ", f"T2\tSign {s - 1} {s}\t"])
    records, counts = read(txt)
    assert ents(records[0]) == [(8, 13, "Sign", "fever")]
    assert counts.crossing == 0 and counts.mismatched == 1  # T2 covers only a space: empty once trimmed
    check_all(records, ["Sign"])


def test_mention_that_differs_from_the_text_is_mismatched(tmp_path: Path) -> None:
    text = "Fever and cough.\n"
    txt = write_doc(tmp_path, "d", text, [
        "T1\tSign 1 6\tFever",  # off by one
        "T2\tSign 10 15\tcough",
        "T3\tSign 10 99\tcough.",  # past the end of the text
        "T4\tSign 0 5;10 15\tFever, cough",  # fragments are joined by one space
        "T5\tSign 0 5;10 15\tFever cough",
    ])
    records, counts = read(txt, discontinuous="split")
    assert ents(records[0]) == [(0, 5, "Sign", "Fever"), (10, 15, "Sign", "cough")]
    assert counts.mismatched == 3 and counts.duplicates == 1  # T5's "cough" repeats T2
    assert "3 mismatched" in counts.summary()


# ---------------------------------------------------------------- flat entities
def test_overlaps_keep_the_longest_span(tmp_path: Path) -> None:
    text = "History of pulmonary tuberculosis, treated.\n"
    txt = write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Disease", span(text, "tuberculosis")),
        tline(text, "T2", "History", span(text, "History of pulmonary tuberculosis")),
        tline(text, "T3", "Structure", span(text, "pulmonary")),
        tline(text, "T4", "Procedure", span(text, "treated")),
    ])
    records, counts = read(txt)
    assert ents(records[0]) == [(0, 33, "History", "History of pulmonary tuberculosis"),
                                (35, 42, "Procedure", "treated")]
    assert counts.overlapping == 2 and counts.duplicates == 0


def test_equal_length_overlaps_keep_the_earlier_start(tmp_path: Path) -> None:
    text = "abc def ghi\n"
    txt = write_doc(tmp_path, "d", text, ["T1\tX 4 11\tdef ghi", "T2\tX 0 7\tabc def"])
    records, counts = read(txt)
    assert ents(records[0]) == [(0, 7, "X", "abc def")] and counts.overlapping == 1


def test_same_span_two_classes_follow_the_map_order(tmp_path: Path) -> None:
    text = "CRP was high.\n"
    lines = [tline(text, "T1", "Lab", span(text, "CRP")), tline(text, "T2", "Test", span(text, "CRP"))]
    txt = write_doc(tmp_path, "d", text, lines)
    records, counts = read(txt, {"Test": "PROCEDURE", "Lab": "LAB"})
    assert ents(records[0]) == [(0, 3, "PROCEDURE", "CRP")] and counts.overlapping == 1
    records, counts = read(txt, {"Lab": "LAB", "Test": "PROCEDURE"})
    assert ents(records[0]) == [(0, 3, "LAB", "CRP")] and counts.overlapping == 1
    records, counts = read(txt)  # no map: alphabetical
    assert ents(records[0]) == [(0, 3, "Lab", "CRP")]


def test_duplicate_is_not_an_overlap(tmp_path: Path) -> None:
    text = "Fever and rash.\n"
    txt = write_doc(tmp_path, "d", text, [
        tline(text, "T1", "Sign_symptom", span(text, "Fever")),
        tline(text, "T2", "Disease_disorder", span(text, "Fever")),  # both map to CONDITION
        tline(text, "T3", "Sign_symptom", span(text, "rash")),
        tline(text, "T4", "Sign_symptom", span(text, "rash")),  # written twice
    ])
    records, counts = read(txt, {"Sign_symptom": "CONDITION", "Disease_disorder": "CONDITION"})
    assert ents(records[0]) == [(0, 5, "CONDITION", "Fever"), (10, 14, "CONDITION", "rash")]
    assert counts.duplicates == 2 and counts.overlapping == 0
    assert "2 duplicates" in counts.summary() and "overlapping" not in counts.summary()
    check_all(records, ["CONDITION"])


# ---------------------------------------------------------------- files and folders
def test_folder_reads_every_pair_sorted_by_name(tmp_path: Path) -> None:
    for name in ("b", "a", "c"):
        write_doc(tmp_path, name, f"Document {name}.\n", [])
    (tmp_path / "notes.md").write_text("not a document")
    records, counts = read(tmp_path)
    assert [r.data["document"] for r in records] == ["a", "b", "c"]
    assert [r.file for r in records] == [str(tmp_path / f"{n}.txt") for n in "abc"]
    assert counts.documents == 3 and counts.passages == 3


def test_ann_path_reads_its_pair(tmp_path: Path) -> None:
    text = "Fever.\n"
    txt = write_doc(tmp_path, "d", text, [tline(text, "T1", "Sign", span(text, "Fever"))])
    assert [r.data for r in read_brat(txt.with_suffix(".ann"))] == [r.data for r in read_brat(txt)]


def test_txt_without_ann(tmp_path: Path) -> None:
    write_doc(tmp_path, "a", "Fine.\n", [])
    (tmp_path / "b.txt").write_text("No annotations beside me.\n")
    for path in (tmp_path, tmp_path / "b.txt"):
        with pytest.raises(DataError) as info:
            read_brat(path)
        assert info.value.file == str(tmp_path / "b.ann")
        assert "b.ann" in str(info.value) and "empty .ann" in (info.value.hint or "")


def test_ann_without_txt(tmp_path: Path) -> None:
    (tmp_path / "d.ann").write_text("T1\tSign 0 5\tFever\n")
    with pytest.raises(DataError) as info:
        read_brat(tmp_path / "d.ann")
    assert info.value.file == str(tmp_path / "d.txt") and info.value.hint


def test_folder_without_documents(tmp_path: Path) -> None:
    (tmp_path / "d.ann").write_text("")
    with pytest.raises(DataError, match="no .txt documents") as info:
        read_brat(tmp_path)
    assert info.value.file == str(tmp_path) and info.value.hint


def test_missing_path_and_other_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder") as info:
        read_brat(tmp_path / "nowhere")
    assert info.value.file == str(tmp_path / "nowhere")
    (tmp_path / "data.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="not a brat document"):
        read_brat(tmp_path / "data.jsonl")


def test_text_that_is_not_utf8(tmp_path: Path) -> None:
    write_doc(tmp_path, "d", "", [])
    (tmp_path / "d.txt").write_bytes("Fi\u00e8vre.\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as info:
        list(read_brat(tmp_path))
    assert info.value.file == str(tmp_path / "d.txt")


# ---------------------------------------------------------------- malformed .ann lines
@pytest.mark.parametrize(("bad", "message"), [
    ("T3\tSign 0 5", "2 tab-separated fields"),
    ("T3 Sign 0 5 Fever", "1 tab-separated field,"),
    ("T3\tSign 0 x\tFever", "not integers"),
    ("T3\tSign 0 5.0\tFever", "not integers"),
    ("T3\tSign -1 5\tFever", "not integers"),
    ("T3\tSign 0\tFever", "not a start and an end"),
    ("T3\tSign 0 5 7\tFever", "not a start and an end"),
    ("T3\tSign 0 2;\tFever", "not a start and an end"),
    ("T3\tSign\tFever", "not a start and an end"),
    ("T3\tSign 5 0\tFever", "starts at 5, after its end 0"),
    ("T3\t0 5\tFever", "no label"),
    ("T3\t 0 5\tFever", "no label"),
])
def test_malformed_text_bound_line(tmp_path: Path, bad: str, message: str) -> None:
    text = "Fever and cough.\n"
    txt = write_doc(tmp_path, "d", text, [tline(text, "T1", "Sign", (0, 5)), "", bad])
    with pytest.raises(DataError) as info:
        list(read_brat(txt))
    error = info.value
    assert error.file == str(tmp_path / "d.ann") and error.problems[0].line == 3
    assert message in error.problems[0].message and T_FORM in (error.hint or "")
    assert f"{tmp_path / 'd.ann'}: line 3: " in str(error)


@pytest.mark.parametrize("bad", ["X1\tSomething", " T1\tSign 0 5\tFever", "Sign 0 5\tFever"])
def test_unknown_line_kind(tmp_path: Path, bad: str) -> None:
    txt = write_doc(tmp_path, "d", "Fever.\n", ["#1\tAnnotatorNotes T1\tok", bad], ann_newline="\r\n")
    with pytest.raises(DataError, match="not an annotation id") as info:
        list(read_brat(txt))
    assert info.value.file == str(tmp_path / "d.ann") and info.value.problems[0].line == 2
    assert T_FORM in (info.value.hint or "")


def test_counts_hold_whole_documents_after_an_error(tmp_path: Path) -> None:
    write_doc(tmp_path, "a", "Fever.\n", ["T1\tSign 0 5\tFever"])
    write_doc(tmp_path, "b", "Cough.\n", ["T1\tSign 0 5\tCough", "T2\tSign five\tCough"])
    counts = BratCounts()
    records = read_brat(tmp_path, counts=counts)
    assert next(records).data["document"] == "a"
    with pytest.raises(DataError):
        next(records)
    assert (counts.documents, counts.passages, counts.entities) == (1, 1, 1)


# ---------------------------------------------------------------- counts
def test_counts_add_and_summary() -> None:
    a = BratCounts(documents=1, passages=10, entities=1200, discontinuous=3, discontinuous_policy="drop",
                   unmapped=collections.Counter({"Lab_value": 800, "Date": 5}))
    b = BratCounts(documents=2, passages=5, entities=3, crossing=2, overlapping=4, duplicates=1, mismatched=6,
                   discontinuous_policy="drop", unmapped=collections.Counter({"Lab_value": 1, "Age": 7}))
    a.add(b)
    assert (a.documents, a.passages, a.entities, a.crossing, a.overlapping, a.duplicates, a.mismatched) == (
        3, 15, 1203, 2, 4, 1, 6)
    assert a.unmapped == collections.Counter({"Lab_value": 801, "Age": 7, "Date": 5})
    assert a.summary() == ("3 documents, 15 passages, 1,203 entities kept; dropped: 813 unmapped (Lab_value 801, "
                           "Age 7, Date 5), 2 crossing a line, 4 overlapping, 1 duplicates, 6 mismatched; "
                           "3 discontinuous (dropped)")
    a.add(BratCounts(discontinuous_policy="join"))
    assert a.summary().endswith("3 discontinuous (mixed policies)")


def test_summary_leaves_out_zero_counts() -> None:
    assert BratCounts(documents=2, passages=4, entities=9).summary() == "2 documents, 4 passages, 9 entities kept"
    only = BratCounts(documents=1, passages=1, entities=0, overlapping=1000)
    assert only.summary() == "1 documents, 1 passages, 0 entities kept; dropped: 1,000 overlapping"


def test_summary_names_the_top_five_unmapped_labels() -> None:
    unmapped = collections.Counter({f"L{i}": 10 * i for i in range(1, 9)})
    summary = BratCounts(unmapped=unmapped).summary()
    assert "360 unmapped (L8 80, L7 70, L6 60, L5 50, L4 40, 3 other labels 60)" in summary


# ---------------------------------------------------------------- the real corpus
@pytest.mark.skipif(not MACCROBAT.is_dir(), reason=f"MACCROBAT not found at {MACCROBAT}")
def test_maccrobat() -> None:
    counts = BratCounts()
    started = time.perf_counter()
    records = list(read_brat(MACCROBAT, MACCROBAT_MAP, counts=counts))
    elapsed = time.perf_counter() - started
    assert counts.documents == len(list(MACCROBAT.glob("*.txt"))) and counts.passages == len(records)
    check_all(records, CLASSES)
    assert {e["label"] for r in records for e in r.data["entities"]} == set(CLASSES)
    assert counts.entities == sum(len(r.data["entities"]) for r in records)
    # with "drop" every T line is kept or dropped for exactly one reason
    t_lines = sum(1 for ann in MACCROBAT.glob("*.ann") for line in ann.read_text(encoding="utf-8").split("\n")
                  if line.startswith("T"))
    dropped = (sum(counts.unmapped.values()) + counts.discontinuous + counts.crossing + counts.overlapping
               + counts.duplicates + counts.mismatched)
    assert counts.entities + dropped == t_lines
    assert elapsed < 5  # well under a second on an idle machine; generous for shared CI
    for policy in ("join", "split"):
        check_all(list(read_brat(MACCROBAT, MACCROBAT_MAP, discontinuous=policy)), CLASSES)
