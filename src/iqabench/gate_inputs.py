"""What the gate reads: metrics files, git revisions, `dvc metrics diff` output (its noise inputs, test-set sizes
and seed spread: :mod:`iqabench.gate_noise`).

:mod:`iqabench.gate` judges; this module only loads, and names the file and the fix
when an input is missing or malformed.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import NamedTuple, Optional, Union


from . import acceptance, io

METRICS_FILE = "reports/metrics.json"
SECTIONS = ("within", "cross")
STATISTICS = ("srcc", "plcc")  # the correlations the gate reads


class GateError(ValueError):
    """Input the gate cannot judge: a missing or malformed baseline, metrics file or tolerance."""


class BaselineError(GateError):
    """A baseline that cannot gate: a value that is not a correlation, or nothing to compare where the current
    metrics have gated results. ``--accept`` replaces such a baseline; a plain check refuses it."""


def _not_a_correlation(value) -> Optional[str]:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {io.shown_value(value)}, not a number"
    if isinstance(value, float) and math.isnan(value):  # an int cannot be NaN, and one of 400 digits overflows
        return "is NaN: the correlation is undefined (e.g. constant predictions)"
    if not -1.0 <= value <= 1.0:
        return f"is {io.shown_value(value)}, outside [-1, 1], so it is not a correlation"
    return None


def correlations(metrics: dict, statistics=STATISTICS, where: str = "metrics", *, error=GateError,
                 fix: str = "") -> dict[tuple[str, str, str, str], float]:
    """{(section, model, dataset, statistic): value} for the correlations in a nested metrics dict.

    A value must be a finite number in [-1, 1]; anything else (null, NaN, a string, 7.0), or a level that is
    not a mapping, is an ``error`` naming ``where``, the key and ``fix``: a hand-edited or damaged file must not
    pass by comparing nothing (a NaN baseline has nothing to regress from, so it would show as improved).
    """
    found = {}
    for key, value in leaves(metrics, statistics, where, error=error, fix=fix):
        problem = _not_a_correlation(value)
        if problem:
            raise error(f"{where}: {'.'.join(key)} {problem}" + (f"; {fix}" if fix else ""))
        found[key] = float(value)
    return found


def leaves(metrics: dict, statistics=STATISTICS, where: str = "metrics", *, error=GateError, fix: str = ""):
    """(section, model, dataset, statistic), value for each statistic in a nested metrics dict, values unchecked;
    a level that is not a mapping is an ``error``."""
    def mapping(value, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise error(f"{where}: {key} holds {io.shown_value(value)}, expected a mapping as in "
                        "reports/metrics.json (section -> model -> dataset -> statistic -> value)"
                        + (f"; {fix}" if fix else ""))
        return value

    for section in SECTIONS:
        for model, per_dataset in mapping(metrics.get(section), section).items():
            for dataset, values in mapping(per_dataset, f"{section}.{model}").items():
                values = mapping(values, f"{section}.{model}.{dataset}")
                for statistic in (s for s in statistics if s in values):
                    yield (section, model, dataset, statistic), values[statistic]


def check_coverage(baseline: dict, old: dict, new: dict, gated, where: str, current_where: str) -> None:
    """Refuse (BaselineError) a baseline that gates nothing where the current metrics have gated results.

    ``old`` and ``new`` are :func:`correlations` of the baseline and the current metrics. A row (model) or
    dataset the baseline lacks is new and fine: it is listed as added. But a section, row or dataset that the
    baseline has and leaves without a gated statistic compares nothing, so a hand-emptied ``"within": {}``
    would switch the gate off while every result showed as added.
    """
    if not old:
        raise BaselineError(f"{where} holds no SRCC/PLCC under 'within' or 'cross', so it gates nothing")
    within_datasets = {key[2] for key in old if key[0] == "within"}
    for section, model, dataset, statistic in sorted(set(new) - set(old)):
        rows = baseline.get(section) or {}
        if statistic not in gated or rows and model not in rows:
            continue  # ungated, or a new row
        if not rows:
            if section == "cross" and len(within_datasets) < 2:
                continue  # one dataset has no cross pair: a second dataset's pairs are new results
            problem = f"'{section}' is empty"
        elif not rows[model]:
            problem = f"{section}.{model} is empty"
        elif dataset not in rows[model]:
            continue  # a new dataset
        else:
            problem = f"{section}.{model}.{dataset} has no {statistic}"
        raise BaselineError(f"{where}: {problem}, but {current_where} has {section}.{model}.{dataset}.{statistic}, "
                            "so the gate would compare nothing there")


def require_sections(metrics: dict, where: str) -> None:
    """The current metrics must be the pipeline's: stages/evaluate.py always writes 'within' and 'cross'."""
    for section in SECTIONS:
        if section not in metrics:
            raise GateError(f"{where} has no '{section}' section (it has {sorted(metrics)}); it is not the "
                            "reports/metrics.json that `dvc repro` writes: regenerate it with `dvc repro`")


