"""MODEL_CARD.md for a tabular model, written from its manifest and metrics.json plus what only a person knows.

The figures come from the model's own files (so a card cannot drift from the model it describes); intended use,
out-of-scope uses and limitations are written per data set below. Training writes the card; for the
committed models, `python -m scripts.training.model_card artifacts/models/<name>/<version> …` rewrites it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from slimserve.manifest import Manifest, load_manifest

# Per data set: (intended use, out of scope, limitations). Antibiotic models share one entry.
TEXT: dict[str, tuple[str, str, list[str]]] = {
    "heart_failure": (
        "Demonstrate an MLflow-compatible scoring endpoint on a small public clinical table: the probability "
        "of heart disease from 11 routine findings, for research and teaching.",
        "Any clinical decision; patients unlike the 5 historical UCI cohorts (1988-era hospitals in Cleveland, "
        "Hungary, Switzerland, Long Beach VA, Statlog); children.",
        ["918 patients only: the test split has 184, so its figures carry wide intervals (see `ci95` in "
         "metrics.json); the 5-fold CV mean is the steadier estimate.",
         "Cholesterol and RestingBP of 0 mean 'not measured' in this data and are imputed with the training "
         "median.",
         "The cohorts' selection (patients referred for angiography) inflates the base rate (55% positive)."]),
    "diabetes": (
        "Demonstrate a tabular endpoint on a large EHR-style extract: the probability of a diabetes "
        "diagnosis from age, sex, BMI, smoking history, hypertension, heart disease, HbA1c and glucose.",
        "Diagnosis or screening of real patients; any population whose records were not collected the way "
        "this Kaggle extract was (its provenance is undocumented).",
        ["HbA1c and blood glucose are themselves diagnostic criteria: the model largely restates them.",
         "Recall of the positive class at the chosen threshold is about 0.70: one diabetic record in three "
         "is missed.",
         "The data set's origin is unknown beyond the Kaggle listing (see PROVENANCE.md)."]),
    "aids": (
        "Demonstrate a tabular endpoint on a historical trial: the probability that an ACTG 175 participant "
        "reaches the study endpoint (AIDS-defining event or death) from baseline data and week-20 counts.",
        "Prognosis of patients on modern antiretroviral therapy (ACTG 175 compared 1990s regimens); "
        "treatment decisions.",
        ["Test AUC about 0.78: a modest discriminator.",
         "`time` and `offtrt` are left out on purpose (they encode or follow the outcome); `treat` and "
         "`str2` are exact functions of `trt` and `strat`.",
         "Censored participants are labelled 0 although their outcome is unknown."]),
    "antibiotic": (
        "Demonstrate multi-class serving: the CLSI category (S/I/R) of an isolate from its species and MIC, "
        "as the CAMDA 2025 AMR challenge data label it.",
        "Replacing a laboratory's own breakpoint tables; species, antibiotics or CLSI versions other than "
        "those in the training data.",
        ["The labels are a deterministic function of species and MIC (CLSI breakpoints), so accuracy 1.0 "
         "says the model learned the table, not that it predicts resistance from biology.",
         "The MIC sign (`<=`, `>=`) is accepted but ignored: in this data it records lab notation, not a "
         "different measurement.",
         "Only the species and dilutions present in the data are covered (see the dilution check in "
         "metrics.json)."]),
}


VALIDATION_NOTE = ("Inputs are validated against the training ranges and categories; values outside them are "
                   "refused (422), not extrapolated. Drift against the training distribution is reported at "
                   "`/models/{name}/drift`.")


def card_text(manifest: Manifest, metrics: dict[str, Any]) -> str:
    """The card's Markdown."""
    key = "antibiotic" if manifest.name.startswith("modelo_") else manifest.name
    intended, out_of_scope, limitations = TEXT[key]
    test, cv = metrics.get("test", {}), metrics.get("cv", {}).get("mean", {})
    split = metrics.get("split", {})
    labels = ", ".join(f"`{label}` ({manifest.label_names.get(label, label)})" for label in manifest.labels)
    features = ", ".join(f"`{f.name}`" for f in manifest.features or [])
    rows = [("test", split.get("n_test"), test), ("5-fold CV on train (mean)", split.get("n_train"), cv)]
    # Bullets, not a table: the model page renders a small Markdown subset (no tables, one-line items).
    table = "\n".join(f"- {name} (n = {n}): accuracy {_fmt(m.get('accuracy'))}, AUC {_fmt(m.get('auc'))}, "
                      f"F1 {_fmt(m.get('f1'))}, Brier {_fmt(m.get('brier'))}" for name, n, m in rows if m)
    baselines = "\n".join(f"- {name}: accuracy {_fmt(b.get('test', b).get('accuracy'))}, AUC "
                          f"{_fmt(b.get('test', b).get('auc'))}" for name, b in metrics.get("baseline", {}).items())
    training = manifest.training
    return f"""# Model card: {manifest.name} {manifest.version}

## What it is
{manifest.description}

Labels: {labels}. Decision: {"threshold " + str(manifest.threshold) + " on P(" + str(manifest.positive_label) + ")"
                              if manifest.positive_label else "the most probable label"}.
Inputs ({len(manifest.features or [])}): {features} — types, units, ranges and categories in `manifest.json`
and `GET /models/{manifest.name}`.

Estimator: {training.get("estimator", "see manifest.json")}. Trained by `{training.get("command", "")}`
(seed {training.get("seed")}); converted to ONNX with skl2onnx and checked against scikit-learn
(max |Δp| {_fmt(metrics.get("onnx", {}).get("max_abs_diff"), 2)}).

## Intended use
{intended} **Not a medical device.**

## Out of scope
{out_of_scope}

## Data
`{training.get("data")}` (sha256 `{str(training.get("data_sha256", ""))[:16]}…`), from `../shared/data/` — see its
PROVENANCE.md. Split: {split.get("n_train")} training rows, {split.get("n_test")} test rows (stratified,
seed {split.get("seed", training.get("seed"))}).

## Metrics (`metrics.json`)
{table}

Baselines on the same test split:
{baselines}

Plots beside this card: `roc.png`, `calibration.png`, `confusion_matrix.png`.

## Limitations
{chr(10).join("- " + item for item in limitations)}
- {VALIDATION_NOTE.format(name=manifest.name)}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}g}" if isinstance(value, float) and value < 1e-3 else (
        f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def write_card(folder: Path) -> Path:
    """Write MODEL_CARD.md into a tabular model's folder from its manifest and metrics.json."""
    manifest = load_manifest(folder)
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    path = folder / "MODEL_CARD.md"
    path.write_text(card_text(manifest, metrics), encoding="utf-8")
    return path


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(write_card(Path(argument)))
