"""Deterministic generator of synthetic clinical sentences for named-entity recognition.

Writes ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl``: one JSON object per line,
``{"text": ..., "entities": [{"start", "end", "label"}]}`` with character offsets (end exclusive),
sorted by start and never overlapping. Labels: MEDICATION, DOSAGE, CONDITION, PROCEDURE.

Why a held-out split of the vocabularies
----------------------------------------
Sentences are built by filling templates from finite vocabularies. If the test set drew its drug,
condition and procedure names from the same lists as the training set, a model could score well by
memorising the lists (a gazetteer) without learning to read the context. Each vocabulary is therefore
split once, from the seed, into a *train pool* and a *held-out pool* (``HELDOUT_FRACTION`` of it).
Training sentences use the train pool only; validation and test sentences take each mention from the
held-out pool with probability ``HELDOUT_MENTION_RATE`` and from the train pool otherwise. A sizeable
share of evaluation mentions are strings the model has never seen labelled, so the test set measures
extraction from context, not recall of memorised strings. Dosages are compositional (amount, unit,
optional route and frequency) and need no such split.

Cleanliness guarantees (checked for every sentence, a failing draw is redrawn):
  * every entity string occurs exactly once in its sentence (as a substring, case-insensitive), so a
    predicted mention maps back to a single span;
  * no vocabulary string of any class occurs outside the labelled spans (templates never mention
    a drug, condition or procedure in their fixed words);
  * no sentence text repeats, within or across splits.

Everything is drawn from one ``random.Random(seed)``: regenerating with the same seed reproduces
byte-identical files. Standard library only.

Usage: ``python data/medical_ner/generate.py [--out DIR] [--seed 13]``
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

LABELS: Final = ("MEDICATION", "DOSAGE", "CONDITION", "PROCEDURE")
SPLIT_SIZES: Final = {"train": 2200, "validation": 200, "test": 300}
DEFAULT_SEED: Final = 13
#: share of each vocabulary kept out of training
HELDOUT_FRACTION: Final = 0.35
#: probability that a validation/test mention is drawn from the held-out pool
HELDOUT_MENTION_RATE: Final = 0.45
#: share of sentences built from templates without entities
NO_ENTITY_RATE: Final = 0.05
_MAX_ATTEMPTS: Final = 200

# --------------------------------------------------------------------------------------------- vocabularies
MEDICATIONS: Final[tuple[str, ...]] = (
    # analgesics, anti-inflammatories, opioids
    "acetaminophen", "ibuprofen", "naproxen", "aspirin", "celecoxib", "diclofenac", "ketorolac", "meloxicam",
    "indomethacin", "tramadol", "oxycodone", "hydromorphone", "morphine", "fentanyl", "methadone",
    "buprenorphine", "naloxone",
    # neurology and psychiatry
    "gabapentin", "pregabalin", "duloxetine", "amitriptyline", "nortriptyline", "sertraline", "fluoxetine",
    "citalopram", "escitalopram", "paroxetine", "venlafaxine", "bupropion", "mirtazapine", "trazodone",
    "quetiapine", "olanzapine", "risperidone", "aripiprazole", "haloperidol", "lithium carbonate",
    "lamotrigine", "valproic acid", "levetiracetam", "carbamazepine", "phenytoin", "topiramate", "lacosamide",
    "lorazepam", "diazepam", "alprazolam", "clonazepam", "midazolam", "zolpidem", "melatonin", "donepezil",
    "memantine", "carbidopa-levodopa", "ropinirole", "pramipexole", "sumatriptan",
    # diabetes and endocrine
    "metformin", "glipizide", "glyburide", "glimepiride", "sitagliptin", "linagliptin", "empagliflozin",
    "dapagliflozin", "canagliflozin", "pioglitazone", "liraglutide", "semaglutide", "dulaglutide",
    "insulin glargine", "insulin lispro", "insulin aspart", "insulin detemir", "levothyroxine", "methimazole",
    "propylthiouracil", "hydrocortisone", "fludrocortisone", "desmopressin", "octreotide", "glucagon",
    "estradiol", "medroxyprogesterone", "testosterone cypionate", "alendronate", "calcitriol",
    # cardiovascular
    "lisinopril", "enalapril", "ramipril", "captopril", "losartan", "valsartan", "irbesartan", "candesartan",
    "amlodipine", "nifedipine", "diltiazem", "verapamil", "metoprolol", "carvedilol", "atenolol", "propranolol",
    "labetalol", "bisoprolol", "hydralazine", "clonidine", "hydrochlorothiazide", "chlorthalidone",
    "furosemide", "bumetanide", "torsemide", "spironolactone", "eplerenone", "isosorbide mononitrate",
    "nitroglycerin", "digoxin", "amiodarone", "sotalol", "dofetilide", "flecainide", "atorvastatin",
    "rosuvastatin", "simvastatin", "pravastatin", "ezetimibe", "fenofibrate", "warfarin", "apixaban",
    "rivaroxaban", "dabigatran", "enoxaparin", "heparin", "clopidogrel", "ticagrelor", "prasugrel", "alteplase",
    "epinephrine", "norepinephrine", "vasopressin", "dobutamine",
    # anti-infectives
    "amoxicillin", "ampicillin", "piperacillin-tazobactam", "cefazolin", "ceftriaxone", "cefepime",
    "cephalexin", "cefuroxime", "azithromycin", "clarithromycin", "doxycycline", "minocycline",
    "ciprofloxacin", "levofloxacin", "moxifloxacin", "metronidazole", "clindamycin", "vancomycin", "linezolid",
    "daptomycin", "meropenem", "ertapenem", "gentamicin", "tobramycin", "nitrofurantoin",
    "trimethoprim-sulfamethoxazole", "rifampin", "isoniazid", "fluconazole", "voriconazole", "micafungin",
    "nystatin", "acyclovir", "valacyclovir", "oseltamivir", "remdesivir",
    # gastrointestinal
    "omeprazole", "pantoprazole", "esomeprazole", "lansoprazole", "famotidine", "ondansetron",
    "metoclopramide", "prochlorperazine", "promethazine", "docusate", "senna", "polyethylene glycol",
    "lactulose", "bisacodyl", "loperamide", "mesalamine", "sucralfate", "rifaximin", "ursodiol",
    # steroids, pulmonary, allergy
    "prednisone", "prednisolone", "methylprednisolone", "dexamethasone", "albuterol", "ipratropium",
    "tiotropium", "budesonide", "fluticasone", "montelukast", "cetirizine", "loratadine", "diphenhydramine",
    "hydroxyzine",
    # rheumatology, immunology, oncology
    "allopurinol", "colchicine", "febuxostat", "methotrexate", "hydroxychloroquine", "sulfasalazine",
    "adalimumab", "infliximab", "etanercept", "rituximab", "cisplatin", "tamoxifen", "letrozole",
    "anastrozole", "cyclosporine", "tacrolimus", "mycophenolate mofetil", "azathioprine",
    # urology
    "tamsulosin", "finasteride", "oxybutynin", "sildenafil",
    # supplements and electrolytes
    "ergocalciferol", "cyanocobalamin", "folic acid", "ferrous sulfate", "potassium chloride",
    "magnesium oxide", "calcium carbonate", "sodium bicarbonate", "thiamine",
    # anaesthesia
    "propofol", "ketamine",
)

CONDITIONS: Final[tuple[str, ...]] = (
    # cardiovascular
    "hypertension", "hyperlipidemia", "hypertriglyceridemia", "coronary artery disease",
    "congestive heart failure", "atrial fibrillation", "atrial flutter", "ventricular tachycardia",
    "supraventricular tachycardia", "complete heart block", "sick sinus syndrome", "aortic stenosis",
    "mitral regurgitation", "peripheral artery disease", "deep vein thrombosis", "pulmonary embolism",
    "acute myocardial infarction", "unstable angina", "stable angina", "dilated cardiomyopathy",
    "hypertrophic cardiomyopathy", "acute pericarditis", "infective endocarditis", "orthostatic hypotension",
    "syncope", "abdominal aortic aneurysm", "aortic dissection", "varicose veins", "lymphedema",
    # pulmonary
    "chronic obstructive pulmonary disease", "COPD", "asthma", "community-acquired pneumonia",
    "aspiration pneumonia", "pulmonary fibrosis", "obstructive sleep apnea", "pleural effusion",
    "pneumothorax", "acute respiratory distress syndrome", "bronchiectasis", "pulmonary hypertension",
    "interstitial lung disease", "sarcoidosis", "lung nodule",
    # renal, electrolytes, urology
    "chronic kidney disease", "acute kidney injury", "end-stage renal disease", "nephrolithiasis",
    "urinary tract infection", "pyelonephritis", "urosepsis", "benign prostatic hyperplasia",
    "urinary retention", "urinary incontinence", "erectile dysfunction", "hyponatremia", "hyperkalemia",
    "hypokalemia", "hypomagnesemia", "hypercalcemia", "metabolic acidosis", "dehydration",
    # endocrine and metabolic
    "type 2 diabetes mellitus", "type 1 diabetes mellitus", "gestational diabetes", "diabetic ketoacidosis",
    "hypoglycemia", "hypothyroidism", "hyperthyroidism", "Graves disease", "Hashimoto thyroiditis",
    "thyroid nodule", "adrenal insufficiency", "Cushing syndrome", "primary hyperparathyroidism",
    "diabetes insipidus", "obesity", "morbid obesity", "malnutrition", "failure to thrive",
    "vitamin D deficiency", "vitamin B12 deficiency",
    # gastrointestinal and hepatic
    "gastroesophageal reflux disease", "GERD", "peptic ulcer disease", "upper gastrointestinal bleeding",
    "lower gastrointestinal bleeding", "acute pancreatitis", "chronic pancreatitis", "acute cholecystitis",
    "cholelithiasis", "choledocholithiasis", "acute cholangitis", "alcoholic cirrhosis",
    "hepatic encephalopathy", "hepatitis C", "nonalcoholic fatty liver disease", "esophageal varices",
    "Barrett esophagus", "hiatal hernia", "inguinal hernia", "umbilical hernia", "hemorrhoids",
    "anal fissure", "celiac disease", "ulcerative colitis", "Crohn disease", "diverticulitis",
    "small bowel obstruction", "acute appendicitis", "Clostridioides difficile colitis",
    "irritable bowel syndrome", "chronic constipation", "gastroparesis",
    # haematology and oncology
    "iron deficiency anemia", "anemia of chronic disease", "sickle cell disease", "thrombocytopenia",
    "pancytopenia", "polycythemia vera", "neutropenic fever", "multiple myeloma",
    "chronic lymphocytic leukemia", "non-Hodgkin lymphoma", "breast cancer", "prostate cancer",
    "colon cancer", "bladder cancer", "ovarian cancer", "non-small cell lung cancer",
    "pancreatic adenocarcinoma", "hepatocellular carcinoma", "renal cell carcinoma", "metastatic melanoma",
    # infectious
    "sepsis", "septic shock", "cellulitis", "osteomyelitis", "bacteremia", "HIV infection", "influenza",
    "COVID-19", "herpes zoster", "oral candidiasis", "latent tuberculosis", "streptococcal pharyngitis",
    "otitis media", "chronic sinusitis",
    # neurology and psychiatry
    "ischemic stroke", "transient ischemic attack", "intracerebral hemorrhage", "subarachnoid hemorrhage",
    "epilepsy", "status epilepticus", "migraine", "Parkinson disease", "Alzheimer dementia",
    "multiple sclerosis", "peripheral neuropathy", "diabetic neuropathy", "myasthenia gravis", "delirium",
    "restless legs syndrome", "trigeminal neuralgia", "Bell palsy", "benign paroxysmal positional vertigo",
    "tinnitus", "major depressive disorder", "generalized anxiety disorder", "bipolar disorder",
    "schizophrenia", "alcohol use disorder", "opioid use disorder", "alcohol withdrawal", "insomnia",
    "post-traumatic stress disorder", "attention deficit hyperactivity disorder",
    # musculoskeletal and skin
    "osteoarthritis", "rheumatoid arthritis", "gout", "psoriatic arthritis", "systemic lupus erythematosus",
    "osteoporosis", "low back pain", "lumbar radiculopathy", "spinal stenosis", "hip fracture",
    "rotator cuff tear", "carpal tunnel syndrome", "fibromyalgia", "psoriasis", "atopic dermatitis",
    "pressure ulcer", "diabetic foot ulcer",
    # eye, ENT, allergy, obstetrics
    "glaucoma", "macular degeneration", "diabetic retinopathy", "allergic rhinitis", "anaphylaxis",
    "angioedema", "preeclampsia", "hyperemesis gravidarum", "endometriosis", "polycystic ovary syndrome",
)

#: tests, imaging and diagnostic endoscopy: what "revealed" or "to evaluate for" can follow
DIAGNOSTIC_PROCEDURES: Final[tuple[str, ...]] = (
    "chest X-ray", "CT of the abdomen and pelvis", "CT angiography of the chest", "noncontrast head CT",
    "MRI of the brain", "MRI of the lumbar spine", "cardiac MRI", "abdominal ultrasound", "renal ultrasound",
    "pelvic ultrasound", "carotid duplex ultrasound", "lower extremity venous duplex", "ankle-brachial index",
    "PET-CT", "bone scan", "DEXA scan", "screening mammogram", "barium swallow", "modified barium swallow",
    "electroencephalogram", "electromyography", "nerve conduction study", "polysomnography",
    "pulmonary function testing", "bronchoscopy", "electrocardiogram", "transthoracic echocardiogram",
    "transesophageal echocardiogram", "exercise stress test", "nuclear stress test", "Holter monitoring",
    "tilt table test", "cardiac catheterization", "coronary angiography", "colonoscopy",
    "flexible sigmoidoscopy", "upper endoscopy", "esophagogastroduodenoscopy", "capsule endoscopy",
    "cystoscopy", "lumbar puncture", "bone marrow biopsy", "liver biopsy", "renal biopsy",
    "CT-guided lung biopsy", "fine needle aspiration", "punch biopsy", "sentinel lymph node biopsy",
)
#: operations and interventions: what a surgical history lists
OPERATIVE_PROCEDURES: Final[tuple[str, ...]] = (
    "laparoscopic cholecystectomy", "laparoscopic appendectomy", "open appendectomy", "exploratory laparotomy",
    "small bowel resection", "right hemicolectomy", "low anterior resection", "Whipple procedure",
    "sleeve gastrectomy", "Roux-en-Y gastric bypass", "Nissen fundoplication", "herniorrhaphy",
    "liver transplant", "partial hepatectomy", "kidney transplant", "arteriovenous fistula creation",
    "endoscopic retrograde cholangiopancreatography", "ERCP",
    "transjugular intrahepatic portosystemic shunt placement", "percutaneous coronary intervention",
    "coronary artery bypass grafting", "pacemaker placement", "implantable cardioverter-defibrillator placement",
    "catheter ablation", "transcatheter aortic valve replacement", "carotid endarterectomy",
    "inferior vena cava filter placement", "mechanical thrombectomy", "total knee arthroplasty",
    "total hip arthroplasty", "open reduction and internal fixation", "arthroscopic meniscectomy",
    "rotator cuff repair", "lumbar laminectomy", "spinal fusion", "carpal tunnel release",
    "below-knee amputation", "craniotomy", "ventriculoperitoneal shunt placement", "kyphoplasty",
    "total thyroidectomy", "parathyroidectomy", "modified radical mastectomy", "lumpectomy",
    "radical prostatectomy", "transurethral resection of the prostate", "ureteroscopy",
    "extracorporeal shock wave lithotripsy", "partial nephrectomy", "total abdominal hysterectomy",
    "cesarean section", "dilation and curettage", "tubal ligation", "vasectomy", "phacoemulsification",
    "vitrectomy", "trabeculectomy", "tonsillectomy", "septoplasty", "functional endoscopic sinus surgery",
    "cochlear implantation", "tracheostomy",
)
#: bedside procedures and therapies
SUPPORTIVE_PROCEDURES: Final[tuple[str, ...]] = (
    "paracentesis", "thoracentesis", "knee arthrocentesis", "incision and drainage", "wound debridement",
    "split-thickness skin graft", "Foley catheter placement", "gastrostomy tube placement",
    "nasogastric tube placement", "cholecystostomy tube placement", "endotracheal intubation",
    "mechanical ventilation", "chest tube placement", "central line placement", "arterial line placement",
    "PICC line placement", "hemodialysis", "peritoneal dialysis", "plasmapheresis",
    "packed red blood cell transfusion", "electrical cardioversion", "electroconvulsive therapy",
    "radiation therapy",
)
PROCEDURES: Final[tuple[str, ...]] = DIAGNOSTIC_PROCEDURES + OPERATIVE_PROCEDURES + SUPPORTIVE_PROCEDURES

#: how a medication is given, for a plausible dosage; medications not listed are taken by mouth
MEDICATION_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "intravenous": (
        "ketorolac", "hydromorphone", "morphine", "fentanyl", "naloxone", "midazolam", "lorazepam",
        "alteplase", "epinephrine", "norepinephrine", "vasopressin", "dobutamine", "ampicillin",
        "piperacillin-tazobactam", "cefazolin", "ceftriaxone", "cefepime", "vancomycin", "daptomycin",
        "meropenem", "ertapenem", "gentamicin", "tobramycin", "micafungin", "remdesivir", "methylprednisolone",
        "dexamethasone", "infliximab", "rituximab", "cisplatin", "propofol", "ketamine", "ondansetron",
        "pantoprazole", "metoclopramide", "furosemide", "labetalol", "hydralazine", "diltiazem", "amiodarone",
    ),
    "subcutaneous": (
        "insulin glargine", "insulin lispro", "insulin aspart", "insulin detemir", "enoxaparin", "heparin",
        "liraglutide", "semaglutide", "dulaglutide", "octreotide", "adalimumab", "etanercept", "glucagon",
        "testosterone cypionate", "medroxyprogesterone",
    ),
    "inhaled": ("albuterol", "ipratropium", "tiotropium", "budesonide", "fluticasone"),
}
_FORM_OF: Final = {drug: form for form, drugs in MEDICATION_FORMS.items() for drug in drugs}


def medication_form(drug: str) -> str:
    """oral, intravenous, subcutaneous or inhaled."""
    return _FORM_OF.get(drug.lower(), "oral")


# ------------------------------------------------------------------------------------------------- dosages
_ORAL_MG: Final = ("0.5", "1", "2", "2.5", "5", "10", "12.5", "20", "25", "40", "50", "75", "80", "100", "125",
                   "150", "200", "250", "300", "400", "500", "600", "750", "850", "1000")
#: form -> (amounts, unit, routes) choices; a dosage is amount and unit, then optional route and frequency
_DOSE_SHAPES: Final[dict[str, tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...]]] = {
    "oral": (
        (_ORAL_MG, "mg", ("PO", "orally", "by mouth")),
        (_ORAL_MG, "mg", ("PO", "orally", "by mouth")),
        (("25", "50", "75", "88", "100", "112", "125", "150", "200"), "mcg", ("PO", "by mouth")),
        (("5", "10", "15", "30"), "mL", ("PO", "by mouth")),
        (("10", "20", "40"), "mEq", ("PO", "orally")),
        (("1", "2"), "g", ("PO", "orally")),
        (("0.5", "1", "2", "5", "10"), "mg/kg", ("PO", "orally")),
    ),
    "intravenous": (
        (("0.5", "1", "2", "4", "5", "10", "20", "40", "80", "100", "125", "250", "500", "750", "1000"), "mg",
         ("IV", "intravenously", "IV push")),
        (("1", "2", "3.375", "4.5"), "g", ("IV", "intravenously")),
        (("0.1", "0.5", "1", "1.5", "2", "5", "10", "15"), "mg/kg", ("IV", "intravenously")),
        (("25", "50", "100"), "mcg", ("IV", "IV push")),
    ),
    "subcutaneous": (
        (("4", "6", "8", "10", "12", "15", "20", "24", "30", "5000"), "units", ("SC", "subcutaneously")),
        (("0.25", "0.5", "1", "1.8", "30", "40", "80", "100", "150"), "mg", ("SC", "subcutaneously")),
    ),
    "inhaled": (
        (("1", "2", "4"), "puffs", ("inhaled",)),
        (("2.5", "0.5"), "mg", ("via nebulizer", "nebulized")),
        (("18", "44", "110", "220"), "mcg", ("inhaled",)),
    ),
}
_FREQUENCIES: Final = (
    "daily", "once daily", "twice daily", "three times daily", "four times daily", "every 4 hours",
    "every 6 hours", "every 8 hours", "every 12 hours", "at bedtime", "nightly", "every morning", "weekly",
    "BID", "TID", "QID", "q6h", "q8h", "PRN", "as needed", "every 6 hours as needed",
)


def make_dosage(rng: random.Random, form: str = "oral") -> str:
    """A dosage for a medication given by `form`: "500 mg", "40 mg IV twice daily", "0.5 mg/kg IV"."""
    amounts, unit, routes = rng.choice(_DOSE_SHAPES[form])
    amount = rng.choice(amounts)
    if unit == "puffs" and amount == "1":
        unit = "puff"
    parts = [amount, unit]
    if rng.random() < 0.35:
        parts.append(rng.choice(routes))
    if rng.random() < 0.55:
        parts.append(rng.choice(_FREQUENCIES))
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------- templates
# Entity slots: {MED}, {DOSE}, {COND}, {PROC} (any procedure), {TEST} (diagnostic), {SURG} (operative),
# {CARE} (bedside procedure or therapy);
# numbered ({MED2}) for several of one class. {DOSEn} is given in the form of {MEDn}.
# Filler slots (lower case) hold words that are not entities: ages, vitals, days, counts.
TEMPLATES: Final[tuple[str, ...]] = (
    # discharge notes
    "Discharged home on {MED} {DOSE} for {COND}.",
    "She was discharged on {MED} {DOSE} and {MED2} {DOSE2}.",
    "Tolerated {SURG} well and was discharged on postoperative day {small}.",
    "Discharge diagnosis: {COND}, complicated by {COND2}.",
    "He underwent {SURG} without complication and was started on {MED}.",
    "Discharge medications include {MED}, {MED2}, and {MED3}.",
    "Hospital course was notable for {COND} requiring {CARE}.",
    "Discharged with instructions to take {MED} {DOSE} until seen in clinic.",
    # prescriptions and medication changes
    "Start {MED} {DOSE} today and recheck in one week.",
    "Rx: {MED} {DOSE} for {days} days, dispense with no refills.",
    "Prescribed {MED} {DOSE} for newly diagnosed {COND}.",
    "{MED} {DOSE} was started for {COND}.",
    "Increase {MED} to {DOSE} and recheck in {weeks} weeks.",
    "Decrease {MED} to {DOSE} given {COND}.",
    "Continue {MED} {DOSE} and hold {MED2} until follow-up.",
    "Refilled {MED} {DOSE} with three refills.",
    "Switched from {MED} to {MED2} because of {COND}.",
    "Give {MED} {DOSE} once now, then reassess in one hour.",
    "Stop {MED} due to {COND} and review at the next visit.",
    "Tapering {MED} from {DOSE} over the next {weeks} weeks.",
    "Will titrate {MED} to {DOSE} as tolerated.",
    "Intolerant of {MED} and {MED2} due to side effects.",
    "Allergic to {MED}, which caused a rash and hives.",
    "Medication list: {MED}, {MED2}, {MED3}, and {MED4}.",
    "Takes {MED} {DOSE}, {MED2} {DOSE2}, and {MED3} {DOSE3}.",
    # histories
    "{age}-year-old {sex} with a history of {COND} and {COND2}.",
    "Past medical history is significant for {COND}, {COND2}, and {COND3}.",
    "Past surgical history includes {SURG} and {SURG2}.",
    "A first-degree relative was diagnosed with {COND} at a young age.",
    "He has a longstanding history of {COND} managed with {MED}.",
    "She reports a history of {COND} treated with {SURG} in {year}.",
    "Known history of {COND}, on {MED} {DOSE} at home.",
    "Denies any history of {COND} or {COND2}.",
    "Status post {SURG} {years} years ago for {COND}.",
    "Family history is notable for {COND} and {COND2}.",
    "Her {COND} has been stable since starting {MED} last year.",
    # presentations and assessments
    "{age}-year-old {sex} presenting with {COND}.",
    "Admitted with {COND} and found to have {COND2}.",
    "Presented to the emergency department with symptoms concerning for {COND}.",
    "Findings on examination are consistent with {COND}.",
    "Likely {COND} versus {COND2}; will monitor closely.",
    "Assessment: {COND}. Plan: {MED} {DOSE}.",
    "Problem list: {COND}; {COND2}; {COND3}.",
    "{TEST} revealed {COND}.",
    "{TEST} showed no evidence of {COND}.",
    "{TEST} on {day} was unremarkable.",
    "Blood pressure {bp} on {MED} {DOSE}.",
    "Her {COND} was confirmed by {TEST} last month.",
    # treatment given
    "Treatment with {MED} {DOSE} was started for {COND}.",
    "{COND} was treated with {MED} {DOSE}.",
    "Received {MED} {DOSE} in the emergency department.",
    "Symptoms were controlled with {MED} {DOSE}.",
    "Given {MED} {DOSE} and {MED2} {DOSE2} prior to {PROC}.",
    "Underwent {PROC} and {PROC2} during this admission.",
    "Tolerated {CARE} well, without immediate complications.",
    "No complications following {SURG} on {day}.",
    "Required {CARE} for {COND} on hospital day {small}.",
    # plans
    "Plan: {PROC} tomorrow morning, keep NPO after midnight.",
    "Will schedule {PROC} and follow up in {weeks} weeks.",
    "Recommend {TEST} to evaluate for {COND}.",
    "Ordered {TEST} and {TEST2} for further workup.",
    "Plan to continue {MED} and repeat {TEST} in three months.",
    "Consult surgery for possible {SURG}.",
    "If symptoms persist, consider {PROC}.",
    "Hold {MED} before {PROC} on {day}.",
    "Resume {MED} {DOSE} after {PROC}.",
    "Scheduled for {SURG} on {day} for {COND}.",
    "Patient with {COND} on {MED}, scheduled for {PROC}.",
    "Declined {PROC} after a discussion of risks and benefits.",
    "Continue home {MED} for {COND} and follow up with her primary physician.",
    "Cleared for {SURG} pending {TEST} results.",
)

#: sentences with no entity; numbers in them are vitals and counts, never dosages
PLAIN_TEMPLATES: Final[tuple[str, ...]] = (
    "Patient was seen and examined at the bedside on {day} morning.",
    "Vital signs stable with blood pressure {bp} and heart rate {hr}.",
    "Temperature {temp} C, oxygen saturation {spo2}% on room air.",
    "{age}-year-old {sex} seen today for a routine visit.",
    "Follow up in clinic in {weeks} weeks with repeat labs.",
    "Family was updated at the bedside on {day} afternoon.",
    "Alert and oriented, in no acute distress, heart rate {hr}.",
    "Will discuss the plan with the attending physician on {day}.",
    "Weight today is {weight} kg, down from last visit.",
    "Lungs clear to auscultation; blood pressure {bp}.",
    "Ambulating in the hallway; diet advanced as tolerated on hospital day {small}.",
    "Code status confirmed as full code with the {sex} and family on {day}.",
)

_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SEXES: Final = ("man", "woman", "male", "female")
_NUMBER_WORDS: Final = ("two", "three", "four", "six", "eight")

#: filler slot -> how to draw its value
FILLERS: Final[dict[str, Callable[[random.Random], str]]] = {
    "age": lambda rng: str(rng.randint(19, 94)),
    "sex": lambda rng: rng.choice(_SEXES),
    "day": lambda rng: rng.choice(_WEEKDAYS),
    "bp": lambda rng: f"{rng.randint(96, 178)}/{rng.randint(52, 98)}",
    "hr": lambda rng: str(rng.randint(52, 118)),
    "temp": lambda rng: f"{rng.randint(36, 38)}.{rng.randint(0, 9)}",
    "spo2": lambda rng: str(rng.randint(89, 100)),
    "weight": lambda rng: str(rng.randint(48, 132)),
    "small": lambda rng: str(rng.randint(1, 6)),
    "days": lambda rng: str(rng.choice((3, 5, 7, 10, 14))),
    "weeks": lambda rng: rng.choice(_NUMBER_WORDS),
    "years": lambda rng: rng.choice(_NUMBER_WORDS),
    "year": lambda rng: str(rng.randint(1995, 2023)),
}

#: entity slot kind -> label
_SLOT_LABELS: Final = {"MED": "MEDICATION", "DOSE": "DOSAGE", "COND": "CONDITION", "PROC": "PROCEDURE",
                       "TEST": "PROCEDURE", "SURG": "PROCEDURE", "CARE": "PROCEDURE"}
_SLOT = re.compile(r"\{([A-Za-z0-9]+)\}")
_SLOT_NAME = re.compile(r"([A-Z]+)\d*|([a-z0-9]+)")


@dataclass(frozen=True)
class Entity:
    """A labelled span of a sentence: text[start:end], end exclusive."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Template:
    """A sentence pattern: literal pieces interleaved with slot names (``parts[1::2]`` are the slots)."""

    source: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        parts = tuple(_SLOT.split(source))
        for name in parts[1::2]:
            slot_kind(name)  # raises on an unknown slot
        return cls(source, parts)

    @property
    def slots(self) -> tuple[str, ...]:
        """Distinct slot names in order of first appearance."""
        return tuple(dict.fromkeys(self.parts[1::2]))

    @property
    def literal(self) -> str:
        """The fixed words, with slots blanked out."""
        return " | ".join(self.parts[0::2])