def load_metrics(path: Union[str, Path]) -> dict:
    path = Path(path)
    problem = io.path_problem(path)
    if problem:
        raise GateError(f"{io.shown_path(path)} {problem}; give the metrics file, e.g. {METRICS_FILE}")
    if path.is_dir():  # it said "does not exist"
        raise GateError(f"{path} is a folder; give the metrics file in it, e.g. {path / Path(METRICS_FILE).name}")
    if io.is_special(path):  # /dev/null, a pipe: "does not exist" misled
        raise GateError(f"{path} is {io.NOT_REGULAR}; give the metrics file, e.g. {METRICS_FILE}")
    if not path.is_file():
        # A dangling link is missing too, but the link is there to see: say where it points.
        link = f" is a link to {os.readlink(path)}, which" if path.is_symlink() else ""
        raise GateError(f"{path}{link} does not exist; run `dvc repro` (or `make repro`) to produce it")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GateError(f"cannot read {path} ({getattr(exc, 'strerror', None) or exc}); expected a JSON file "
                        "such as reports/metrics.json") from None
    return parse_metrics(text, where=str(path))


class UnreadableJSON(GateError):
    """A file that does not parse as JSON (``reason`` says why): in the baseline's place, no baseline file."""

    def __init__(self, message: str, reason: str, deep: bool = False, detail: str = ""):
        super().__init__(message)
        self.reason, self.deep, self.detail = reason, deep, detail  # detail: the parser's words and place


def parse_metrics(text: str, where: str) -> dict:
    try:
        payload = acceptance.loads(text)  # a repeated key is refused, not resolved to the last one
    except json.JSONDecodeError as exc:
        raise UnreadableJSON(f"{where} is not valid JSON ({exc}); expected reports/metrics.json's layout",
                             f"not JSON: {exc}", detail=f"{exc.msg}, line {exc.lineno} column {exc.colno}") from None
    except io.JSONShapeError as exc:
        if exc.deep:
            raise UnreadableJSON(f"{where} is not a metrics file: {exc}; expected reports/metrics.json's layout",
                                 str(exc), deep=True) from None
        raise GateError(f"{where}: {exc}") from None
    if not isinstance(payload, dict):
        kind = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string"}
        raise GateError(f"{where} holds {kind.get(type(payload), 'a list')}, expected a JSON object")
    return payload


