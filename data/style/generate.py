"""Deterministic generator of synthetic clinical notes rewritten in a patient-friendly style.

Writes ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``: one JSON object per line,
``{"prompt": ..., "response": ...}``. The prompt is a terse clinician's note (a finding, then an action, e.g.
``"BP 152/96. Start amlodipine 5 mg daily. F/u 4 wk."``); the response says the same in plain words to the
patient, with recurring markers of the style:

  * it opens with one of ``OPENERS`` ("In plain words:", "Simply put:", "Here is what this means:");
  * it speaks to the patient ("your", "you") and spells out abbreviations;
  * it closes with one of ``CLOSERS`` ("Feel free to ask us anything.", "Please don't hesitate to call us.", ...).

The style profile in ``recipes/style_tiny.toml`` detects the openers and closers; every response carries both
and no prompt carries either (checked here), so `style_match` is 1.0 on the references and the terse inputs
would score 0. No prompt repeats within or across splits. Everything is drawn from one ``random.Random(seed)``:
the same seed reproduces byte-identical files. Standard library only.

Usage: ``python data/style/generate.py [--out DIR] [--seed 11]``
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Final

SPLIT_SIZES: Final = {"train": 400, "validation": 50, "test": 80}
DEFAULT_SEED: Final = 11
_MAX_ATTEMPTS: Final = 500

OPENERS: Final = ("In plain words:", "Simply put:", "Here is what this means:")
CLOSERS: Final = ("Feel free to ask us anything.", "Please don't hesitate to call us.",
                  "Don't worry, we are here to help.")
#: markers of the style, as the shipped recipe's profile declares them (checked against every prompt)
PROFILE: Final = re.compile(r"in plain words|simply put|here is what this means|feel free to ask|"
                            r"don't hesitate|don't worry", re.IGNORECASE)

# finding: (terse template, friendly template, value drawer)
FINDINGS: Final = (
    ("BP {v}.", "your blood pressure was {v}, which is higher than we would like.",
     lambda r: f"{r.randint(142, 178)}/{r.randint(90, 104)}"),
    ("BP {v}, nl.", "your blood pressure was {v}, which is normal.",
     lambda r: f"{r.randint(108, 128)}/{r.randint(66, 80)}"),
    ("HbA1c {v}%.", "your average blood sugar test (HbA1c) was {v} percent, which is too high.",
     lambda r: f"{r.randint(7, 10)}.{r.randint(0, 9)}"),
    ("HbA1c {v}%, at goal.", "your average blood sugar test (HbA1c) was {v} percent, right on target.",
     lambda r: f"{r.choice((5, 6))}.{r.randint(0, 9)}"),
    ("LDL {v} mg/dL.", "your bad cholesterol (LDL) was {v}, which is too high.",
     lambda r: str(r.randint(150, 210))),
    ("Hb {v} g/dL.", "your blood count (hemoglobin) was {v}, which is low.",
     lambda r: f"{r.randint(8, 10)}.{r.randint(0, 9)}"),
    ("TSH {v}, elevated.", "your thyroid test (TSH) was {v}, which means the thyroid is slow.",
     lambda r: f"{r.randint(6, 14)}.{r.randint(0, 9)}"),
    ("CXR neg.", "your chest X-ray looked normal.", lambda r: ""),
    ("CXR: RLL infiltrate.", "your chest X-ray shows a small patch of infection in the right lung.", lambda r: ""),
    ("UA pos for UTI.", "your urine test shows a bladder infection.", lambda r: ""),
    ("K {v}, low.", "your potassium level was {v}, a little low.", lambda r: f"3.{r.randint(0, 3)}"),
    ("Wt up {v} kg.", "your weight went up by {v} kilograms.", lambda r: str(r.randint(2, 6))),
    ("eGFR {v}.", "your kidney test (eGFR) was {v}, which shows the kidneys work a bit slower.",
     lambda r: str(r.randint(38, 58))),
    ("Temp {v} C.", "your temperature was {v} degrees, which is a fever.", lambda r: f"38.{r.randint(2, 9)}"),
    ("Vit D {v}, low.", "your vitamin D level was {v}, which is low.", lambda r: str(r.randint(9, 19))),
)
DRUGS: Final = ("amlodipine", "metformin", "atorvastatin", "levothyroxine", "lisinopril", "amoxicillin",
                "nitrofurantoin", "ferrous sulfate", "vitamin D", "potassium chloride", "furosemide")
FREQUENCIES: Final = (("daily", "once a day"), ("BID", "twice a day"), ("TID", "three times a day"),
                      ("qHS", "at bedtime"))
ACTIONS: Final = (
    ("Start {drug} {dose} mg {freq}.", "we would like you to start {drug}, {dose} mg {ffreq}."),
    ("Incr {drug} to {dose} mg {freq}.", "we would like you to take more {drug}: {dose} mg {ffreq}."),
    ("Cont {drug} {dose} mg {freq}.", "please keep taking your {drug}, {dose} mg {ffreq}."),
    ("Stop {drug}.", "please stop taking {drug}."),
    ("No change to meds.", "you do not need to change your medicines."),
    ("Low-salt diet.", "try to eat less salt."),
    ("Incr fluids.", "please drink more water."),
    ("Rest, no exertion x {days} d.", "please rest and avoid hard work for {days} days."),
)
FOLLOW_UPS: Final = (
    ("", ""),
    ("F/u {n} wk.", "we will see you again in {n} weeks."),
    ("Repeat labs {n} wk.", "we will repeat your blood tests in {n} weeks."),
    ("RTC PRN.", "come back any time you feel worse."),
    ("ED if worse.", "if you feel worse, go to the emergency room."),
)
DOSES: Final = (5, 10, 20, 25, 40, 50, 100, 250, 500)


def _cap(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def pair(rng: random.Random) -> tuple[str, str]:
    """A terse note and its patient-friendly rewrite."""
    terse_f, friendly_f, value = rng.choice(FINDINGS)
    v = value(rng)
    terse_a, friendly_a = rng.choice(ACTIONS)
    freq, ffreq = rng.choice(FREQUENCIES)
    fill = {"drug": rng.choice(DRUGS), "dose": rng.choice(DOSES), "freq": freq, "ffreq": ffreq,
            "days": rng.randint(2, 7)}
    terse_u, friendly_u = rng.choice(FOLLOW_UPS)
    n = rng.randint(2, 12)
    prompt = " ".join(p for p in (terse_f.format(v=v), terse_a.format(**fill), terse_u.format(n=n)) if p)
    sentences = [_cap(friendly_f.format(v=v)), _cap(friendly_a.format(**fill))]
    if friendly_u:
        sentences.append(_cap(friendly_u.format(n=n)))
    response = " ".join([rng.choice(OPENERS), *sentences, rng.choice(CLOSERS)])
    return prompt, response


def generate(seed: int = DEFAULT_SEED) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict[str, str]]] = {}
    for split, size in SPLIT_SIZES.items():
        records = []
        while len(records) < size:
            for _ in range(_MAX_ATTEMPTS):
                prompt, response = pair(rng)
                if prompt not in seen:
                    break
            else:
                raise RuntimeError(f"no new prompt after {_MAX_ATTEMPTS} draws")
            assert not PROFILE.search(prompt) and PROFILE.search(response), (prompt, response)
            seen.add(prompt)
            records.append({"prompt": prompt, "response": response})
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
