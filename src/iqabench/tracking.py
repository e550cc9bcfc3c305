"""MLflow logging: one parent run per pipeline run, nested runs per model and per training set.

Run tree: the parent (named by provenance.run_name: commit, dirty flag, DVC
experiment, changed params) holds the leaderboard as its description, one SRCC
per model and dataset (``srcc/<dataset>/<model>``: the run table's columns, in
a saved view ``leaderboard`` that the printed link opens: mlflow_ui.py),
``time.<stage>`` for the stages that ran, the datasets as MLflow inputs and the
tables and figures > one run per model (every statistic,
within and cross, and the pretrained encoder as an MLflow model registered as
``iqabench-<model>-encoder``) > one run per training set of that model, tagged
``model`` and ``train_dataset``.

Model ids are used as they are (``fr:gmsd``): MLflow allows colons in metric
names; only ``A->B`` becomes ``A_to_B``.

The default store is ``sqlite:///mlflow.db`` with artifacts in ``mlartifacts/``
beside it. New experiments get the portable location ``mlflow-artifacts:/NAME``
(what ``mlflow ui``/``mlflow server`` resolve against ``--artifacts-destination``,
``./mlartifacts`` by default), not this machine's absolute path; without a
server, this process maps that scheme to the folder beside the sqlite file.
``IQABENCH_ARTIFACT_URI`` (e.g. ``s3://bucket/iqabench``) overrides it.
``MLFLOW_TRACKING_URI`` points the same code at a server (either, set but blank,
counts as unset). Logging never costs a result: if the store fails, the DVC
outputs are already written and a warning says what failed; a read-only or
in-memory store and a bad artifact location are found before any of the run is
written (tracking_store.py). A run that fails midway is ended FAILED, and only
FINISHED parents reach the leaderboard and `iqabench compare`. Results already logged
(the same ``dvc_lock`` digest and commit) are not logged twice.
"""
from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from .mlflow_ui import FINISHED
from .provenance import flatten
from .tracking_store import (artifact_root, enable_local_artifacts, fail_fast, is_server,
                             refusal, requested_location, same_location, tracking_uri)
# Moved to tracking_store.py; the package and the tests still name them as tracking.X.
from .tracking_store import ARTIFACTS, DEFAULT_URI, local_artifact_root  # noqa: F401

EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens on the run table
SHARED_BYTES = 512 * 1024  # a logged file this large, identical to an earlier run's, is referenced, not copied
HEADLINE_PREFIX = "srcc/"  # the parent's columns: srcc/<dataset>/<model>


def metric_name(name: str) -> str:
    """MLflow allows letters, digits, _ - . / : and spaces: 'a->b' becomes 'a_to_b'."""
    return re.sub(r"[^\w\-./ :]", "_", name.replace("->", "_to_"))


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


class _StoreProblem(Exception):
    """A store that cannot take the run until the user acts; args: what went wrong, and the fix."""


def _experiment(name: str, client) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        # MLflow keeps a deleted experiment's name (it is in the trash) and refuses both to use it and to make a
        # new one of that name; its own message names no command.
        from .mlflow_ui import restore_command

        uri, found = tracking_uri(), experiment.experiment_id
        forever = "" if is_server(uri) else f", delete it for good with `mlflow gc --backend-store-uri {uri} " \
                                            f"--experiment-ids {found}`"
        raise _StoreProblem(f"the experiment '{name}' (id {found}) in {uri} is deleted, and MLflow will not reuse "
                            "its name, so this run is not logged",
                            f"restore it with {restore_command(uri, found)}{forever}, or set report.experiment in "
                            "params.yaml to another name")
    location = requested_location(name, tracking_uri())
    if experiment is None:
        # The location is final from here on: tracking_store.refusal checked it before anything was written.
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    held, root = experiment.artifact_location, artifact_root()
    if root and not same_location(held, location):
        # MLflow would log to the experiment's own location without a word: the files would not be where asked.
        raise _StoreProblem(f"the experiment '{name}' (id {experiment.experiment_id}) keeps its artifacts in "
                            f"{held}, not in {location} as IQABENCH_ARTIFACT_URI={root!r} asks (MLflow fixes an "
                            "experiment's artifact location when it creates it), so this run is not logged",
                            f"set report.experiment in params.yaml to a new name (a new experiment takes {location}), "
                            f"or unset IQABENCH_ARTIFACT_URI to keep logging to {held}")
    return experiment.experiment_id


