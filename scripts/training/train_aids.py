"""Train the ACTG 175 outcome model (AIDS_Classification.csv, 2,139 patients) into artifacts/models/aids/.

Left out of the inputs: `time` (days to event or censoring: it encodes the label), `offtrt` (off treatment
before week 96: observed after the week-20 prediction point and adds nothing in CV), and `treat` and
`str2`, which are exact functions of `trt` (trt != 0) and `strat` (strat > 1) in every row.
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression

from scripts.training.tabular import SHARED, ModelSpec, SimpleBaseline, parse_args, train
from slimserve.manifest import Feature

DATA = SHARED / "data" / "aids" / "AIDS_Classification.csv"


def flag(name: str, meaning: str) -> Feature:
    """A 0/1 column of the trial data."""
    return Feature(name, "boolean", f"{meaning} (1 yes, 0 no)")


FEATURES = (
    Feature("trt", "integer", "treatment arm: 0 ZDV only, 1 ZDV+ddI, 2 ZDV+zalcitabine, 3 ddI only "
            "(a code, one-hot encoded inside the model)", minimum=0, maximum=3),
    Feature("age", "integer", "age at baseline; the trial enrolled from 12 years (training data: 12–70)",
            "years", 12, 100),
    Feature("wtkg", "number", "weight at baseline (training data: 31–160)", "kg", 20, 250),
    flag("hemo", "haemophilia"),
    flag("homo", "homosexual activity"),
    flag("drugs", "history of intravenous drug use"),
    Feature("karnof", "integer", "Karnofsky performance score at baseline (training data: 70–100)",
            minimum=0, maximum=100),
    flag("oprior", "non-ZDV antiretroviral therapy before the trial"),
    flag("z30", "ZDV in the 30 days before the trial"),
    Feature("preanti", "integer", "days of antiretroviral therapy before the trial (training data: 0–2851)",
            "days", 0, 10000),
    Feature("race", "boolean", "race as coded in ACTG 175: 0 white, 1 non-white"),
    Feature("gender", "boolean", "gender as coded in ACTG 175: 0 female, 1 male"),
    Feature("strat", "integer", "antiretroviral history stratum: 1 naive, 2 > 1 and ≤ 52 weeks of prior "
            "therapy, 3 > 52 weeks", minimum=1, maximum=3),
    flag("symptom", "symptomatic at baseline"),
    Feature("cd40", "integer", "CD4 count at baseline; 0 = not measured (3 training rows have 0 with a "
            "normal week-20 count; the trial enrolled CD4 200–500) (training data: 0–1199)",
            "cells/mm³", 0, 2000, zero_means_missing=True),
    Feature("cd420", "integer", "CD4 count at week 20 ± 5 (training data: 49–1119)", "cells/mm³", 1, 2000),
    Feature("cd80", "integer", "CD8 count at baseline (training data: 40–5011)", "cells/mm³", 1, 10000),
    Feature("cd820", "integer", "CD8 count at week 20 ± 5 (training data: 124–6035)", "cells/mm³", 1, 10000),
)

SPEC = ModelSpec(
    name="aids",
    description="Probability that an ACTG 175 HIV trial patient reaches the study endpoint (AIDS-defining "
                "event or death) from baseline data and CD4/CD8 counts at week 20 (UCI ACTG 175, 2,139 patients).",
    target="infected",
    features=FEATURES,
    # Logistic regression beat gradient boosting and a random forest in CV here (AUC 0.754 vs 0.725/0.733).
    classifier=lambda seed: LogisticRegression(max_iter=1000),
    scale=True,
    nominal=frozenset({"trt"}),
    label_names={"0": "censored (no endpoint observed)", "1": "AIDS-defining event or death"},
    positive_label="1",
    threshold_rule="max_f1",  # 24 % positive: at 0.5 the model finds too few of the endpoints
    simple_baseline=SimpleBaseline("cd4_logistic", "logistic regression on the CD4 counts cd40 and cd420 only",
                                   ("cd40", "cd420"), lambda seed: LogisticRegression(max_iter=1000)),
)


def main(argv: list[str] | None = None) -> None:
    """Train and write the model folder."""
    print(train(SPEC, parse_args(DATA, argv)))


if __name__ == "__main__":
    main()
