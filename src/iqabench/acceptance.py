"""The accepted baseline of the CI gate: reports/baseline.json, and the record of every change to it.

The file holds the metrics the gate compares a fresh run with, and one record per
acceptance: the reason, the commit it was accepted at, the date and the metrics
that moved beyond their tolerance (old and new value)::

    {"metrics": {"within": {...}, "cross": {...}},
     "accepted": [{"reason": "initial baseline", "commit": "b528b92...", "date": "2026-11-30T02:20:00Z",
                   "moved": [{"metric": "within.contrique.synthetic-single.srcc", "old": 0.44, "new": 0.38,
                              "status": "REGRESSED"}],
                   "data": {"synthetic-single": "<sha256 of its images, scores, contents>", ...}}]}

It is its own file, not the committed reports/metrics.json, because every change
commits its own regenerated metrics.json: a gate against HEAD would compare a
regression with itself. Only ``iqabench check --accept --reason "..."`` rewrites
it, so every accepted drop shows up in ``git diff`` with its reason.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import subprocess
from pathlib import Path
from typing import Iterable, Optional, Union

from . import io

BASELINE_FILE = "reports/baseline.json"


class AcceptanceError(ValueError):
    """A baseline file that cannot be read or written as asked."""


def loads(text: str):
    """:func:`iqabench.io.loads_json` (a repeated key or a too-deep nesting is a JSONShapeError) for the gate's
    files: metrics, baselines, `dvc metrics diff` output."""
    return io.loads_json(text, nesting="a metrics file nests 4 levels")


def is_baseline_file(payload: dict) -> bool:
    """Whether a parsed JSON object has this module's layout (metrics + accepted records)."""
    return isinstance(payload, dict) and isinstance(payload.get("metrics"), dict) and "accepted" in payload


def read(path: Union[str, Path]) -> dict:
    """The parsed baseline file; a clear error for a missing or malformed one."""
    path = Path(path)
    if not path.is_file():
        raise AcceptanceError(f"{path} does not exist; accept the current reports/metrics.json as the baseline "
                              f"with `iqabench check --accept --reason \"initial baseline\"` and commit it")
    try:
        payload = loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise AcceptanceError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise AcceptanceError(f"{path} is not valid JSON ({exc}); restore it from git") from None
    except io.JSONShapeError as exc:
        raise AcceptanceError(f"{path} is not a baseline file: {exc}" if exc.deep else f"{path}: {exc}") from None
    if not is_baseline_file(payload) or not isinstance(payload["accepted"], list):
        raise AcceptanceError(f"{path} lacks 'metrics' (a mapping) and 'accepted' (a list of records); it is not "
                              f"a baseline written by `iqabench check --accept`")
    for number, entry in enumerate(payload["accepted"], 1):
        if not (isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in ("reason", "date"))):
            raise AcceptanceError(f"{path}: accepted record {number} is {entry!r}, not a record with a 'reason' "
                                  "and a 'date' as `iqabench check --accept` writes")
    return payload


def git_head(repo: Union[str, Path]) -> str:
    """HEAD's commit, with "-dirty" when tracked files other than the pipeline's outputs are modified."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        # reports/ and dvc.lock are rewritten by every `dvc repro`; they do not make the code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)reports", ":(exclude)dvc.lock"], cwd=repo, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def data_digests(root: Union[str, Path], metrics: dict) -> dict[str, str]:
    """Per dataset of ``metrics``' within section (model -> dataset -> statistics), a SHA-256 of what its rows were scored on: each manifest
    row's image file name, score and content id (names, not paths: a registered copy elsewhere is the same
    data). Datasets whose manifest is not on this machine are left out."""
    import pandas as pd

    from .datasets.status import PREPARED

    within = metrics.get("within") if isinstance(metrics, dict) else None
    names = {name for per_model in (within or {}).values() if isinstance(per_model, dict) for name in per_model}
    digests = {}
    for name in sorted(names):
        path = Path(root) / PREPARED / str(name) / "manifest.csv"
        try:
            frame = pd.read_csv(path, usecols=["image", "score", "content_id"], dtype=str)
        except (OSError, ValueError):
            continue
        rows = zip(frame["image"].map(lambda p: Path(p).name), frame["score"], frame["content_id"])
        digests[str(name)] = hashlib.sha256("\n".join(",".join(row) for row in rows).encode()).hexdigest()
    return digests


def changed_data(accepted: dict, current: dict[str, str]) -> list[tuple[str, str, str]]:
    """(dataset, digest then, digest now) for each dataset whose data differ from the latest accepted record's."""
    records = (accepted.get("accepted") if isinstance(accepted, dict) else None) or []
    then = records[-1].get("data") if records and isinstance(records[-1], dict) else None
    if not isinstance(then, dict):
        return []  # accepted before digests were recorded: nothing to compare
    return [(name, str(then[name]), digest) for name, digest in sorted(current.items())
            if name in then and then[name] != digest]


