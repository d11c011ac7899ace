"""Train one S/I/R model per antibiotic (modelo_<WHONET>_NM) from the CAMDA 2025 MIC table.

Each model maps species + MIC (+ MIC sign, accepted but not used) to the CLSI category the data encodes.
Breakpoints differ by species (ERY: S. aureus S ≤ 0.5 but S. pneumoniae S ≤ 0.25 mg/L), so species is an
input. The sign is dropped inside the model: the labels were computed from the MIC value alone (every
species + MIC pair has one label whatever the sign), and a tree allowed to split on the sign learnt how
laboratories happen to write results instead: C. jejuni 4 mg/L is S in the data only as "<=4", so a plain
4 came out R. After training, each model is checked on the two-fold dilution series against the
breakpoints the data implies.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.tree import DecisionTreeClassifier

from scripts.training.tabular import (
    SHARED,
    ModelSpec,
    SimpleBaseline,
    load_table,
    parse_args,
    train,
)
from slimserve.manifest import Feature

DATA = SHARED / "data" / "antibiotic" / "camda2025_training_mic_sir.csv"

# WHONET code → (name, the species measured for it). The challenge calls tetracycline TET; WHONET says TCY.
ANTIBIOTICS = {
    "GEN": ("gentamicin", ("Escherichia coli", "Klebsiella pneumoniae", "Salmonella enterica")),
    "ERY": ("erythromycin", ("Staphylococcus aureus", "Streptococcus pneumoniae")),
    "TCY": ("tetracycline", ("Campylobacter jejuni", "Neisseria gonorrhoeae")),
    "CAZ": ("ceftazidime", ("Acinetobacter baumannii", "Pseudomonas aeruginosa")),
}
# "" is its own value, not missing: it is how the source writes a plain dilution result with no sign.
SIGNS = ("", "<", "<=", "=", ">", ">=")
LABEL_NAMES = {"S": "susceptible", "I": "intermediate", "R": "resistant"}
DILUTIONS = tuple(2.0**k for k in range(-7, 11))  # 0.0078 … 1024 mg/L, the standard two-fold series


def tree(seed: int) -> DecisionTreeClassifier:
    """A single tree: the labels are CLSI breakpoints per species, i.e. a few MIC thresholds per branch."""
    return DecisionTreeClassifier(max_depth=8, random_state=seed)


def spec_for(code: str) -> ModelSpec:
    """The model of one antibiotic."""
    name, species = ANTIBIOTICS[code]
    features = (
        Feature("species", "category", f"bacterial species (genus and species) of the isolate; the "
                f"{name} model knows {len(species)}", categories=list(species)),
        Feature("mic_value", "number", "minimum inhibitory concentration as reported (two-fold dilutions "
                "or E-test half steps; training data: 0.008–1024)", "mg/L", 0.001, 4096),
        Feature("mic_sign", "category", "qualifier written before the MIC: '' (empty string) = none "
                "reported, a plain dilution result; '<', '<=', '=', '>', '>=' as reported. Accepted and "
                "validated but it does not change the answer: the training labels were computed from the "
                "MIC value alone", categories=list(SIGNS)),
    )
    return ModelSpec(
        name=f"modelo_{code}_NM",
        description=f"CLSI category (S/I/R) of {' or '.join(species)} isolates to {name} from the species and "
                    f"the MIC; the MIC sign is accepted but does not change the answer (CAMDA 2025 AMR challenge "
                    f"data, labels computed with CLSI breakpoints).",
        target="sir",
        features=features,
        classifier=tree,
        scale=False,
        ignored=frozenset({"mic_sign"}),
        label_names=LABEL_NAMES,
        simple_baseline=SimpleBaseline("mic_only_tree", "the same tree on mic_value alone (one breakpoint set "
                                       "for every species)", ("mic_value",), tree, scale=False),
        rows={"whonet_code": code},
    )


def dilution_check(folder: Path, spec: ModelSpec, data: Path) -> dict:
    """The served model on every two-fold dilution per species, against the breakpoints the data implies."""
    X, y = load_table(data, spec)
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    checked, mismatches, undetermined = 0, [], []
    for species in spec.features[0].categories:
        mic, sir = X.loc[X["species"] == species, "mic_value"].to_numpy(), y[X["species"] == species]
        s_max, r_min, has_i = mic[sir == "S"].max(), mic[sir == "R"].min(), bool((sir == "I").any())
        feed = {"species": np.full((len(DILUTIONS), 1), species, dtype=object),
                "mic_value": np.array(DILUTIONS, dtype=np.float32).reshape(-1, 1),
                "mic_sign": np.full((len(DILUTIONS), 1), "", dtype=object)}
        predicted = session.run(["label"], feed)[0].ravel()
        for value, label in zip(DILUTIONS, predicted, strict=True):
            expected = "S" if value <= s_max else "R" if value >= r_min else "I" if has_i else None
            row = {"species": species, "mic_value": value, "predicted": str(label)}
            if expected is None:
                undetermined.append(row)  # between S and R with no I rows for this species: the data cannot say
                continue
            checked += 1
            if label != expected:
                mismatches.append({**row, "expected": expected})
    return {"grid": "two-fold dilutions 2^-7..2^10 mg/L, sign ''",
            "rule": "S if MIC <= the highest S MIC of the species in the data, R if >= its lowest R MIC, else I",
            "checked": checked, "agree": checked - len(mismatches), "mismatches": mismatches,
            "undetermined": undetermined}


def main(argv: list[str] | None = None) -> None:
    """Train and write the four model folders, then add the dilution check to each metrics.json."""
    args = parse_args(DATA, argv)
    for code in ANTIBIOTICS:
        spec = spec_for(code)
        folder = train(spec, args)
        metrics_path = folder / "metrics.json"
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        metrics["dilution_check"] = check = dilution_check(folder, spec, args.data)
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(folder, f"dilution check {check['agree']}/{check['checked']}, undetermined {check['undetermined']}")


if __name__ == "__main__":
    main()
