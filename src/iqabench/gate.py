"""The CI regression gate: `iqabench check` compares reports/metrics.json with a baseline.

The baseline is a committed metrics file (a git revision, default HEAD) or any
JSON file, either in the pipeline's own nested layout or the output of
``dvc metrics diff --json``. Every SRCC and PLCC in the baseline is listed with
its old and new value and the drop it may take; the gate fails when a gated
statistic (SRCC by default) falls by more than its tolerance, or when a
baseline metric is gone.

Tolerances come from the ``check:`` section of params.yaml, per dataset::

    check:
      baseline: HEAD
      tolerance: {default: auto, synthetic-single: 0.02}
      auto_factor: 2.33

A number is an absolute drop in correlation. ``auto`` is the sampling noise of
a correlation measured on that dataset's test set: the Fisher z of Spearman's
rho has variance about 1.06 / (n - 3) (Fieller, Hartley & Pearson, 1957; 1/(n-3)
for Pearson's r), which the delta method turns into a standard error of
(1 - rho^2) * sqrt(1.06 / (n - 3)) on the rho scale. The difference of two
independent estimates has sqrt(2) times that error, and a one-sided test at 5 %
allows 1.645 of those, hence the default factor 1.645 * sqrt(2) = 2.33: a drop
smaller than what a different random test set would produce is not evidence of
a regression. The headline is a median over splits, which is less noisy than one
split, so this errs towards fewer false alarms, which is what keeps a CI gate
trusted.
"""
from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import pandas as pd
import typer

FIELLER_VARIANCE = {"srcc": 1.06, "plcc": 1.0}
AUTO_FACTOR = 2.33
MIN_TOLERANCE = 0.001  # metrics.json rounds to 4 decimals; never gate on rounding
STATISTICS = ("srcc", "plcc")
GATED = ("srcc",)
SECTIONS = ("within", "cross")
METRICS_FILE = "reports/metrics.json"

OK, IMPROVED, REGRESSED, MISSING, ADDED = "ok", "improved", "REGRESSED", "MISSING", "added"

Tolerance = Union[float, str]


class GateError(ValueError):
    """Input the gate cannot judge: a missing or malformed baseline, metrics file or tolerance."""


@dataclass(frozen=True)
class GateRow:
    metric: str                  # e.g. within.contrique.synthetic-single.srcc
    section: str
    model: str
    dataset: str                 # a dataset, or "A->B" for cross-dataset transfer
    statistic: str
    old: Optional[float]
    new: Optional[float]
    allowed_drop: Optional[float]
    status: str
    gated: bool                  # whether this row's status can fail the gate

    @property
    def fails(self) -> bool:
        return self.status == MISSING or (self.gated and self.status == REGRESSED)


@dataclass
class GateResult:
    rows: list[GateRow] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(row.fails for row in self.rows)

    @property
    def failures(self) -> list[GateRow]:
        return [row for row in self.rows if row.fails]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{**row.__dict__, "fails": row.fails} for row in self.rows])


# ----------------------------------------------------------------------------- the pure gate

def correlations(metrics: dict, statistics=STATISTICS) -> dict[tuple[str, str, str, str], float]:
    """{(section, model, dataset, statistic): value} for the correlations in a nested metrics dict."""
    found = {}
    for section in SECTIONS:
        for model, per_dataset in (metrics.get(section) or {}).items():
            for dataset, values in (per_dataset or {}).items():
                for statistic in statistics:
                    if isinstance(values, dict) and statistic in values:
                        found[(section, model, dataset, statistic)] = values[statistic]
    return found


def auto_tolerance(rho: float, n_test: int, statistic: str = "srcc", factor: float = AUTO_FACTOR) -> float:
    """``factor`` standard errors of a correlation ``rho`` measured on ``n_test`` items (see module doc)."""
    if n_test is None or n_test <= 3:
        raise GateError(f"tolerance 'auto' needs a test set of more than 3 images, got {n_test}; "
                        "give this dataset a numeric tolerance in params.yaml check.tolerance")
    standard_error = (1.0 - min(rho * rho, 1.0)) * math.sqrt(FIELLER_VARIANCE.get(statistic, 1.0) / (n_test - 3))
    return max(MIN_TOLERANCE, factor * standard_error)


def _test_dataset(dataset: str) -> str:
    return dataset.split("->", 1)[1] if "->" in dataset else dataset


def _rule_for(dataset: str, tolerances: dict, default_rule) -> Tolerance:
    # An exact "A->B" entry wins, then the test dataset B (its size sets the noise), then the default.
    for key in (dataset, _test_dataset(dataset)):
        if key in tolerances:
            return tolerances[key]
    return tolerances.get("default", default_rule)