def slot_kind(name: str) -> str:
    """``MED2`` -> ``MED``; filler names are returned as they are. Unknown names raise ValueError."""
    match = _SLOT_NAME.fullmatch(name)
    kind: str = (match.group(1) or match.group(2)) if match else ""
    if kind not in _SLOT_LABELS and kind not in FILLERS:
        raise ValueError(f"unknown template slot {{{name}}}")
    return kind


def _whole(term: str) -> str:
    return rf"(?<![\w-]){re.escape(term)}(?![\w-])"


def _term_pattern(terms: Sequence[str]) -> re.Pattern[str]:
    """Any of `terms` as whole words, case-insensitive, longest alternatives first."""
    alternatives = sorted(set(terms), key=lambda t: (-len(t), t))
    return re.compile("|".join(_whole(t) for t in alternatives), re.IGNORECASE)


#: vocabulary class (split into train and held-out pools) -> its terms
VOCABULARIES: Final = {"MED": MEDICATIONS, "COND": CONDITIONS, "PROC": PROCEDURES}
#: narrower slot kinds, drawn from part of a vocabulary class's pools
SUBSETS: Final = {"TEST": ("PROC", DIAGNOSTIC_PROCEDURES), "SURG": ("PROC", OPERATIVE_PROCEDURES),
                  "CARE": ("PROC", SUPPORTIVE_PROCEDURES)}
