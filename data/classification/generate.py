"""Deterministic generator of synthetic clinical-message triage data for text classification.

Writes ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``: one JSON object per line,
``{"text": ..., "label": ...}`` with labels ``urgent``, ``routine`` and ``administrative``.

Each message is a short note from a clinic inbox: a source ("Portal message:", "Phone call:"), an optional
patient description, one *cue* that decides the label (a red-flag symptom, a routine request, a paperwork
request), and optional neutral context (current medication, history, timing). The neutral parts are shared by
all labels (every label mentions medications, chronic conditions and ages), so a model has to read the cue,
not the surroundings. Cues are lexical and repeat across splits: the data set is meant to be learnable by a
tiny model in a few CPU minutes, not to test generalisation to unseen phrasings.

Held-out cues: each label's cue list is split once, from the seed, into a train pool and a held-out pool
(``HELDOUT_CUES`` per label). Training messages use the train pool only; validation and test messages take
their cue from the held-out pool with probability ``HELDOUT_RATE``. Those messages can only be classified from
words the cue shares with seen cues ("sudden", "bleeding", "refill", "form", ...), so test accuracy is not
all memory: expect near-perfect scores on seen cues and much weaker ones on held-out cues.

Label shares per split are fixed (``SHARES``: 32% urgent, 40% routine, 28% administrative), so the majority
baseline is 40% accuracy. No text repeats within or across splits. Everything is drawn from one
``random.Random(seed)``: the same seed reproduces byte-identical files. Standard library only.

Usage: ``python data/classification/generate.py [--out DIR] [--seed 7]``
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Final

LABELS: Final = ("urgent", "routine", "administrative")
SHARES: Final = {"urgent": 0.32, "routine": 0.40, "administrative": 0.28}
SPLIT_SIZES: Final = {"train": 600, "validation": 100, "test": 150}
DEFAULT_SEED: Final = 7
#: cues per label kept out of training
HELDOUT_CUES: Final = 5
#: probability that a validation/test message uses a held-out cue
HELDOUT_RATE: Final = 0.3
_MAX_ATTEMPTS: Final = 500

SOURCES: Final = ("Portal message", "Phone call", "Nurse note", "Front desk note", "Voicemail", "Patient message",
                  "After-hours call", "Email")
PATIENTS: Final = ("{age}-year-old man", "{age}-year-old woman", "patient", "elderly patient", "mother of a child",
                   "caregiver of a patient", "new patient", "pregnant patient")
MEDICATIONS: Final = ("metformin", "lisinopril", "atorvastatin", "levothyroxine", "amlodipine", "sertraline",
                      "omeprazole", "warfarin", "albuterol", "insulin", "apixaban", "prednisone")
HISTORY: Final = ("diabetes", "asthma", "high blood pressure", "heart failure", "COPD", "depression", "migraine",
                  "kidney disease", "atrial fibrillation", "arthritis")
CONTEXT: Final = ("currently takes {med}", "history of {hx}", "on {med} for {hx}", "known {hx}",
                  "last seen two months ago", "seen last week for {hx}", "lives alone", "no known allergies")

CUES: Final[dict[str, tuple[str, ...]]] = {
    "urgent": (
        "crushing chest pain spreading to the left arm", "sudden slurred speech and facial droop",
        "short of breath at rest and cannot finish sentences", "vomiting blood", "bleeding that will not stop",
        "fever of 40 C and new confusion", "fainted twice today", "tongue and lips swelling after a new pill",
        "seizure lasting five minutes", "says they have thoughts of ending their life", "black tarry stools and dizzy",
        "sudden worst headache of their life", "oxygen saturation 86 percent", "blood pressure 220/125 with headache",
        "infant with fever who will not feed", "sudden loss of vision in one eye", "stiff neck and high fever",
        "chest tightness with sweating and nausea", "wheezing not relieved by the inhaler",
        "severe belly pain and a rigid abdomen", "coughing up blood", "one leg suddenly weak and numb",
    ),
    "routine": (
        "asks for a refill of {med}", "mild seasonal allergies", "wants to book the annual physical",
        "follow-up of stable blood pressure readings", "mild rash on the arm for two weeks",
        "question about a vitamin D result", "knee ache after jogging, getting better", "would like diet advice",
        "due for a cholesterol recheck", "mild cough for a week without fever", "asks about a flu shot",
        "trouble sleeping for a month", "dry itchy skin in winter", "wants to review lab results at next visit",
        "asks whether to take {med} with food", "small wart on the finger", "occasional heartburn after meals",
        "wants to discuss quitting smoking", "mild back stiffness in the morning", "asks about travel vaccines",
        "home glucose readings steady", "ear wax feels blocked",
    ),
    "administrative": (
        "needs to update insurance details", "requests a sick note for work", "asks for a copy of medical records",
        "reports a change of address", "has a billing question", "wants to reschedule an appointment",
        "needs a school sports form signed", "asks about prior authorization paperwork",
        "wants records sent to a new clinic", "asks to update the emergency contact", "needs a disability form",
        "requests a jury duty excuse letter", "asks for an itemized invoice", "wants to cancel a visit",
        "asks about parking at the clinic", "needs a travel letter for medication", "wants to change the pharmacy",
        "asks about the portal password", "requests a receipt for taxes", "wants a referral letter copy",
        "asks for clinic opening hours", "needs an interpreter booked",
    ),
}
TAILS: Final = ("", "", "", ".", ". Please advise.", ". Called at 9 am.", ". Message left on the portal.",
                ". Prefers a call back.", ". Spoke with the nurse.")


def _fill(template: str, rng: random.Random) -> str:
    return template.format(age=rng.randint(18, 92), med=rng.choice(MEDICATIONS), hx=rng.choice(HISTORY))


def message(label: str, cues: tuple[str, ...], rng: random.Random) -> str:
    """One short message whose label is decided by its cue (drawn from `cues`) alone."""
    cue = _fill(rng.choice(cues), rng)
    parts = [f"{rng.choice(SOURCES)}:"]
    if rng.random() < 0.6:
        parts.append(_fill(rng.choice(PATIENTS), rng) + ",")
    parts.append(cue)
    text = " ".join(parts)
    if rng.random() < 0.5:
        text += ", " + _fill(rng.choice(CONTEXT), rng)
    return text + rng.choice(TAILS)


def label_plan(size: int, rng: random.Random) -> list[str]:
    """Labels in fixed shares (rounded, remainder to the largest class), shuffled."""
    counts = {label: round(size * SHARES[label]) for label in LABELS}
    counts["routine"] += size - sum(counts.values())
    plan = [label for label in LABELS for _ in range(counts[label])]
    rng.shuffle(plan)
    return plan


def generate(seed: int = DEFAULT_SEED) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    pools: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    for label in LABELS:
        cues = list(CUES[label])
        rng.shuffle(cues)
        pools[label] = (tuple(cues[HELDOUT_CUES:]), tuple(cues[:HELDOUT_CUES]))
    seen: set[str] = set()
    splits: dict[str, list[dict[str, str]]] = {}
    for split, size in SPLIT_SIZES.items():
        records = []
        for label in label_plan(size, rng):
            train_pool, heldout_pool = pools[label]
            held = split != "train" and rng.random() < HELDOUT_RATE
            for _ in range(_MAX_ATTEMPTS):
                text = message(label, heldout_pool if held else train_pool, rng)
                if text.lower() not in seen:
                    break
            else:
                raise RuntimeError(f"no new {label} text after {_MAX_ATTEMPTS} draws")
            seen.add(text.lower())
            records.append({"text": text, "label": label})
        splits[split] = records
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, records in generate(args.seed).items():
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        (args.out / f"{split}.jsonl").write_text(lines, encoding="utf-8", newline="\n")
        print(f"{split}: {len(records)} records")


if __name__ == "__main__":
    main()
