"""Train the heart-failure model (heart.csv, 918 patients, 5 UCI cohorts) into artifacts/models/heart_failure/."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression

from scripts.training.tabular import SHARED, ModelSpec, SimpleBaseline, parse_args, train
from slimserve.manifest import Feature

DATA = SHARED / "data" / "heart_failure" / "heart.csv"

FEATURES = (
    Feature("Age", "integer", "age of the patient (training data: 28–77)", "years", 18, 100),
    Feature("Sex", "category", "sex of the patient: M male, F female", categories=["F", "M"]),
    Feature("ChestPainType", "category",
            "chest pain type: TA typical angina, ATA atypical angina, NAP non-anginal pain, ASY asymptomatic",
            categories=["ASY", "ATA", "NAP", "TA"]),
    Feature("RestingBP", "number", "resting systolic blood pressure; 0 = not measured (training data: 80–200)",
            "mm Hg", 0, 300, zero_means_missing=True),
    Feature("Cholesterol", "number", "serum total cholesterol; 0 = not measured, as in 172 of the 918 "
            "training rows (training data: 85–603)", "mg/dL", 0, 700, zero_means_missing=True),
    Feature("FastingBS", "boolean", "fasting blood sugar > 120 mg/dL (1 yes, 0 no)"),
    Feature("RestingECG", "category", "resting ECG: Normal, ST ST-T wave abnormality, LVH left ventricular "
            "hypertrophy (Estes' criteria)", categories=["LVH", "Normal", "ST"]),
    Feature("MaxHR", "integer", "maximum heart rate achieved in the exercise test (training data: 60–202)",
            "beats/min", 40, 250),
    Feature("ExerciseAngina", "category", "exercise-induced angina: Y yes, N no", categories=["N", "Y"]),
    Feature("Oldpeak", "number", "ST depression induced by exercise relative to rest; negative = ST "
            "elevation (training data: −2.6 to 6.2)", "mm", -5, 10),
    Feature("ST_Slope", "category", "slope of the peak exercise ST segment: Up, Flat, Down",
            categories=["Down", "Flat", "Up"]),
)

SPEC = ModelSpec(
    name="heart_failure",
    description="Probability of heart disease from 11 routine clinical and exercise-ECG findings "
                "(Kaggle heart failure data: 918 patients from 5 UCI cohorts).",
    target="HeartDisease",
    features=FEATURES,
    # The MLflow reference model is a logistic-regression pipeline too, so the comparison is like for like;
    # a shallow gradient boosting scored the same within CV noise (AUC 0.928 vs 0.922) and is 25× larger.
    classifier=lambda seed: LogisticRegression(max_iter=1000),
    scale=True,
    label_names={"0": "no heart disease", "1": "heart disease"},
    positive_label="1",
    threshold_rule="fixed",  # classes are near balanced (55 % positive) and the reference reports 0.5
    simple_baseline=SimpleBaseline("age_sex_logistic", "logistic regression on Age and Sex only",
                                   ("Age", "Sex"), lambda seed: LogisticRegression(max_iter=1000)),
    reference={"source": "MLflow run named in issue 4: logistic regression pipeline, 80/20 hold-out split",
               "accuracy": 0.886, "auc": 0.930},
)


def main(argv: list[str] | None = None) -> None:
    """Train and write the model folder."""
    print(train(SPEC, parse_args(DATA, argv)))


if __name__ == "__main__":
    main()