_ANY_TERM: Final = _term_pattern([t for vocab in VOCABULARIES.values() for t in vocab])


def check_resources() -> None:
    """Vocabularies are distinct, no term of one class contains a term of another, templates name no term."""
    if set(_SLOT_LABELS.values()) != set(LABELS):
        raise ValueError("the slot kinds must cover exactly the labels")
    seen: dict[str, str] = {}
    for kind, vocab in VOCABULARIES.items():
        for term in vocab:
            if term != term.strip() or not term:
                raise ValueError(f"{kind} term {term!r} has surrounding whitespace")
            if term.casefold() in seen:
                raise ValueError(f"{kind} term {term!r} repeats a {seen[term.casefold()]} term")
            seen[term.casefold()] = kind
    for drug in _FORM_OF:
        if drug not in MEDICATIONS:
            raise ValueError(f"medication form given for {drug!r}, which is not a listed medication")
    for kind, vocab in VOCABULARIES.items():
        others = _term_pattern([t for k, v in VOCABULARIES.items() if k != kind for t in v])
        for term in vocab:
            if found := others.search(term):
                raise ValueError(f"{kind} term {term!r} contains {found.group(0)!r} from another class")
    for source in (*TEMPLATES, *PLAIN_TEMPLATES):
        template = Template.parse(source)
        if found := _ANY_TERM.search(template.literal):
            raise ValueError(f"template {source!r} names the vocabulary term {found.group(0)!r}")
        entity_slots = [s for s in template.slots if slot_kind(s) in _SLOT_LABELS]
        if (source in PLAIN_TEMPLATES) == bool(entity_slots):
            raise ValueError(f"template {source!r} is in the wrong list")