def headline(within: dict, datasets: list[str]) -> dict[str, float]:
    """The parent run's SRCC columns from metrics.json's within section (model -> dataset -> statistics): every
    dataset's winner first (in ``datasets`` order), then every dataset's second, and so on, so the few columns a
    screen shows of the saved view already say who wins where."""
    srcc = {(model, ds): float(v["srcc"]) for model, by_ds in within.items() for ds, v in by_ds.items() if "srcc" in v}
    place = {key: sum(srcc[other] > srcc[key] for other in srcc if other[1] == key[1]) for key in srcc}
    rank = {ds: i for i, ds in enumerate(datasets)}
    order = sorted(srcc, key=lambda key: (place[key], rank.get(key[1], len(rank)), key[1], key[0]))
    return {headline_key(model, ds): srcc[model, ds] for model, ds in order}


def headline_key(model: str, dataset: str) -> str:
    """The parent run's SRCC of ``model`` on ``dataset``: short, so the run table's column shows it whole."""
    return f"{HEADLINE_PREFIX}{dataset}/{model}"


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    name: str

    @property
    def url(self) -> str:
        from .mlflow_ui import run_url

        return run_url(self.experiment_id, self.run_id)

    @property
    def table_url(self) -> str:
        from .mlflow_ui import view_url

        return view_url(self.experiment_id)


@dataclass(frozen=True)
class DatasetInput:
    """One dataset of the study as MLflow sees it: its manifest, the manifest's hash and where it lives."""
    name: str
    manifest: pd.DataFrame
    digest: str
    source: str

    def as_mlflow(self):
        import mlflow

        targets = "score" if "score" in self.manifest.columns else None
        with warnings.catch_warnings():
            # A relative path matches MLflow's local-file source twice over; it says so and picks that one.
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            return mlflow.data.from_pandas(self.manifest, source=self.source, name=self.name, digest=self.digest,
                                           targets=targets)


def parent_names(experiment_id: str, client) -> list[str]:
    """The names of the experiment's top-level runs (the pipeline runs, not the nested ones)."""
    return [run.info.run_name for run in client.search_runs([experiment_id], filter_string="", max_results=5000)
            if "mlflow.parentRunId" not in run.data.tags]


def already_logged(experiment_id: str, tags: Mapping[str, str], client) -> LoggedRun | None:
    """The finished parent run that holds these results, or None. The ``dvc_lock`` digest fixes every output
    and the commit the code, so a second `dvc repro -s -f report` would only add a copy to the leaderboard."""
    lock, commit = str(tags.get("dvc_lock", "")), str(tags.get("git_commit", ""))
    if not (re.fullmatch(r"[0-9a-f]{8,64}", lock) and re.fullmatch(r"[0-9a-f]{7,40}", commit)):
        return None  # no digest to match on (or not one that can go in a filter unquoted)
    found = client.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                               filter_string=f"tags.dvc_lock = '{lock}' and tags.git_commit = '{commit}' and "
                                             f"tags.mlflow.parentRunId IS NULL and {FINISHED}")
    return LoggedRun(found[0].info.run_id, experiment_id, found[0].info.run_name) if found else None


def unique_name(name: str, taken: Sequence[str]) -> str:
    """``name``, or ``name #2``, ``#3``... if a top-level run of the experiment (``taken``) already has it."""
    taken = set(taken)
    if name not in taken:
        return name
    n = 2
    while f"{name} #{n}" in taken:
        n += 1
    return f"{name} #{n}"


def _params(tree: dict) -> dict[str, str]:
    return {k: str(v)[:500] for k, v in flatten(tree).items()}


def _metrics(tree: dict) -> dict[str, float]:
    return {metric_name(k): float(v) for k, v in flatten(tree).items() if v is not None and not pd.isna(v)}