def check_storable(metrics: dict, where: str = "the metrics") -> None:
    """Refuse (AcceptanceError, naming ``where`` and the metric) what a baseline must not hold: NaN or an infinity
    anywhere, which json writes as a bare ``NaN`` that strict readers (jq, JavaScript) refuse, and a statistic that
    is no number (``"rmse": "bad"``). The gate reads SRCC and PLCC only, and refuses those itself
    (:func:`iqabench.gate_inputs.correlations`); this covers the ungated rest (KRCC, RMSE), which --accept stores.
    """
    from .gate_inputs import SECTIONS  # that module imports this one

    def walk(value, key: tuple):
        if isinstance(value, (dict, list)):
            for name, inner in (value.items() if isinstance(value, dict) else enumerate(value)):
                walk(inner, (*key, str(name)))
            return
        problem = None
        if isinstance(value, float) and not math.isfinite(value):
            problem = f"is {'NaN' if math.isnan(value) else value}, which strict JSON cannot hold"
        elif len(key) == 4 and key[0] in SECTIONS and (value is None or isinstance(value, bool)
                                                        or not isinstance(value, (int, float))):
            problem = f"is {io.shown_value(value)}, not a number"  # section.model.dataset.statistic
        if problem:
            raise AcceptanceError(f"{where}: {'.'.join(key)} {problem}; regenerate it with `dvc repro` "
                                  "(nothing was accepted)")

    walk(metrics, ())


def record(reason: str, commit: str, moved: Iterable[dict], date: Optional[str] = None,
           data: Optional[dict] = None) -> dict:
    reason = (reason or "").strip()
    if not reason:
        raise AcceptanceError("--accept needs a non-empty --reason \"...\": it is what a reviewer reads in the "
                              "diff of the baseline file")
    date = date or dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    entry = {"reason": reason, "commit": commit, "date": date, "moved": list(moved)}
    return entry | ({"data": dict(data)} if data else {})


def accept(path: Union[str, Path], metrics: dict, reason: str, commit: str, moved: Iterable[dict],
           date: Optional[str] = None, data: Optional[dict] = None, where: str = "the metrics") -> dict:
    """Make ``metrics`` the baseline at ``path``, appending one record; returns the new file's content.

    ``data``: :func:`data_digests` of the datasets the metrics were measured on, so that a later check can say
    when a dataset changed under the baseline. The reason is checked before anything is written; an existing file must be readable
    (its history is kept, never silently dropped). The write is atomic: a file that cannot be
    written (a read-only reports/, a full disk) is left as it was. ``metrics`` must be strict JSON
    (:func:`check_storable`; ``where`` names them in the error).
    """
    check_storable(metrics, where)
    entry = record(reason, commit, moved, date, data)
    history = read(path)["accepted"] if Path(path).exists() else []
    payload = {"metrics": metrics, "accepted": [*history, entry]}
    try:
        io.write_json(path, payload)
    except OSError as exc:
        raise AcceptanceError(f"cannot write {path} ({exc.strerror or exc}): make {Path(path).parent}/ writable "
                              "and accept again") from None
    return payload