def baseline_from_git(rev: str, path: str = METRICS_FILE, repo: Union[str, Path, None] = None) -> dict:
    """The metrics file as committed at ``rev``; ``path`` is relative to the repository root."""
    obj = f"{rev}:{Path(path).as_posix()}"
    try:  # bytes: a committed figure is no UTF-8, and text=True raised UnicodeDecodeError from inside run()
        shown = subprocess.run(["git", "show", obj], cwd=repo, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:  # a hung git (a lock, a network filesystem): one line
        raise GateError(f"cannot run git to read the baseline {rev}:{path} ({exc}); pass --baseline FILE") from None
    if shown.returncode != 0:
        stderr = shown.stderr.decode("utf-8", "replace")
        why = (stderr.strip().splitlines() or ["no output"])[0].removeprefix("fatal: ").rstrip(".")
        raise GateError(f"cannot read the baseline {rev}:{path} from git ({why}); pass --baseline with a "
                        f"revision where {path} is committed, or a file")
    what, fix = f"the baseline {path} at {rev}", (f"give --baseline REV:{acceptance.BASELINE_FILE} (or "
                                                  f"REV:{METRICS_FILE}), or a file")
    try:
        text = shown.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GateError(f"{what} is not UTF-8 JSON (byte {exc.start} is 0x{shown.stdout[exc.start]:02x}); "
                        f"{fix}") from None
    try:
        return parse_metrics(text, where=f"{rev}:{path}")
    except UnreadableJSON as exc:
        if exc.deep:
            raise
        # `git show` of a tree lists its files, which then read as "not valid JSON (Expecting value ...)".
        try:
            kind = subprocess.run(["git", "cat-file", "-t", obj], cwd=repo, capture_output=True, text=True,
                                  timeout=60).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            kind = "unknown"
        if kind == "tree":
            raise GateError(f"{what} is a folder in git; give a file in it, e.g. --baseline "
                            f"{rev}:{Path(path, Path(acceptance.BASELINE_FILE).name).as_posix()}") from None
        raise GateError(f"{what} is not JSON ({exc.detail}); {fix}") from None


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


def _baseline_file(spec: str, root: Path, origin: str, point: str) -> Optional[Path]:
    """The file ``spec`` names (relative to the repository root), or None when it is a git revision
    (``REV``, or ``REV:PATH`` for a file as committed there). ``origin`` names the setting, ``point`` the fix."""
    path = Path(spec) if Path(spec).is_absolute() else root / spec
    problem = io.path_problem(path)
    if problem:  # a link loop was taken for a revision ("invalid object name"); a long name was a traceback
        raise GateError(f"{origin} {problem}; {point}")
    if path.is_file() or io.is_special(path):  # a device or pipe is no revision either
        return path
    return path if spec.endswith(".json") and ":" not in spec else None


class Inputs(NamedTuple):
    current: dict              # the metrics to judge
    baseline: Optional[dict]   # None for an accepted-baseline file not yet written
    described: str             # the baseline for the table's title
    file: Optional[Path]       # the accepted-baseline file (what --accept writes), else None
    source: str                # the baseline's file or git object, for error messages
    fix: str                   # what to do when the baseline cannot gate
    partial: bool = False      # a `dvc metrics diff` without --all lists only what changed


def load_inputs(baseline: Optional[str], metrics_path: Union[str, Path], settings: dict,
                root: Union[str, Path, None] = None, params_where: str = "params.yaml") -> Inputs:
    """The current metrics and the baseline from the accepted baseline file, a plain metrics JSON, a dvc diff
    file or a git revision. The current metrics are checked here (they are what --accept would write); the
    baseline by :func:`iqabench.gate.check`, since --accept replaces a baseline that cannot gate.
    ``params_where`` names the params file whose check.baseline is used without ``baseline`` (--baseline).
    """
    metrics_path = Path(metrics_path)
    if baseline is not None and not baseline.strip():  # "" read as "not given": it gated against check.baseline
        raise GateError(f"--baseline is empty; give the accepted baseline file ({acceptance.BASELINE_FILE}), a git "
                        f"revision (HEAD~1, or HEAD~1:{acceptance.BASELINE_FILE}) or a metrics JSON, or leave "
                        f"--baseline out to use check.baseline in {params_where}")
    spec = baseline or str(settings.get("baseline", acceptance.BASELINE_FILE))
    current = load_metrics(metrics_path)
    fix = "regenerate it with `dvc repro` (one that stays so is a bug in that row: fix it, do not accept it)"
    other = "pass --baseline with another revision or file"
    # Errors name where the baseline was set, and what it should name: the flag or params.yaml's key.
    shown = io.shown_path(spec)
    origin, point = ((f"--baseline {shown}", f"{other}, e.g. --baseline {acceptance.BASELINE_FILE}") if baseline
                     else (f"check.baseline: {shown} in {params_where}" if "baseline" in settings else
                           f"the default baseline {shown}", f"set check.baseline in {params_where} to the "
                           f"accepted baseline, {acceptance.BASELINE_FILE}, or a git revision"))
    file = _baseline_file(spec, Path(root) if root else Path.cwd(), origin, point)
    if file is not None:
        if file.resolve() == metrics_path.resolve():  # a file compared with itself passes whatever it holds
            raise GateError(f"{origin} names the metrics under check ({metrics_path}), so the gate would compare "
                            f"them with themselves and always pass; {point}")
        restore = f"restore it with `git checkout {spec}`" if baseline is None else other
        if io.is_special(file):  # /dev/null "did not exist", and the advice was to --accept over it
            raise GateError(f"{origin} is {io.NOT_REGULAR}, not a baseline file; {point}")
        if not file.is_file():
            return Inputs(_checked(current, str(metrics_path), fix), None, spec, file, spec, restore)
        try:
            payload = load_metrics(file)
            if acceptance.is_baseline_file(payload):
                accepted = acceptance.read(file)["accepted"]
        except (GateError, acceptance.AcceptanceError) as exc:
            json_file = file.suffix.lower() == ".json"  # a damaged one is restored; params.yaml never was a baseline
            if isinstance(exc, UnreadableJSON) and (exc.deep or not json_file):
                raise GateError(f"{origin} is not a baseline file ({exc.reason}); {restore if json_file else point}") \
                    from None
            raise GateError(f"{exc}; {restore}") from None
        if acceptance.is_baseline_file(payload):
            last = f", last accepted {accepted[-1]['date']}: {accepted[-1]['reason']!r}" if accepted else ""
            return Inputs(_checked(current, str(metrics_path), fix), payload["metrics"], f"{spec}{last}", file, spec,
                          f"{restore}, or re-baseline from {metrics_path} if it is right: "
                          "`iqabench check --accept --reason \"...\"`")
        if is_dvc_diff(payload):
            old, new = split_dvc_diff(payload, _dvc_key(payload, metrics_path))
            correlations(new, where=f"the new side of {spec}")
            return Inputs(new, old, f"dvc metrics diff {spec}", None, f"the old side of {spec}", other, partial=True)
        return Inputs(_checked(current, str(metrics_path), fix), payload, spec, None, spec, restore)
    _checked(current, str(metrics_path), fix)
    repo = _git_root(metrics_path.resolve().parent)
    rev, _, path = spec.partition(":")
    if not rev:  # git would read ":/x" as "the newest commit whose message mentions x"
        raise GateError(f"--baseline {spec} names no revision; give REV:PATH (e.g. HEAD~1:{acceptance.BASELINE_FILE}), "
                        "a revision or a file")
    path = path or _repo_relative(metrics_path, repo)
    try:
        payload = baseline_from_git(rev, path, repo)
    except GateError:
        folder = Path(spec) if Path(spec).is_absolute() else Path(root or Path.cwd()) / spec
        if folder.is_dir():  # git said "invalid object name"
            raise GateError(f"--baseline {spec} is a folder, not a file or a git revision; give the baseline file "
                            f"in it, e.g. --baseline {Path(spec) / Path(acceptance.BASELINE_FILE).name}") from None
        raise
    if acceptance.is_baseline_file(payload):  # REV:reports/baseline.json, the accepted baseline as of REV
        payload = payload["metrics"]
    return Inputs(current, payload, f"git {spec}", None, f"{rev}:{path}", other)


def _checked(metrics: dict, where: str, fix: str) -> dict:
    require_sections(metrics, where)
    correlations(metrics, where=where, fix=fix)
    return metrics


def _dvc_key(payload: dict, metrics_path: Path) -> str:
    # dvc writes paths relative to the directory it ran in; match on the file name if the exact path differs.
    if metrics_path.as_posix() in payload:
        return metrics_path.as_posix()
    same_name = [key for key in payload if Path(key).name == metrics_path.name]
    return same_name[0] if len(same_name) == 1 else metrics_path.as_posix()


def check_settings(cfg, where: str = "params.yaml", datasets=None) -> dict:
    """params.yaml's ``check`` section, checked as params validation checks it (one schema,
    :func:`iqabench.params.check_gate_section`): a wrong key or value is a GateError naming ``where``, the key,
    the value and what is allowed. ``datasets``: the file's ``datasets:`` list."""
    from . import params as params_module

    try:
        return params_module.check_gate_section(where, cfg, datasets)
    except params_module.ParamsError as exc:
        raise GateError(str(exc)) from None


def read_settings(params_path) -> tuple[dict, Path]:
    """params.yaml and the repository root that relative baseline paths are read from."""
    from . import params as params_module

    try:
        if params_path:
            if not Path(params_path).is_file():
                raise GateError(f"{params_path} does not exist")
            return params_module.load(params_path), Path(params_path).resolve().parent
        try:
            root = params_module.repo_root()
        except FileNotFoundError:
            return {}, Path.cwd()  # outside a checkout: built-in defaults
        return params_module.load(root / "params.yaml"), root
    except ValueError as exc:  # unreadable YAML: the loader's message names the file
        raise GateError(str(exc)) from None
