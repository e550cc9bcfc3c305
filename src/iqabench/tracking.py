"""MLflow logging: one parent run per pipeline run, nested runs per model and per training set.

Run tree: ``repro <commit>`` (all params, metrics, tables, figures) > one run per
model (its within- and cross-dataset metrics) > one run per training set of that
model (``within.srcc``... on that dataset and ``cross.<test>.srcc`` for each test
set trained on it), tagged ``model`` and ``train_dataset`` so that the MLflow UI
and ``mlflow.search_runs(filter_string="tags.train_dataset = 'koniq10k'")`` can
line up one training set across models and commits.

The default store is ``sqlite:///mlflow.db`` at the repository root with
artifacts in ``mlartifacts/`` (both ignored by git); ``MLFLOW_TRACKING_URI``
points the same code at a server. Logging never costs a result: if the
tracking store fails, the DVC outputs are already written and a warning says
what failed.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

DEFAULT_URI = "sqlite:///mlflow.db"
ARTIFACTS = "mlartifacts"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        # The pipeline's own outputs (reports/, dvc.lock) change during `dvc repro`; they do not make the code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)reports", ":(exclude)dvc.lock"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_hash(path: str | Path) -> str:
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def metric_name(name: str) -> str:
    """MLflow allows letters, digits, _ - . / and spaces: 'a->b' becomes 'a_to_b'."""
    return re.sub(r"[^\w\-./ ]", "_", name.replace("->", "_to_"))


def by_training_set(model_metrics: dict) -> dict[str, dict[str, float]]:
    """A model's ``{"within": {ds: m}, "cross": {"A->B": m}}`` regrouped by the dataset it was trained on.

    ``{A: {"within.srcc": .., "cross.B.srcc": ..}}``: within-dataset numbers train
    and test on splits of A; cross-dataset ones train on all of A.
    """
    out: dict[str, dict[str, float]] = {}
    for dataset, values in model_metrics.get("within", {}).items():
        out.setdefault(dataset, {}).update({f"within.{k}": v for k, v in values.items()})
    for pair, values in model_metrics.get("cross", {}).items():
        train, test = pair.split("->", 1)
        out.setdefault(train, {}).update({f"cross.{test}.{k}": v for k, v in values.items()})
    return out


def log_study(*, experiment: str, run_name: str, params: dict, metrics: dict, per_model: dict[str, dict],
              tables: dict[str, pd.DataFrame], artifacts: list[Path], tags: dict[str, str],
              eval_params: dict | None = None) -> str | None:
    """Log everything; return the parent run id, or None (with a warning) if the store failed.

    ``per_model[model]`` is ``{"within": .., "cross": ..}`` as in metrics.json;
    ``eval_params`` (the `evaluate` stage's params) go on each training-set run.
    """
    # A dead server must cost seconds, not MLflow's default minutes of retries (5 retries, 120 s timeout).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow

    try:
        mlflow.set_tracking_uri(tracking_uri())
        if mlflow.get_experiment_by_name(experiment) is None:
            location = None if tracking_uri().startswith("http") else Path(ARTIFACTS).resolve().as_uri()
            mlflow.create_experiment(experiment, artifact_location=location)
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=run_name, tags=tags) as parent:
            mlflow.log_params({k: str(v)[:500] for k, v in flatten(params).items()})
            mlflow.log_metrics({metric_name(k): float(v) for k, v in flatten(metrics).items()})
            for name, frame in tables.items():
                mlflow.log_table(frame, artifact_file=f"tables/{name}.json")
            for path in artifacts:
                if Path(path).is_file():
                    mlflow.log_artifact(str(path), artifact_path=Path(path).parent.name)
            for model, model_metrics in per_model.items():
                with mlflow.start_run(run_name=model, nested=True, tags={**tags, "model": model}):
                    mlflow.log_metrics({metric_name(k): float(v) for k, v in flatten(model_metrics).items()})
                    for train, train_metrics in by_training_set(model_metrics).items():
                        with mlflow.start_run(run_name=f"{model} | train {train}", nested=True,
                                              tags={**tags, "model": model, "train_dataset": train}):
                            mlflow.log_params({k: str(v)[:500] for k, v in flatten(eval_params or {}).items()})
                            mlflow.log_metrics({metric_name(k): float(v) for k, v in train_metrics.items()})
            return parent.info.run_id
    except Exception as exc:  # noqa: BLE001 - any store failure must not lose the pipeline's outputs
        # MLflow's messages nest the whole urllib3 chain; the first line says what failed.
        reason = (str(exc).strip().splitlines() or [""])[0][:600]
        print(f"WARNING: MLflow logging to {tracking_uri()} failed ({type(exc).__name__}: {reason}). "
              "The DVC outputs in reports/ are complete; start the tracking server or fix MLFLOW_TRACKING_URI, "
              "then rerun `dvc repro -s -f report` (the report stage alone) to log again.", file=sys.stderr)
        return None
