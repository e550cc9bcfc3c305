"""Where a run is logged: the tracking URI, the artifact location, and the checks made before MLflow writes.

MLflow fixes an experiment's artifact location when it creates the experiment, and a store only says
it cannot take a run after half of the run is written, so everything here is checked first, without
importing MLflow. Each check returns ``(what went wrong, what to do)`` or None; tracking.py prints it as
one warning line (logging never costs the pipeline's outputs).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

TRACKING_VAR = "MLFLOW_TRACKING_URI"
ARTIFACT_VAR = "IQABENCH_ARTIFACT_URI"
DEFAULT_URI = "sqlite:///mlflow.db"
ARTIFACTS = "mlartifacts"
# Schemes that name a place to keep files; MLflow also registers runs:/ and models:/, which point into
# another run's artifacts and cannot hold an experiment's.
NOT_A_PLACE = {"runs", "models"}


def _env(name: str) -> str | None:
    """An environment variable, with a set-but-blank value (``export X=`` in a shell profile) read as unset:
    MLflow took "" as a file store in the cwd and refused it with a page about migrating file stores."""
    value = os.environ.get(name, "").strip()
    return value or None


def tracking_uri() -> str:
    return _env(TRACKING_VAR) or DEFAULT_URI


def artifact_root() -> str | None:
    """``IQABENCH_ARTIFACT_URI`` as given, or None when unset or blank."""
    return _env(ARTIFACT_VAR)


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def fail_fast() -> None:
    """A dead server must cost seconds, not MLflow's default minutes of retries (5 retries, 120 s timeout);
    a setting the user exported wins."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a local sqlite store (None for a server, another database or ``:memory:``)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite" and parsed.path not in ("", "/", "/:memory:"):
        return Path(parsed.path[1:])  # sqlite:///rel.db and sqlite:////abs/path.db
    return None


def in_memory(uri: str) -> bool:
    """Whether ``uri`` is an SQLite database that lives in this process only (``sqlite://``,
    ``sqlite:///:memory:``, SQLite's ``file::memory:`` and ``mode=memory`` URIs, with or without a driver)."""
    parsed = urlparse(uri.strip())
    if parsed.scheme.split("+", 1)[0] != "sqlite":
        return False
    database = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    return database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in parsed.query


def memory_problem(uri: str, source: str = TRACKING_VAR) -> tuple[str, str] | None:
    if not in_memory(uri):
        return None
    return (f"{source}={uri!r} is an in-memory SQLite database: every run logged there would vanish when this "
            "process exits, so this run is not logged",
            f"set {source} to a file, e.g. {DEFAULT_URI} (or unset it for that default), or to a tracking "
            "server URL such as http://HOST:5000")


def local_artifact_root(uri: str | None = None) -> Path:
    """``mlartifacts/`` beside the sqlite file of a local store (the cwd for other databases)."""
    database = sqlite_file(uri or tracking_uri())
    return database.parent / ARTIFACTS if database is not None else Path(ARTIFACTS)


