"""What the gate reads: metrics files, git revisions, `dvc metrics diff` output, test-set sizes, seed spread.

:mod:`iqabench.gate` judges; this module only loads, and names the file and the fix
when an input is missing or malformed.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from . import acceptance

METRICS_FILE = "reports/metrics.json"
SECTIONS = ("within", "cross")
STATISTICS = ("srcc", "plcc")  # the correlations the gate reads


class GateError(ValueError):
    """Input the gate cannot judge: a missing or malformed baseline, metrics file or tolerance."""


def correlations(metrics: dict, statistics=STATISTICS,
                 where: str = "metrics") -> dict[tuple[str, str, str, str], float]:
    """{(section, model, dataset, statistic): value} for the correlations in a nested metrics dict.

    A value is a number or null/NaN (undefined); anything else, or a level that is not a mapping, is a
    GateError naming ``where`` and the key: a hand-edited or damaged file must not pass by comparing nothing.
    """
    def mapping(value, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise GateError(f"{where}: {key} holds {value!r}, expected a mapping as in reports/metrics.json "
                            "(section -> model -> dataset -> statistic -> value)")
        return value

    found = {}
    for section in SECTIONS:
        for model, per_dataset in mapping(metrics.get(section), section).items():
            for dataset, values in mapping(per_dataset, f"{section}.{model}").items():
                values = mapping(values, f"{section}.{model}.{dataset}")
                for statistic in (s for s in statistics if s in values):
                    value = values[statistic]
                    if isinstance(value, bool) or not (value is None or isinstance(value, (int, float))):
                        raise GateError(f"{where}: {section}.{model}.{dataset}.{statistic} is {value!r}, not a "
                                        "number; regenerate the file (`dvc repro`, or accept a new baseline)")
                    found[(section, model, dataset, statistic)] = value
    return found


def load_metrics(path: Union[str, Path]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise GateError(f"{path} does not exist; run `dvc repro` (or `make repro`) to produce it")
    return parse_metrics(path.read_text(encoding="utf-8"), where=str(path))


def parse_metrics(text: str, where: str) -> dict:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GateError(f"{where} is not valid JSON ({exc}); expected reports/metrics.json's layout") from None
    if not isinstance(payload, dict):
        raise GateError(f"{where} holds a {type(payload).__name__}, expected a JSON object")
    return payload


def baseline_from_git(rev: str, path: str = METRICS_FILE, repo: Union[str, Path, None] = None) -> dict:
    """The metrics file as committed at ``rev``; ``path`` is relative to the repository root."""
    try:
        shown = subprocess.run(["git", "show", f"{rev}:{Path(path).as_posix()}"], cwd=repo,
                               capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise GateError(f"cannot run git to read the baseline {rev}:{path} ({exc}); pass --baseline FILE") from None
    if shown.returncode != 0:
        raise GateError(f"`git show {rev}:{path}` failed: {shown.stderr.strip() or 'no output'}. Commit a "
                        f"baseline {path} (after `dvc repro`), or pass --baseline with another revision or a file")
    return parse_metrics(shown.stdout, where=f"{rev}:{path}")


def is_dvc_diff(payload: dict) -> bool:
    """Whether ``payload`` is `dvc metrics diff --json` output: {file: {flat.key: {old, new, diff}}}."""
    return bool(payload) and all(
        isinstance(entries, dict) and entries and all(isinstance(v, dict) and ("old" in v or "new" in v)
                                                      for v in entries.values())
        for entries in payload.values())


def split_dvc_diff(payload: dict, path: str = METRICS_FILE) -> tuple[dict, dict]:
    """(baseline, current) nested metrics from `dvc metrics diff --json [--all] REV` output.

    Without ``--all`` dvc lists only changed metrics, so unchanged ones are simply
    not judged; a removed metric has ``new: null`` and comes out MISSING.
    """
    entries = payload.get(path)
    if entries is None:
        raise GateError(f"the dvc metrics diff has no entry for {path} (it has {sorted(payload)}); "
                        f"run `dvc metrics diff --json --all REV` with {path} declared as a metric")
    baseline, current = {}, {}
    for flat_key, change in entries.items():
        parts = flat_key.split(".")
        if len(parts) < 4 or parts[0] not in SECTIONS:
            continue
        section, model, dataset, statistic = parts[0], parts[1], ".".join(parts[2:-1]), parts[-1]
        for tree, side in ((baseline, "old"), (current, "new")):
            if change.get(side) is not None:
                tree.setdefault(section, {}).setdefault(model, {}).setdefault(dataset, {})[statistic] = change[side]
    return baseline, current


def n_test_from_reports(reports: Union[str, Path] = "reports", test_frac: float = 0.2) -> dict[str, int]:
    """Test-set sizes: n_images * test_frac within each dataset, and B's n_test for each "A->B"."""
    reports = Path(reports)
    sizes: dict[str, int] = {}
    within_csv, cross_csv = reports / "within.csv", reports / "cross.csv"
    if within_csv.is_file():
        within = pd.read_csv(within_csv)
        if not {"dataset", "n_images"} <= set(within.columns):
            raise GateError(f"{within_csv} lacks the columns 'dataset' and 'n_images'; rerun `dvc repro evaluate`")
        for dataset, n_images in within.groupby("dataset")["n_images"].max().items():
            sizes[str(dataset)] = int(round(float(n_images) * test_frac))
    if cross_csv.is_file():
        cross = pd.read_csv(cross_csv)
        if {"train", "test", "n_test"} <= set(cross.columns):
            for row in cross.dropna(subset=["n_test"]).itertuples():
                if row.train != row.test:
                    sizes[f"{row.train}->{row.test}"] = int(row.n_test)
    return sizes