def _allowed_drop(rule, *, dataset: str, statistic: str, old: float, n_test: dict, factor: float) -> float:
    if callable(rule):
        return float(rule(dataset, statistic, old))
    if isinstance(rule, str) and rule.strip().lower() == "auto":
        n = n_test.get(dataset, n_test.get(_test_dataset(dataset)))
        if n is None:
            raise GateError(f"tolerance 'auto' for '{dataset}' needs its test-set size; it is not in "
                            f"reports/within.csv or reports/cross.csv (known: {sorted(n_test)}); pass n_test "
                            "or set a numeric tolerance for it in params.yaml check.tolerance")
        return auto_tolerance(old, int(n), statistic, factor)
    try:
        value = float(rule)
    except (TypeError, ValueError):
        raise GateError(f"tolerance for '{dataset}' is {rule!r}; use a number (an allowed drop in "
                        "correlation, e.g. 0.02) or 'auto'") from None
    if not value >= 0:
        raise GateError(f"tolerance for '{dataset}' is {value}; an allowed drop must be >= 0")
    return value


def _number(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _display_order(key: tuple[str, str, str, str]):
    section, model, dataset, statistic = key
    return (SECTIONS.index(section), model, dataset,
            STATISTICS.index(statistic) if statistic in STATISTICS else len(STATISTICS), statistic)


def check(current: dict, baseline: dict, tolerances: Optional[dict] = None,
          default_tolerance_rule: Union[Tolerance, Callable[[str, str, float], float]] = "auto", *,
          n_test: Optional[dict] = None, statistics=STATISTICS, gated=GATED,
          auto_factor: float = AUTO_FACTOR) -> GateResult:
    """Judge ``current`` against ``baseline`` (both nested like reports/metrics.json).

    ``tolerances`` maps a dataset (or "A->B", or "default") to a number or "auto";
    ``default_tolerance_rule`` applies to the rest and may also be a callable
    ``(dataset, statistic, old) -> allowed drop``. ``n_test`` maps a dataset (or
    "A->B") to the test-set size that "auto" needs.
    """
    tolerances, n_test = dict(tolerances or {}), dict(n_test or {})
    old_values, new_values = correlations(baseline, statistics), correlations(current, statistics)
    if not old_values:
        raise GateError("the baseline holds no SRCC/PLCC under 'within' or 'cross'; is it a reports/metrics.json?")
    rows = []
    for key in sorted(old_values, key=_display_order):
        section, model, dataset, statistic = key
        old, new = _number(old_values[key]), _number(new_values.get(key))
        allowed = None
        if key not in new_values:
            status = MISSING
        elif old is None:  # an undefined baseline (NaN): nothing to regress from
            status = OK if new is None else IMPROVED
        elif new is None:  # a correlation that became undefined, e.g. constant predictions
            status = REGRESSED
        else:
            allowed = _allowed_drop(_rule_for(dataset, tolerances, default_tolerance_rule), dataset=dataset,
                                    statistic=statistic, old=old, n_test=n_test, factor=auto_factor)
            # A hair of float slack so a drop of exactly the tolerance passes.
            status = REGRESSED if new < old - allowed - 1e-12 else IMPROVED if new > old + allowed else OK
        rows.append(GateRow(".".join(key), section, model, dataset, statistic, old, new, allowed, status,
                            statistic in gated))
    for key in sorted(set(new_values) - set(old_values), key=_display_order):
        rows.append(GateRow(".".join(key), *key, None, _number(new_values[key]), None, ADDED, key[3] in gated))
    return GateResult(rows)


# ----------------------------------------------------------------------------- loading baselines

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


# ----------------------------------------------------------------------------- the command

def _tolerance_settings(cfg: dict) -> dict:
    tolerance = cfg.get("tolerance", {})
    if isinstance(tolerance, (int, float, str)):
        return {"default": tolerance}
    if not isinstance(tolerance, dict):
        raise GateError(f"params.yaml check.tolerance is {tolerance!r}; use a number, 'auto', or a mapping "
                        "{default: auto, <dataset>: 0.02}")
    return tolerance


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


def load_inputs(baseline: Optional[str], metrics_path: Union[str, Path], settings: dict) -> tuple[dict, dict, str]:
    """(current, baseline, description of the baseline) for a revision, a metrics file or a dvc diff file."""
    metrics_path = Path(metrics_path)
    spec = baseline or str(settings.get("baseline", "HEAD"))
    current = load_metrics(metrics_path)
    if Path(spec).is_file():
        payload = load_metrics(spec)
        if is_dvc_diff(payload):
            old, new = split_dvc_diff(payload, _dvc_key(payload, metrics_path))
            return new, old, f"dvc metrics diff {spec}"
        return current, payload, spec
    repo = _git_root(metrics_path.resolve().parent)
    return current, baseline_from_git(spec, _repo_relative(metrics_path, repo), repo), f"git {spec}"


def _dvc_key(payload: dict, metrics_path: Path) -> str:
    # dvc writes paths relative to the directory it ran in; match on the file name if the exact path differs.
    if metrics_path.as_posix() in payload:
        return metrics_path.as_posix()
    same_name = [key for key in payload if Path(key).name == metrics_path.name]
    return same_name[0] if len(same_name) == 1 else metrics_path.as_posix()


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def render(result: GateResult, title: str):
    from rich.table import Table

    styles = {OK: "green", IMPROVED: "bold green", REGRESSED: "bold red", MISSING: "bold red", ADDED: "cyan"}
    table = Table(title=title)
    for column in ("metric", "old", "new", "change", "allowed drop", "status"):
        # Fold long metric names instead of truncating them: CI logs are often 80 columns wide.
        table.add_column(column, justify="left" if column in ("metric", "status") else "right",
                         overflow="fold", no_wrap=column != "metric")
    for row in result.rows:
        change = None if row.old is None or row.new is None else row.new - row.old
        status, style = row.status, styles[row.status]
        if row.status == REGRESSED and not row.gated:
            status, style = f"{REGRESSED} (warn)", "yellow"
        table.add_row(row.metric, _fmt(row.old), _fmt(row.new), "—" if change is None else f"{change:+.4f}",
                      _fmt(row.allowed_drop), f"[{style}]{status}[/{style}]")
    return table


def result_gated(result: GateResult) -> list[str]:
    return sorted({row.statistic.upper() for row in result.rows if row.gated}) or ["none"]


def run_check(baseline: Optional[str] = None, *, metrics_path: Union[str, Path] = METRICS_FILE,
              reports: Union[str, Path, None] = None, params_path: Union[str, Path, None] = None,
              console=None) -> int:
    """Print the gate's table; 0 when it passes, 1 on a regression or missing metric, 2 on bad input."""
    from rich.console import Console

    from . import params as params_module

    if console is None:
        console = Console()
        if not console.is_terminal:  # CI logs do not wrap: print metric names whole
            console.width = max(console.width, 140)
    try:
        try:
            settings = params_module.load(params_path)
        except FileNotFoundError:
            if params_path:
                raise GateError(f"{params_path} does not exist") from None
            settings = {}  # outside a checkout: built-in defaults
        check_cfg = settings.get("check") or {}
        current, old, described = load_inputs(baseline, metrics_path, check_cfg)
        reports = Path(reports) if reports else Path(metrics_path).parent
        test_frac = float((settings.get("evaluate") or {}).get("test_frac", 0.2))
        result = check(current, old, _tolerance_settings(check_cfg), "auto",
                       n_test=n_test_from_reports(reports, test_frac),
                       gated=tuple(check_cfg.get("gate", GATED)),
                       auto_factor=float(check_cfg.get("auto_factor", AUTO_FACTOR)))
    except GateError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    console.print(render(result, f"{metrics_path} against {described}"))
    if result.failed:
        names = ", ".join(f"{row.metric} ({row.status})" for row in result.failures)
        console.print(f"[bold red]FAILED[/bold red]: {names}. If the change is intended, commit the new "
                      f"{metrics_path} as the baseline, or widen check.tolerance in params.yaml.")
        return 1
    warned = sum(row.status == REGRESSED for row in result.rows)
    console.print(f"[bold green]passed[/bold green]: no gated metric ({', '.join(result_gated(result))}) fell "
                  f"beyond its tolerance of {described}" + (f"; {warned} ungated drop(s) flagged (warn)." if warned else "."))
    return 0


def check_command(
    baseline: Optional[str] = typer.Option(
        None, "--baseline", "-b", help="git revision (default: params.yaml check.baseline, else HEAD) "
                                       "or a metrics JSON / `dvc metrics diff --json` file"),
    metrics: Path = typer.Option(Path(METRICS_FILE), "--metrics", help="current metrics written by `dvc repro`"),
) -> None:
    """Fail (exit 1) when an SRCC fell by more than its tolerance or a metric disappeared."""
    code = run_check(baseline, metrics_path=metrics)
    if code:
        raise typer.Exit(code)
