"""Deterministic generator of the shipped data set: short clinical visit notes and their structured fields.

Writes ``train.jsonl`` (300 records) and ``test.jsonl`` (60): one JSON object per line,
``{"text": ..., "fields": {"age": int, "sex": "female" | "male", "visit_type": ..., "follow_up_days": int | null}}``
with visit types ``emergency``, ``outpatient``, ``telehealth`` and ``inpatient``.

Each note has a header, the patient (age and sex written many ways: "58-year-old woman", "72 y/o M", "Male, 40
years", "6-year-old girl"), the visit (a phrase per visit type: "presented to the ED", "phone consultation"), a
reason that often holds a distracting number ("cough for 5 days", "fever of 38.4 C", "day 3 of admission") and a
follow-up plan in days, weeks (x7) or months (x30), as digits or words, or none (null). Parts come in two orders.
No text repeats within or across splits. Everything is drawn from one ``random.Random(seed)``: the same seed
reproduces byte-identical files. Standard library only.

Usage: ``python -m loraforge_jsonx.generate [--out DIR] [--seed 11]`` (default DIR: the package's data folder)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any, Final

SPLIT_SIZES: Final = {"train": 300, "test": 60}
DEFAULT_SEED: Final = 11
FIELDS: Final = ("age", "follow_up_days", "sex", "visit_type")
DATA_DIR: Final = Path(__file__).resolve().parent / "data"
_MAX_ATTEMPTS: Final = 200

HEADERS: Final = ("Note:", "Summary:", "Encounter:", "Progress note:", "Visit note:", "")
SURNAMES: Final = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Silva", "Nowak", "Haddad", "Brennan", "Kowalski",
                   "Mensah", "Iyer", "Castillo")
ADULT: Final = {
    "female": ("{age}-year-old woman", "{age} y/o F", "Female, {age} years", "{age}yo female",
               "woman aged {age}", "Mrs {surname}, {age}", "{age} year old lady", "F {age}"),
    "male": ("{age}-year-old man", "{age} y/o M", "Male, {age} years", "{age}yo male",
             "man aged {age}", "Mr {surname}, {age}", "{age} year old gentleman", "M {age}"),
}
CHILD: Final = {"female": ("{age}-year-old girl", "girl aged {age}"),
                "male": ("{age}-year-old boy", "boy aged {age}")}
VISITS: Final = {
    "emergency": ("presented to the ED", "seen in the emergency department", "brought in by ambulance",
                  "walked into the emergency room", "attended A&E"),
    "outpatient": ("seen in clinic", "attended the outpatient clinic", "came in for an office visit",
                   "seen at the GP surgery", "reviewed in the outpatient department"),
    "telehealth": ("phone consultation", "spoke by video call", "telehealth visit", "reviewed over the phone",
                   "virtual visit by video"),
    "inpatient": ("admitted to the medical ward", "reviewed on the ward round", "inpatient review on day {k} of "
                  "admission", "remains admitted on the surgical ward", "seen on the ward"),
}
REASONS: Final = ("with a cough for {k} days", "for knee pain", "after a fall", "for a diabetes review",
                  "with chest pain", "for a medication review", "with a rash", "with abdominal pain",
                  "for a blood pressure check", "with a fever of 38.{d} C", "with back pain for {k} weeks",
                  "for asthma", "with headaches", "after taking {k} tablets of paracetamol", "for a wound check")
NUMBER_WORDS: Final = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
FOLLOW_UP: Final = ("Follow up in {amount}.", "Recheck in {amount}.", "Review in {amount}.", "See again in {amount}.",
                    "Book a follow-up in {amount}.")
NO_FOLLOW_UP: Final = ("No follow-up needed.", "Discharged with no follow-up.", "Follow up as needed.",
                       "No further review planned.")


def _amount(rng: random.Random, count: int, unit: str, words: bool) -> str:
    """'3 days', 'two weeks', '1 month'."""
    spoken = NUMBER_WORDS[count] if words and count in NUMBER_WORDS and rng.random() < 0.4 else str(count)
    return f"{spoken} {unit}" + ("" if count == 1 else "s")


def _follow_up(rng: random.Random) -> tuple[str, int | None]:
    """A follow-up sentence and its delay in days (weeks x7, months x30), or none (None)."""
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(NO_FOLLOW_UP), None
    if roll < 0.55:
        n = rng.randint(1, 30)
        amount, days = _amount(rng, n, "day", words=False), n
    elif roll < 0.85:
        w = rng.randint(1, 8)
        amount, days = _amount(rng, w, "week", words=True), 7 * w
    else:
        m = rng.randint(1, 6)
        amount, days = _amount(rng, m, "month", words=True), 30 * m
    return rng.choice(FOLLOW_UP).format(amount=amount), days


def make_record(rng: random.Random) -> dict[str, Any]:
    """One note and its fields."""
    sex = rng.choice(("female", "male"))
    if rng.random() < 0.15:
        age = rng.randint(2, 17)
        patient = rng.choice(CHILD[sex])
    else:
        age = rng.randint(18, 95)
        patient = rng.choice(ADULT[sex])
    patient = patient.format(age=age, surname=rng.choice(SURNAMES))
    visit_type = rng.choice(tuple(VISITS))
    visit = rng.choice(VISITS[visit_type]).format(k=rng.randint(2, 9))
    reason = rng.choice(REASONS).format(k=rng.randint(2, 9), d=rng.randint(0, 9))
    plan, days = _follow_up(rng)
    header = rng.choice(HEADERS)
    if rng.random() < 0.5:
        body = f"{patient}, {visit} {reason}. {plan}"
    else:
        body = f"{visit[0].upper()}{visit[1:]} {reason}: {patient}. {plan}"
    text = f"{header} {body}" if header else body
    fields = {"age": age, "follow_up_days": days, "sex": sex, "visit_type": visit_type}
    return {"text": text, "fields": fields}


def generate(seed: int = DEFAULT_SEED) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, size in SPLIT_SIZES.items():
        records = []
        for _ in range(size):
            for _attempt in range(_MAX_ATTEMPTS):
                record = make_record(rng)
                if record["text"] not in seen:
                    break
            else:
                raise RuntimeError("could not draw a new text; widen the templates")
            seen.add(record["text"])
            records.append(record)
        splits[split] = records
    return splits


def render(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder for train.jsonl and test.jsonl")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, records in generate(args.seed).items():
        (args.out / f"{split}.jsonl").write_text(render(records), encoding="utf-8")
        print(f"wrote {len(records)} records to {args.out / f'{split}.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