def seed_std_from(path: Union[str, Path]) -> Optional[dict[str, float]]:
    """{metric: std over seeds} from reports/variance.csv; None when the file does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        variance = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise GateError(f"{path} is not a CSV ({err}); rewrite it with benchmarks/seed_spread.py") from None
    if not {"metric", "std"} <= set(variance.columns):
        raise GateError(f"{path} lacks the columns 'metric' and 'std'; rewrite it with benchmarks/seed_spread.py")
    std = pd.to_numeric(variance["std"], errors="coerce")
    bad = variance["std"].notna() & std.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise GateError(f"{path} line {row + 2}: std {variance['std'].iloc[row]!r} of {variance['metric'].iloc[row]!r} "
                        "is not a number; rewrite the file with benchmarks/seed_spread.py")
    known = variance.assign(std=std).dropna(subset=["std"])  # one seed has no std: it keeps its sampling rule
    if (known["std"] < 0).any():
        raise GateError(f"{path} has a negative std; rewrite it with benchmarks/seed_spread.py")
    return dict(zip(known["metric"].astype(str), known["std"].astype(float)))


def _repo_relative(path: Path, repo: Path) -> str:
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        raise GateError(f"{path} is outside the git repository {repo}; pass --baseline FILE instead of a revision") \
            from None


def _git_root(start: Path) -> Path:
    shown = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True)
    if shown.returncode != 0:
        raise GateError(f"{start} is not inside a git repository, so a baseline revision cannot be read; "
                        "pass --baseline FILE with a metrics JSON")
    return Path(shown.stdout.strip())


def _baseline_file(spec: str, root: Path) -> Optional[Path]:
    """The file ``spec`` names (relative to the repository root), or None when it is a git revision."""
    path = Path(spec) if Path(spec).is_absolute() else root / spec
    return path if path.is_file() or spec.endswith(".json") else None


def load_inputs(baseline: Optional[str], metrics_path: Union[str, Path], settings: dict,
                root: Union[str, Path, None] = None) -> tuple[dict, Optional[dict], str, Optional[Path]]:
    """(current, baseline metrics, description, baseline file) for the accepted baseline file, a plain
    metrics JSON, a dvc diff file or a git revision. The metrics are None for a baseline file not yet written.
    """
    metrics_path = Path(metrics_path)
    spec = baseline or str(settings.get("baseline", acceptance.BASELINE_FILE))
    current = load_metrics(metrics_path)
    file = _baseline_file(spec, Path(root) if root else Path.cwd())
    if file is not None:
        if not file.is_file():
            return current, None, spec, file
        payload = load_metrics(file)
        if acceptance.is_baseline_file(payload):
            accepted = acceptance.read(file)["accepted"]
            last = f", last accepted {accepted[-1]['date']}: {accepted[-1]['reason']!r}" if accepted else ""
            return current, payload["metrics"], f"{spec}{last}", file
        if is_dvc_diff(payload):
            old, new = split_dvc_diff(payload, _dvc_key(payload, metrics_path))
            return new, old, f"dvc metrics diff {spec}", None
        return current, payload, spec, None
    repo = _git_root(metrics_path.resolve().parent)
    return current, baseline_from_git(spec, _repo_relative(metrics_path, repo), repo), f"git {spec}", None


def _dvc_key(payload: dict, metrics_path: Path) -> str:
    # dvc writes paths relative to the directory it ran in; match on the file name if the exact path differs.
    if metrics_path.as_posix() in payload:
        return metrics_path.as_posix()
    same_name = [key for key in payload if Path(key).name == metrics_path.name]
    return same_name[0] if len(same_name) == 1 else metrics_path.as_posix()