def log_study(*, experiment: str, run_name: str, params: dict, metrics: dict, per_model: dict[str, dict],
              tables: Mapping[str, pd.DataFrame], artifacts: Mapping[str, Sequence[Path]], tags: dict[str, str],
              eval_params: dict | None = None, description: str = "",
              datasets: Sequence[DatasetInput] = (), encoders: Mapping[str, Path] | None = None,
              start_time_ms: int | None = None) -> LoggedRun | None:
    """Log everything; return the parent run, or None (with a warning) if the store failed.

    ``metrics`` go on the parent as they are (the run table's columns); ``per_model[model]`` is
    ``{"within": .., "cross": ..}`` as in metrics.json, on the model runs. ``tables`` maps artifact
    paths (``srcc_table.json``, ``tables/within.json``) to frames shown as tables in the UI;
    ``artifacts`` maps an artifact folder ("" = root) to files. ``eval_params`` (the `evaluate`
    stage's params) go on each training-set run. ``encoders`` maps a model to its weights file,
    logged as an MLflow model. ``start_time_ms``: when the pipeline run began, so the run's
    duration is the pipeline's, not the report stage's.
    """
    fail_fast()
    uri = tracking_uri()
    refused = refusal(uri)
    if refused:
        _not_logged(*refused)
        return None
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags

    from .mlflow_ui import save_view

    # This logger prints each database error's traceback, then MLflow raises it: the warning below says it in a line.
    store_log = logging.getLogger("mlflow.store.db.utils")
    level = store_log.level
    store_log.setLevel(logging.CRITICAL)
    try:
        mlflow.set_tracking_uri(uri)
        enable_local_artifacts()
        client = mlflow.MlflowClient()
        experiment_id = _experiment(experiment, client)
        mlflow.set_experiment(experiment_id=experiment_id)
        logged = already_logged(experiment_id, tags, client)
        if logged is not None:
            print(f"MLflow: these results (dvc.lock {tags['dvc_lock']}, commit {tags['git_commit']}) are already "
                  f"logged as run '{logged.name}'; not logged twice. Delete that run in the UI to log them again.")
            return logged
        taken = parent_names(experiment_id, client)
        name = unique_name(run_name, taken)
        inputs = {d.name: d.as_mlflow() for d in datasets}  # before the run exists: a failure here leaves none
        # MLflow's context tags (user, source script, git), which mlflow.start_run adds and create_run does not.
        created = client.create_run(experiment_id, start_time=start_time_ms, run_name=name,
                                    tags=resolve_tags({**tags, "mlflow.note.content": description}))
        with _parent_run(client, created.info.run_id) as parent:
            mlflow.log_params(_params(params))
            mlflow.log_metrics(_metrics(metrics))
            for dataset in inputs.values():
                mlflow.log_input(dataset, context="evaluation")
            for path, frame in tables.items():
                mlflow.log_table(frame, artifact_file=path)
            for folder, files in artifacts.items():
                for path in files:
                    if Path(path).is_file():
                        _log_file(Path(path), folder, experiment_id, client)
            for model, model_metrics in per_model.items():
                with mlflow.start_run(run_name=model, nested=True, tags={**tags, "model": model}):
                    mlflow.log_metrics(_metrics(model_metrics))
                    uri = log_encoder(model, Path(encoders[model]), client) if model in (encoders or {}) else None
                    if uri:  # a file an earlier run registered is not logged again: the page still names it
                        mlflow.set_tag("mlflow.note.content", (
                            f"Row `{model}` of run '{name}'. Its encoder is `{uri}` (Models, the registry): "
                            f"`mlflow.pytorch.load_model(\"{uri}\")`."))
                    for train, train_metrics in by_training_set(model_metrics).items():
                        with mlflow.start_run(run_name=f"{model} | train {train}", nested=True,
                                              tags={**tags, "model": model, "train_dataset": train}):
                            mlflow.log_params(_params(eval_params or {}))
                            mlflow.log_metrics(_metrics(train_metrics))
                            for ds, dataset in inputs.items():
                                mlflow.log_input(dataset, context="train" if ds == train else "test")
            save_view(experiment_id, [k for k in metrics if k.startswith(HEADLINE_PREFIX)], client, [*taken, name])
            return LoggedRun(parent.info.run_id, experiment_id, name)
    except _StoreProblem as problem:
        _not_logged(*problem.args)
        return None
    except Exception as exc:  # noqa: BLE001 - any store failure must not lose the pipeline's outputs
        # MLflow's messages nest the whole urllib3 chain, SQLAlchemy's open with a note on autoflush: the first
        # line of substance says what failed.
        lines = [line for line in str(exc).strip().splitlines()
                 if line.strip() and not line.startswith("(raised as a result of")]
        _not_logged(f"MLflow logging to {uri} failed ({type(exc).__name__}: {(lines or [''])[0][:600]})",
                    "start the tracking server or fix MLFLOW_TRACKING_URI" if is_server(uri)
                    else f"check the store {uri} (or set MLFLOW_TRACKING_URI to a working one)")
        return None
    finally:
        store_log.setLevel(level)


