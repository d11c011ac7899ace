"""The MLflow reference: the heart-failure sklearn pipeline saved with mlflow and served by `mlflow models serve`.

`python -m scripts.bench.mlflow_baseline <heart.csv> <folder>` fits and saves the model in a child process
and prints a JSON summary, so the benchmark process never maps sklearn/mlflow pages (that would keep them
cached and shared, flattering mlflow's cold start and PSS).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from scripts.bench.cgroups import Sandbox
from scripts.bench.measure import PROC
from scripts.bench.server import Server

NUMERIC = ["Age", "RestingBP", "Cholesterol", "FastingBS", "MaxHR", "Oldpeak"]
CATEGORICAL = ["Sex", "ChestPainType", "RestingECG", "ExerciseAngina", "ST_Slope"]
TARGET = "HeartDisease"
SEED = 42
STOP_WAIT = 20.0
# mlflow 3 sends usage telemetry unless told not to; the benchmark stays on the loopback interface.
OFFLINE = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def save_reference_model(csv_path: Path, folder: Path) -> dict:
    """Fit OneHotEncoder + StandardScaler + LogisticRegression on an 80/20 split and mlflow.sklearn.save_model it."""
    os.environ.update(OFFLINE)
    started = time.monotonic()
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    # object columns: mlflow 3.17's infer_signature does not understand pandas 3's string dtype.
    frame = pd.read_csv(csv_path).astype({c: object for c in CATEGORICAL})
    features, target = frame[NUMERIC + CATEGORICAL], frame[TARGET]
    x_train, x_test, y_train, y_test = train_test_split(features, target, test_size=0.2, stratify=target,
                                                        random_state=SEED)
    pipeline = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), NUMERIC),
                                    ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])),
        ("clf", LogisticRegression(max_iter=1000)),
    ]).fit(x_train, y_train)
    mlflow.sklearn.save_model(pipeline, str(folder), signature=infer_signature(x_train, pipeline.predict(x_train)))
    flavor = (folder / "MLmodel").read_text()
    return {"path": str(folder), "mlflow": mlflow.__version__, "train_rows": len(x_train), "test_rows": len(x_test),
            "test_accuracy": round(float(pipeline.score(x_test, y_test)), 4),
            "serialization_format": "skops" if "serialization_format: skops" in flavor else "cloudpickle",
            "seconds": round(time.monotonic() - started, 1)}


def save_in_child(csv_path: Path, folder: Path, repo: Path, timeout: float = 300.0) -> dict:
    """Run save_reference_model in a child Python process and return its summary."""
    done = subprocess.run([sys.executable, "-m", "scripts.bench.mlflow_baseline", str(csv_path), str(folder)],
                          cwd=repo, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **OFFLINE})
    if done.returncode != 0:
        raise RuntimeError(f"saving the MLflow model failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def serve_argv(model_dir: Path, port: int) -> list[str]:
    """`mlflow models serve` on loopback with the local environment and one uvicorn worker."""
    mlflow = Path(sys.executable).parent / "mlflow"
    return [str(mlflow), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


def serve_env() -> dict[str, str]:
    """Variables added for the server: offline, and the venv first on PATH (it execs `uvicorn` by name)."""
    venv_bin = str(Path(sys.executable).parent)
    return {**OFFLINE, "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")])}


def start(model_dir: Path, port: int, sandbox: Sandbox, log_path: Path) -> Server:
    """Spawn `mlflow models serve` as the leader of its own process group, inside the accounting sandbox."""
    argv = serve_argv(model_dir, port)
    env = serve_env()
    with log_path.open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=sandbox.join if sandbox.active else None)
    command = " ".join([f"{k}={v}" for k, v in OFFLINE.items()] + ["PATH=<venv>/bin:$PATH", *argv])
    return Server(proc, port, started, log_path, command)


def parse_pgid_state(stat_text: str) -> tuple[int, str]:
    """(process group id, state letter) from /proc/<pid>/stat text."""
    fields = stat_text[stat_text.rindex(")") + 2:].split()
    return int(fields[2]), fields[0]


def group_members(pgid: int, proc: Path = PROC) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            group, state = parse_pgid_state((entry / "stat").read_text())
        except (OSError, ValueError):
            continue
        if group == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def stop(server: Server, sandbox: Sandbox) -> dict:
    """SIGTERM the whole process group (wrapper + uvicorn), SIGKILL what is left after STOP_WAIT, reap."""
    group = server.proc.pid  # start_new_session: the wrapper leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while group_members(group) and time.monotonic() < deadline:
        server.proc.poll()
        time.sleep(0.1)
    killed = group_members(group)
    if killed:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.proc.wait(timeout=STOP_WAIT)
    for _ in range(100):  # a killed process leaves the cgroup a moment later
        if not sandbox.pids() and not group_members(group):
            break
        time.sleep(0.05)
    return {"exit_code": server.proc.returncode, "sigkilled": killed, "left_running": group_members(group)}


if __name__ == "__main__":
    print(json.dumps(save_reference_model(Path(sys.argv[1]), Path(sys.argv[2]))))