# ---------------------------------------------------------------------------------------------- generation
@dataclass(frozen=True)
class Pools:
    """Strings a split may draw for each vocabulary class, and the chance of a held-out draw."""

    train: dict[str, tuple[str, ...]]
    heldout: dict[str, tuple[str, ...]]
    heldout_rate: float

    def draw(self, kind: str, rng: random.Random) -> str:
        pool = self.heldout if self.heldout_rate and rng.random() < self.heldout_rate else self.train
        return rng.choice(pool[kind])


def split_vocabularies(rng: random.Random) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Each vocabulary shuffled and cut: (train pools, held-out pools), keyed by every entity slot kind."""
    train: dict[str, tuple[str, ...]] = {}
    heldout: dict[str, tuple[str, ...]] = {}
    for kind, vocab in VOCABULARIES.items():
        terms = list(vocab)
        rng.shuffle(terms)
        cut = round(len(terms) * HELDOUT_FRACTION)
        heldout[kind] = tuple(sorted(terms[:cut]))
        train[kind] = tuple(sorted(terms[cut:]))
    for kind, (parent, members) in SUBSETS.items():
        for pools in (train, heldout):
            pools[kind] = tuple(t for t in pools[parent] if t in members)
            if not pools[kind]:
                raise ValueError(f"the {kind} slot has an empty pool; enlarge its vocabulary")
    return train, heldout


def render(template: Template, values: dict[str, str]) -> tuple[str, list[Entity]]:
    """Fill the slots; a value opening the sentence gets a capital first letter. Returns text and spans."""
    text = ""
    entities: list[Entity] = []
    for i, piece in enumerate(template.parts):
        if i % 2 == 0:
            text += piece
            continue
        value = values[piece]
        if not text:
            value = value[:1].upper() + value[1:]
        kind = slot_kind(piece)
        if kind in _SLOT_LABELS:
            entities.append(Entity(len(text), len(text) + len(value), _SLOT_LABELS[kind]))
        text += value
    return text, entities


def is_clean(text: str, entities: Sequence[Entity]) -> bool:
    """Each entity string occurs once (as any substring, any case); every vocabulary term lies in a labelled span."""
    folded = text.casefold()
    if any(folded.count(text[e.start:e.end].casefold()) != 1 for e in entities):
        return False
    inside = [(e.start, e.end) for e in entities]
    return all(any(s <= m.start() and m.end() <= e for s, e in inside) for m in _ANY_TERM.finditer(text))


def make_record(rng: random.Random, templates: Sequence[Template], pools: Pools,
                seen: set[str]) -> tuple[str, list[Entity]]:
    """Draw a template and its values until the sentence is clean and new."""
    for _ in range(_MAX_ATTEMPTS):
        template = rng.choice(templates)
        values: dict[str, str] = {}
        for name in template.slots:
            kind = slot_kind(name)
            if kind == "DOSE":  # in the form of the medication it follows: {DOSE2} goes with {MED2}
                drug = values.get("MED" + name[len(kind):], "")
                values[name] = make_dosage(rng, medication_form(drug))
            elif kind in VOCABULARIES or kind in SUBSETS:
                values[name] = pools.draw(kind, rng)
            else:
                values[name] = FILLERS[kind](rng)
        text, entities = render(template, values)
        if text not in seen and is_clean(text, entities):
            seen.add(text)
            return text, entities
    raise RuntimeError("no clean, unseen sentence after many attempts; enlarge the templates or vocabularies")


def generate(seed: int = DEFAULT_SEED) -> dict[str, list[dict[str, object]]]:
    """All three splits as lists of JSON-ready records."""
    check_resources()
    rng = random.Random(seed)
    train_pools, heldout_pools = split_vocabularies(rng)
    templates = [Template.parse(t) for t in TEMPLATES]
    plain = [Template.parse(t) for t in PLAIN_TEMPLATES]
    seen: set[str] = set()
    splits: dict[str, list[dict[str, object]]] = {}
    for split, size in SPLIT_SIZES.items():
        rate = 0.0 if split == "train" else HELDOUT_MENTION_RATE
        pools = Pools(train_pools, heldout_pools, rate)
        records: list[dict[str, object]] = []
        for _ in range(size):
            group = plain if rng.random() < NO_ENTITY_RATE else templates
            text, entities = make_record(rng, group, pools, seen)
            records.append({"text": text,
                            "entities": [{"start": e.start, "end": e.end, "label": e.label} for e in entities]})
        splits[split] = records
    return splits


def write(splits: dict[str, list[dict[str, object]]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        with open(out / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: this script's folder)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    args = parser.parse_args(argv)
    write(generate(args.seed), args.out)


if __name__ == "__main__":
    main()