@contextlib.contextmanager
def _parent_run(client, run_id: str):
    """The created parent as the active run, ended FAILED if anything fails, start_run itself included:
    a run left RUNNING or half-logged must not read as a result (the leaderboard and `compare` list
    FINISHED parents only)."""
    import mlflow

    try:
        with mlflow.start_run(run_id=run_id) as run:  # its exit ends the run FAILED on an exception
            yield run
    except BaseException:
        with contextlib.suppress(Exception):  # the store may be what failed: the original error says more
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, "FAILED")
        raise


def _not_logged(what: str, fix: str) -> None:
    print(f"WARNING: {what}. The DVC outputs in reports/ are complete; {fix}, then rerun `dvc repro -s -f report` "
          "(the report stage alone) to log again.", file=sys.stderr)


def _log_file(path: Path, folder: str, experiment_id: str, client) -> None:
    """Log ``path``; a file of ``SHARED_BYTES`` or more that an earlier run of the experiment holds byte for byte
    (the distortion gallery changes only with `synthesize`) is named by a tag ``artifact_in.<path>`` instead."""
    import mlflow

    from . import io

    key = f"{folder}/{path.name}" if folder else path.name
    digest = None
    if path.stat().st_size >= SHARED_BYTES:
        digest = io.sha256_file(path)
        earlier = client.search_runs([experiment_id], f"tags.`artifact_sha256.{key}` = '{digest}'", max_results=1)
        if earlier:
            mlflow.set_tag(f"artifact_in.{key}", f"run {earlier[0].info.run_id} (same sha256 {digest[:16]})")
            return
    mlflow.log_artifact(str(path), artifact_path=folder or None)
    if digest:  # only once the file is stored: later runs point at the run that holds it
        mlflow.set_tag(f"artifact_sha256.{key}", digest)


def encoder_model_name(model: str) -> str:
    """The registry name of a pretrained row's encoder: stable across runs, one version per distinct file."""
    return f"iqabench-{re.sub(r'[^A-Za-z0-9_-]', '-', model)}-encoder"


def log_encoder(model: str, path: Path, client) -> str | None:
    """Log the encoder at ``path`` as an MLflow model in the active run and register it; return its URI.

    The model is the TorchScript trace of the encoder (images B x 3 x H x W in [0, 1], any size ->
    pooled features B x D), so it loads with plain torch. A file already registered (same sha256)
    is not logged again: the run is tagged with the existing version.
    """
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from . import io
    from .models import encoders

    if not path.is_file():
        return None
    name, digest = encoder_model_name(model), io.sha256_file(path)
    for version in client.search_model_versions(f"name = '{name}'"):
        if version.tags.get("sha256") == digest:
            uri = f"models:/{name}/{version.version}"
            mlflow.set_tag("encoder_model", uri)
            return uri
    encoder = encoders.load(path)
    example = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, whose graphs fix the image size; a trace of
        # convolutions and a global mean takes any size, and loads without this package's code.
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit\.trace")
        traced = torch.jit.trace(encoder, example)
        width = traced(example).shape[1]
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1), "images")]),
                               outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, width), "features")]))
    # MLflow warns about pickles whatever the module; a ScriptModule is written by torch.jit.save.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    info = mlflow.pytorch.log_model(
        traced, name=f"{model}-encoder", signature=signature, registered_model_name=name,
        serialization_format="pickle",  # a TorchScript module: torch.jit.save, no pickled Python classes
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],  # skips MLflow's slow inference
        metadata={"iqabench_row": model, "source_file": str(path), "sha256": digest, **encoder.config()})
    version = info.registered_model_version
    client.set_model_version_tag(name, version, "sha256", digest)
    # The registry page shows these first; without them a version says nothing of what it maps.
    config = ", ".join(f"{k} {v}" for k, v in encoder.config().items())
    client.update_model_version(name, version, description=(
        f"`{path.name}` (sha256 {digest[:16]}, {config}) as a TorchScript trace: images B x 3 x H x W in [0, 1], "
        f"any size -> pooled features B x {width}. `mlflow.pytorch.load_model(\"models:/{name}/{version}\")`."))
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=(
            f"The pretrained encoder of the iqabench row `{model}`: one version per distinct weights file "
            "(tag `sha256`); each run that used it is tagged `encoder_model`."))
    uri = f"models:/{name}/{version}"
    mlflow.set_tag("encoder_model", uri)
    return uri
