"""Checks on an MLflow store that `iqabench compare` only reads: it is looked at, never created or changed.

MLflow's client creates its ~66 tables in any sqlite file it opens (another program's database, an empty
file), even only to read it, and takes a plain path or file: URI for its retired file store; so a store to
read is checked here first, without importing MLflow. Writing a run (the report stage) is checked by
:mod:`iqabench.tracking_store`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

from .tracking_store import DEFAULT_URI, TRACKING_VAR, in_memory, is_server, sqlite_file

READ_FORMS = "sqlite:///FILE or http(s)://HOST[:PORT]"
DEFAULT_SOURCE = "the default store"
NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, APFS): a longer one cannot exist
_ERRNO = re.compile(r"\[Errno -?\d+\][^\"')\]]*")  # "[Errno 111] Connection refused" deep in a urllib3 message
_CAUSED_BY = re.compile(r"\(Caused by (\w+)\(")


def read_uri(option: str | None) -> tuple[str, str]:
    """The store to read and where it was named: ``--tracking-uri``, else MLFLOW_TRACKING_URI, else the
    repository's mlflow.db from any folder in it (the report stage logs there), or the cwd's outside one."""
    if option is not None:
        return option.strip(), "--tracking-uri"
    named = os.environ.get(TRACKING_VAR, "").strip()  # set but blank (`export X=`): unset, as the report stage reads it
    if named:
        return named, TRACKING_VAR
    from .params import repo_root

    try:
        root = repo_root()
    except FileNotFoundError:
        return DEFAULT_URI, DEFAULT_SOURCE  # the cwd's, as named in "no MLflow store at /cwd/mlflow.db"
    if root == Path.cwd().resolve():
        return DEFAULT_URI, DEFAULT_SOURCE
    store = root / "mlflow.db"
    # Relative (".."s only) where "?", "#" or "%" in a folder name would read as a URL's query, fragment or escape.
    return f"sqlite:///{os.path.relpath(store) if set('?#%') & set(str(store)) else store}", DEFAULT_SOURCE


def shown(text: str) -> str:
    """``text`` whole, or shortened (io.shown_path) when it holds a name no file system takes."""
    from .io import shown_path

    too_long = any(len(os.fsencode(part)) > NAME_MAX for part in text.split("/"))
    return shown_path(text) if too_long else text


def _named(uri: str, source: str) -> str:
    if source == DEFAULT_SOURCE:
        return f"the default store {shown(uri)}"
    return f"{source} {shown(uri)!r}" if source.startswith("--") else f"{source}={shown(uri)!r}"


def _fix(source: str) -> str:
    """How to name another store, as the user named this one."""
    if source == TRACKING_VAR:
        return f"set {TRACKING_VAR} to {READ_FORMS}, or unset it for the repository's mlflow.db"
    return f"pass --tracking-uri (or set {TRACKING_VAR}) to {READ_FORMS}, e.g. {DEFAULT_URI}"


def short_reason(text: str, limit: int = 300) -> str:
    """The first line of an error, at most ``limit`` characters, keeping its root cause: a refused connection's
    "[Errno 111] Connection refused" comes after ~350 characters of urllib3's retry wording."""
    line = (text.strip().splitlines() or [""])[0]
    if len(line) <= limit:
        return line
    found = _ERRNO.findall(line) or _CAUSED_BY.findall(line)
    if not found:
        return line[:limit] + "…"
    head = line.split(" with exception ")[0] if " with exception " in line else line[:limit // 2] + "…"
    return f"{head[:limit]}: {found[-1].strip()}"


def cannot_read(uri: str, reason: str, database: Path | None = None) -> str:
    """The one line for a store that failed when read: ``reason`` (``"Type: message"``) and what to do."""
    if is_server(uri):
        todo = "start the server (`make ui`) or pass --tracking-uri to a store that answers"
    elif database is not None and "database is locked" in reason:  # busy, not broken: a run is writing
        todo = (f"{shown(str(database))} is busy (another process, e.g. a `dvc repro` logging its run, holds its "
                "lock); try again when it is done")
    elif database is not None:
        todo = (f"{shown(str(database))} is not a readable MLflow store; pass --tracking-uri (or set "
                f"{TRACKING_VAR}) to the store that holds your runs (the one the report stage logs to: {DEFAULT_URI} "
                "in the repository), or restore that file")
    else:
        todo = (f"pass --tracking-uri (or set {TRACKING_VAR}) to an MLflow store: http://HOST:PORT for a server, "
                "sqlite:///PATH.db for a local store")
    return f"cannot read the MLflow store {shown(uri)} ({reason}); {todo}"


def read_problem(uri: str, source: str) -> str | None:
    """Why ``uri`` (named by ``source``) is no store to read, found before MLflow opens it; None when MLflow
    may open it (a server, an MLflow sqlite store, a scheme only MLflow knows)."""
    try:
        parsed = urlparse(uri)
        if is_server(uri):
            parsed.port  # noqa: B018 - "http://h:99999": urllib checks the port only when it is asked for
    except ValueError as err:  # "http://[::1": Invalid IPv6 URL
        return f"{_named(uri, source)} is not a valid URL ({err}); {_fix(source)}"
    if parsed.scheme in ("", "file"):  # MLflow's file store: "is in maintenance mode …" cut mid-sentence
        return (f"{_named(uri, source)} is not a tracking URI iqabench reads (MLflow would take it as a folder of its "
                f"retired file store); {_fix(source)}")
    if is_server(uri) and not parsed.hostname:
        return f"{_named(uri, source)} names no host; {_fix(source)}"
    if in_memory(uri):  # MLflow would make an empty store and answer "no experiment"
        return (f"the MLflow store {shown(uri)} is an in-memory SQLite database, which holds no logged runs: pass "
                f"--tracking-uri (or set {TRACKING_VAR}) to the store that holds them, e.g. {DEFAULT_URI} or "
                "http://HOST:5000")
    database = sqlite_file(uri)
    if database is None and parsed.scheme.startswith("sqlite+") and parsed.path not in ("", "/"):
        database = Path(parsed.path[1:])  # sqlite+pysqlite:///x.db: the same file, opened by a named driver
    return None if database is None else _sqlite_problem(uri, database)


def _sqlite_problem(uri: str, database: Path) -> str | None:
    """Whether the file holds an MLflow store, read with sqlite3 in read-only mode (nothing written)."""
    import sqlite3
    import stat

    where = shown(os.path.abspath(database))  # the folder looked in, also for a relative path
    other = f"pass --tracking-uri (or set {TRACKING_VAR}) to the store that holds your runs"
    try:
        mode = database.stat().st_mode
    except FileNotFoundError:  # MLflow would create an empty store to read from
        from .mlflow_ui import LOG_HINT

        return f"no MLflow store at {where}: {LOG_HINT} in the repository to log one, or {other}"
    except OSError as err:  # a name over 255 bytes, a link loop, a folder that cannot be searched: said as `check` does
        from .io import path_problem

        return cannot_read(uri, f"{where} {path_problem(database) or f'cannot be read ({err.strerror})'}")
    if stat.S_ISDIR(mode):
        return f"{where} is a folder, not an MLflow store: {other} (the file mlflow.db, as sqlite:///PATH/mlflow.db)"
    if not stat.S_ISREG(mode):
        return f"{where} is not a regular file, so not an MLflow store: {other}"
    from .mlflow_ui import sqlite_tables

    try:
        tables = sqlite_tables(database)
    except sqlite3.Error as err:  # not a database, locked, unreadable: named as MLflow's own failure would be
        return cannot_read(uri, f"{type(err).__name__}: {err}", database)
    if "experiments" in tables:
        return None
    if not tables:
        from .mlflow_ui import LOG_HINT

        return (f"{where} is not an MLflow store (no table experiments: it holds no tables); nothing was written: "
                f"{LOG_HINT} in the repository to log runs into it, or {other}")
    return (f"{where} is not an MLflow store (no table experiments; it holds {len(tables)} other table(s), another "
            f"program's database?); nothing was written: {other}")