def enable_local_artifacts() -> None:
    """Let this process read and write ``mlflow-artifacts:`` URIs without a server (idempotent).

    With an http(s) tracking URI the server's proxy is used, as MLflow does; otherwise the
    path maps into :func:`local_artifact_root`, the folder `mlflow ui` serves by default.
    """
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    def repository(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        import mlflow

        current = tracking_uri or mlflow.get_tracking_uri()
        parsed = urlparse(artifact_uri)
        if is_server(current) or parsed.netloc:
            return MlflowArtifactsRepository(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        local = (local_artifact_root(current) / parsed.path.lstrip("/")).resolve()
        return LocalArtifactRepository(local.as_uri(), tracking_uri=tracking_uri, registry_uri=registry_uri)

    _artifact_repository_registry.register("mlflow-artifacts", repository)


def read_only_store(uri: str) -> str | None:
    """What cannot be written in the local sqlite store ``uri`` (the file, its folder, where SQLite keeps its
    journal, or the artifact folder beside it), or None when it can take a run (or is not a local file)."""
    database = sqlite_file(uri)
    if database is None or not database.parent.is_dir():
        return None  # a server, or a folder MLflow will report missing
    artifacts = local_artifact_root(uri)
    if database.exists() and not os.access(database, os.W_OK):
        return f"{database} cannot be written"
    if not os.access(database.parent, os.W_OK):
        return f"its folder {database.parent.resolve()} cannot be written (SQLite keeps its journal there)"
    if artifact_root() is None and artifacts.is_dir() and not os.access(artifacts, os.W_OK):
        return f"its artifact folder {artifacts} cannot be written"
    return None


def _artifact_schemes() -> list[str]:
    """The schemes MLflow can keep artifacts in: its artifact repository registry, which is what resolves an
    experiment's location when a run logs a file."""
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry

    return sorted(s for s in _artifact_repository_registry._registry if s and s not in NOT_A_PLACE)


def _local_path(value: str) -> str | None:
    """The folder of a plain path or ``file:`` URI (None for any other scheme)."""
    parsed = urlparse(value)
    if parsed.scheme == "":
        return value
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return unquote(parsed.path)  # file:///a%20b is the folder "a b", as MLflow reads it
    return None


def artifact_problem(value: str) -> tuple[str, str] | None:
    """Why ``IQABENCH_ARTIFACT_URI=value`` cannot hold a run's files, or None.

    Checked before the experiment exists: MLflow would create it bound to the location for good and
    only fail (or, for a relative path, quietly fix it under today's cwd) when the first file is logged.
    A local folder is created here, as logging would; a remote one is not reached (that needs its credentials).
    """
    var = f"{ARTIFACT_VAR}={value!r}"
    keep_default = "or unset it for the default (mlartifacts/ beside a local store)"
    parsed = urlparse(value)
    if parsed.scheme not in ("", "file"):
        if parsed.scheme in _artifact_schemes():
            return None
        return (f"{var} has the scheme '{parsed.scheme}', which MLflow cannot keep artifacts in (it knows "
                f"{', '.join(s + ':' for s in _artifact_schemes())}), so this run is not logged",
                f"set {ARTIFACT_VAR} to an absolute folder or a URL such as s3://BUCKET/PATH, {keep_default}")
    path = _local_path(value)
    if path is None:
        return (f"{var} names the host '{parsed.netloc}', but a file: URI is a folder of this machine, so this "
                "run is not logged",
                f"set {ARTIFACT_VAR} to an absolute folder here (file:///PATH or /PATH) or a URL such as "
                f"s3://BUCKET/PATH, {keep_default}")
    if not path.startswith("/"):
        where = Path(path).resolve()
        return (f"{var} is not an absolute path: MLflow would fix it as {where} (under today's working folder) "
                "in the experiment for good, so this run is not logged",
                f"set {ARTIFACT_VAR} to an absolute folder, e.g. {where}, or a URL such as s3://BUCKET/PATH, "
                f"{keep_default}")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        return (f"{var}: {folder} is a file, not a folder, so this run is not logged",
                f"set {ARTIFACT_VAR} to a folder, {keep_default}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        return (f"{var}: the folder {folder} cannot be created ({reason}), so this run is not logged",
                f"create it (or make its parent writable), or set {ARTIFACT_VAR} to a folder you can write, "
                f"{keep_default}")
    if not os.access(folder, os.W_OK):
        return (f"{var}: the folder {folder} cannot be written, so this run is not logged",
                f"make it writable, or set {ARTIFACT_VAR} to a folder you can write, {keep_default}")
    return None


def requested_location(experiment: str, uri: str) -> str | None:
    """Where a new experiment's artifacts go: under ``IQABENCH_ARTIFACT_URI`` when set, else the portable
    ``mlflow-artifacts:/NAME`` for a local store; None lets a server choose (``mlflow-artifacts:/<id>``
    when it proxies artifacts)."""
    root = artifact_root()
    if root:
        return f"{root.rstrip('/')}/{experiment}"
    if not is_server(uri):
        return "mlflow-artifacts:/" + re.sub(r"[^\w.-]", "_", experiment)
    return None


def same_location(a: str, b: str) -> bool:
    """``/x/a``, ``file:///x/a`` and ``/x/a/`` are one folder; URLs compare as text."""
    local_a, local_b = _local_path(a), _local_path(b)
    if local_a is not None and local_b is not None:
        return Path(local_a).resolve() == Path(local_b).resolve()
    return a.rstrip("/") == b.rstrip("/")


def refusal(uri: str) -> tuple[str, str] | None:
    """Why the store ``uri`` (or IQABENCH_ARTIFACT_URI) cannot take a run, found before MLflow writes any of it:
    MLflow would fail after creating half a run (a read-only store: ~90 lines of SQLAlchemy traceback), fix a bad
    artifact location in a new experiment for good, or log to a database that vanishes with the process."""
    from .mlflow_ui import not_sqlite

    memory = memory_problem(uri)
    if memory:
        return memory
    blocked = read_only_store(uri)
    if blocked:
        return (f"{sqlite_file(uri).name} is read-only: {blocked}, so this run is not logged",
                "make it writable (or set MLFLOW_TRACKING_URI to a writable store)")
    foreign = not_sqlite(uri)
    if foreign:
        return (f"{foreign}, so this run is not logged", f"move it aside (`mv {sqlite_file(uri)} "
                f"{sqlite_file(uri)}.bak`) to start a new store there, or set MLFLOW_TRACKING_URI to your store")
    root = artifact_root()
    return artifact_problem(root) if root else None
