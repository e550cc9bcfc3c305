"""The CI regression gate: `iqabench check` compares reports/metrics.json with a baseline.

The baseline is the accepted one, reports/baseline.json (:mod:`iqabench.acceptance`),
changed only by ``iqabench check --accept --reason "..."``, which records why. For
ad-hoc use ``--baseline`` also takes a git revision (the metrics file committed
there; ``REV:reports/baseline.json`` for the accepted baseline as of REV), a metrics
JSON or the output of ``dvc metrics diff --json``. A baseline that cannot gate (a value
that is not a correlation, a section emptied by hand) is refused, not passed. Every
SRCC and PLCC in the baseline is listed with its old and new value and the drop it may take;
the gate fails when a gated statistic (SRCC by default) falls by more than its
tolerance, or when a baseline metric is gone.

Tolerances come from the ``check:`` section of params.yaml, per dataset::

    check:
      baseline: reports/baseline.json
      tolerance: {default: auto, synthetic-single: 0.02}
      auto_factor: 2.33
      seed_factor: 4.24

The allowed drop of a metric is the larger of two noises. Sampling noise: a
number is an absolute drop in correlation; ``auto`` is the sampling noise of
a correlation measured on that dataset's test set: the Fisher z of Spearman's
rho has variance about 1.06 / (n - 3) (Fieller, Hartley & Pearson, 1957; 1/(n-3)
for Pearson's r), which the delta method turns into a standard error of
(1 - rho^2) * sqrt(1.06 / (n - 3)) on the rho scale. The difference of two
independent estimates has sqrt(2) times that error, and a one-sided test at 5 %
allows 1.645 of those, hence the default factor 1.645 * sqrt(2) = 2.33: a drop
smaller than what a different random test set would produce is not evidence of
a regression. The headline is a median over splits, which is less noisy than one
split, so this errs towards fewer false alarms, which is what keeps a CI gate
trusted. Seed noise: ``seed_factor`` times the metric's standard deviation over
seeds of pretraining and splits, measured by benchmarks/seed_spread.py in
reports/variance.csv, for the rows that read a pretrained encoder only
(:func:`iqabench.gate_noise.training_noise`). The baseline is one run and the current metrics another,
so their difference has sqrt(2) times that std: the default 4.24 = 3 * sqrt(2)
allows three of those (docs/reproducibility.md: at 3 x std, a run on another CPU's
kernels failed on noise). A 600-step CPU pretraining moves the pretrained rows more
than their test set's sampling error (and differs in its last bits from one
machine to the next), so a fresh clone elsewhere must be judged against that
spread; without reports/variance.csv the gate warns and uses sampling noise only.
Seed noise never takes a row to chance: its allowed drop stops where the SRCC would fall below what a
predictor with no information exceeds once in 100 on that test set (:func:`chance_level`), so an encoder
that broke (SRCC near 0) fails however wide its spread (a 0.084 std allowed a 0.356 drop from 0.34).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import pandas as pd
import typer

from . import acceptance
from .gate_inputs import (METRICS_FILE, SECTIONS, STATISTICS, BaselineError, GateError, check_coverage,
                          check_settings, correlations, load_inputs, read_settings)
from .gate_noise import n_test_from_reports, seed_std_from, training_noise

FIELLER_VARIANCE = {"srcc": 1.06, "plcc": 1.0}
AUTO_FACTOR = 2.33
SEED_FACTOR = 4.24  # 3 * sqrt(2): see the module docstring
VARIANCE_FILE = "variance.csv"  # next to metrics.json, written by benchmarks/seed_spread.py
MIN_TOLERANCE = 0.001  # metrics.json rounds to 4 decimals; never gate on rounding
GATED = ("srcc",)
CHANCE_Z = 2.33  # one-sided 1 %: see chance_level

OK, IMPROVED, REGRESSED, MISSING, ADDED = "ok", "improved", "REGRESSED", "MISSING", "added"

Tolerance = Union[float, str]


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
    basis: str = ""              # what set allowed_drop: "sampling", "seed", or "chance" (seed noise, cut at chance)

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

def auto_tolerance(rho: float, n_test: int, statistic: str = "srcc", factor: float = AUTO_FACTOR) -> float:
    """``factor`` standard errors of a correlation ``rho`` measured on ``n_test`` items (see module doc)."""
    if n_test is None or n_test <= 3:
        raise GateError(f"tolerance 'auto' needs a test set of more than 3 images, got {n_test}; "
                        "give this dataset a numeric tolerance in params.yaml check.tolerance")
    standard_error = (1.0 - min(rho * rho, 1.0)) * math.sqrt(FIELLER_VARIANCE.get(statistic, 1.0) / (n_test - 3))
    return max(MIN_TOLERANCE, factor * standard_error)


def chance_level(n_test: int, statistic: str = "srcc") -> float:
    """The correlation that a predictor with no information about quality exceeds once in 100 on ``n_test``
    images: CHANCE_Z standard errors of the module's formula at rho = 0. On one split; a median over
    splits is less noisy, so the level is a cautious one (a working row stays well above it)."""
    return CHANCE_Z * math.sqrt(FIELLER_VARIANCE.get(statistic, 1.0) / (n_test - 3))


def _test_dataset(dataset: str) -> str:
    return dataset.split("->", 1)[1] if "->" in dataset else dataset


def _test_size(dataset: str, n_test: dict) -> Optional[int]:
    # "A->B" has its own entry (B's n_test); a within-dataset name, or B alone, the dataset's.
    return n_test.get(dataset, n_test.get(_test_dataset(dataset)))


def _rule_for(dataset: str, tolerances: dict, default_rule) -> Tolerance:
    # An exact "A->B" entry wins, then the test dataset B (its size sets the noise), then the default.
    for key in (dataset, _test_dataset(dataset)):
        if key in tolerances:
            return tolerances[key]
    return tolerances.get("default", default_rule)


def _allowed_drop(rule, *, dataset: str, statistic: str, old: float, n_test: dict, factor: float) -> float:
    if callable(rule):
        return float(rule(dataset, statistic, old))
    if _is_auto(rule):
        n = _test_size(dataset, n_test)
        if n is None:
            raise GateError(f"tolerance 'auto' for '{dataset}' needs its test-set size; it is not in "
                            f"reports/within.csv or reports/cross.csv (known: {sorted(n_test)}); pass n_test "
                            "or set a numeric tolerance for it in params.yaml check.tolerance")
        return auto_tolerance(old, int(n), statistic, factor)
    return _drop(rule, f"tolerance for '{dataset}'")


def _is_auto(rule) -> bool:
    return isinstance(rule, str) and rule.strip().lower() == "auto"


def _drop(rule, what: str) -> float:
    """A numeric tolerance rule as an allowed drop; ``what`` names it in the error."""
    try:
        value = float(rule)
    except (TypeError, ValueError):
        raise GateError(f"{what} is {rule!r}; use a number (an allowed drop in correlation, e.g. 0.02) "
                        "or 'auto'") from None
    if not value >= 0:
        raise GateError(f"{what} is {value}; an allowed drop must be >= 0")
    return value


def _display_order(key: tuple[str, str, str, str]):
    section, model, dataset, statistic = key
    return (SECTIONS.index(section), model, dataset,
            STATISTICS.index(statistic) if statistic in STATISTICS else len(STATISTICS), statistic)


def check(current: dict, baseline: dict, tolerances: Optional[dict] = None,
          default_tolerance_rule: Union[Tolerance, Callable[[str, str, float], float]] = "auto", *,
          n_test: Optional[dict] = None, statistics=STATISTICS, gated=GATED,
          auto_factor: float = AUTO_FACTOR, seed_std: Optional[dict] = None,
          seed_factor: float = SEED_FACTOR, sources=("the current metrics", "the baseline"),
          partial: bool = False) -> GateResult:
    """Judge ``current`` against ``baseline`` (both nested like reports/metrics.json).

    ``tolerances`` maps a dataset (or "A->B", or "default") to a number or "auto";
    ``default_tolerance_rule`` applies to the rest and may also be a callable
    ``(dataset, statistic, old) -> allowed drop``. ``n_test`` maps a dataset (or
    "A->B") to the test-set size that "auto" needs. ``seed_std`` maps a metric name
    (``within.contrique.synthetic-single.srcc``) to its std over seeds; a metric in it
    may drop by ``seed_factor`` times that std when that is more than its sampling rule.

    Every correlation must be a finite number in [-1, 1] (a GateError names ``sources``, the current
    metrics' and the baseline's, and the key), and the baseline must gate what the current metrics hold
    (:func:`iqabench.gate_inputs.check_coverage`; a BaselineError). ``partial``: the inputs list only what
    changed (`dvc metrics diff` without --all), so an absent section is not an empty baseline.
    """
    tolerances, n_test, seed_std = dict(tolerances or {}), dict(n_test or {}), dict(seed_std or {})
    if not seed_factor >= 0:
        raise GateError(f"check.seed_factor is {seed_factor}; use a multiple of the seed std >= 0, e.g. 4.24")
    new_values = correlations(current, statistics, sources[0])  # first: --accept stops at a bad current only
    old_values = correlations(baseline, statistics, sources[1], error=BaselineError)
    check_coverage(baseline, old_values, {} if partial else new_values, gated, sources[1], sources[0])
    rows = []
    for key in sorted(old_values, key=_display_order):
        section, model, dataset, statistic = key
        old, new = old_values[key], new_values.get(key)
        allowed, basis = None, ""
        if new is None:
            status = MISSING
        else:
            sampling = _allowed_drop(_rule_for(dataset, tolerances, default_tolerance_rule), dataset=dataset,
                                     statistic=statistic, old=old, n_test=n_test, factor=auto_factor)
            seed_drop = seed_factor * seed_std.get(".".join(key), 0.0)
            n = _test_size(dataset, n_test)
            floor = chance_level(n, statistic) if n is not None and n > 3 else -math.inf
            capped = min(seed_drop, old - floor)  # seed noise never down to chance
            allowed, basis = sampling, "sampling"
            if capped > sampling:  # and never below the sampling rule
                allowed, basis = capped, "seed" if capped == seed_drop else "chance"
            # A hair of float slack so a drop of exactly the tolerance passes.
            status = REGRESSED if new < old - allowed - 1e-12 else IMPROVED if new > old + allowed else OK
        rows.append(GateRow(".".join(key), section, model, dataset, statistic, old, new, allowed, status,
                            statistic in gated, basis))
    for key in sorted(set(new_values) - set(old_values), key=_display_order):
        rows.append(GateRow(".".join(key), *key, None, new_values[key], None, ADDED, key[3] in gated))
    return GateResult(rows)


# ----------------------------------------------------------------------------- the command

def _tolerance_settings(cfg: dict) -> dict:
    # check_settings has checked each rule against params_schema (a number >= 0 or auto), naming the key.
    tolerance = cfg.get("tolerance", {})
    return tolerance if isinstance(tolerance, dict) else {"default": tolerance}


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.4f}"


def say(out, label: str, style: str, message: str, **kwargs) -> None:
    """Print ``label`` in ``style`` and then ``message`` as written: a message holds user text (a reason, a path, a
    model name), which rich read as markup ("[/review]" was a MarkupError, "[#12]" vanished)."""
    from rich.text import Text

    out.print(Text.assemble((label, style), message), **kwargs)


def render(result: GateResult, title: str):
    from rich.table import Table
    from rich.text import Text

    styles = {OK: "green", IMPROVED: "bold green", REGRESSED: "bold red", MISSING: "bold red", ADDED: "cyan"}
    table = Table(title=Text(title))  # Text: the title and metric names are user text, not markup
    for column in ("metric", "old", "new", "change", "allowed drop", "status"):
        # Fold long metric names instead of truncating them: CI logs are often 80 columns wide.
        table.add_column(column, justify="left" if column in ("metric", "status") else "right",
                         overflow="fold", no_wrap=column != "metric")
    for row in result.rows:
        change = None if row.old is None or row.new is None else row.new - row.old
        status, style = row.status, styles[row.status]
        if row.status == REGRESSED and not row.gated:
            status, style = f"{REGRESSED} (warn)", "yellow"
        elif not row.gated and row.status in (OK, IMPROVED, ADDED):
            status, style = f"{row.status} (ungated)", "dim"  # shown for reading; it cannot fail the gate
        allowed = _fmt(row.allowed_drop) + {"seed": " (seed)", "chance": " (to chance)"}.get(row.basis, "")
        table.add_row(Text(row.metric), _fmt(row.old), _fmt(row.new), "—" if change is None else f"{change:+.4f}",
                      allowed, Text(status, style=style))
    return table


def result_gated(result: GateResult) -> list[str]:
    return sorted({row.statistic.upper() for row in result.rows if row.gated}) or ["none"]


def _default_metrics(root: Path) -> Path:
    # The repository's, from any folder in it (it was looked up from the cwd), named as the cwd reaches it.
    path = root / METRICS_FILE
    return Path(os.path.relpath(path)) if Path.cwd().resolve().is_relative_to(root.resolve()) else path


def run_check(baseline: Optional[str] = None, *, metrics_path: Union[str, Path, None] = None,
              reports: Union[str, Path, None] = None, params_path: Union[str, Path, None] = None,
              accept_reason: Optional[str] = None, console=None, errors=None) -> int:
    """Print the gate's table; 0 when it passes, 1 on a regression or missing metric, 2 on bad input.

    With ``accept_reason`` the current metrics become the accepted baseline (exit 0), with a record of
    the reason, the commit and the metrics that moved beyond their tolerance. ``metrics_path`` defaults to
    the repository's reports/metrics.json. Errors and warnings go to ``errors``: by default stderr, unless a
    ``console`` is given (then both go there, for a caller that records one).
    """
    from .terminal import console as make_console

    if console is None:
        console = make_console()
        if not console.is_terminal:  # CI logs do not wrap: print metric names whole
            console.width = max(console.width, 140)
        errors = errors or make_console(stderr=True)
    errors = errors or console
    try:
        if accept_reason is not None and not accept_reason.strip():
            raise GateError("--accept needs a non-empty --reason \"...\": it is what a reviewer reads in the "
                            "diff of the baseline file")
        settings, root = read_settings(params_path)
        metrics_path = Path(metrics_path) if metrics_path is not None else _default_metrics(root)
        where = str(params_path or "params.yaml")
        check_cfg = check_settings(settings.get("check"), where, settings.get("datasets"))
        inputs = load_inputs(baseline, metrics_path, check_cfg, root, where)
        current, old, described, file = inputs.current, inputs.baseline, inputs.described, inputs.file
        if accept_reason is not None and file is None:  # say where the baseline was set: the flag or params.yaml
            raise GateError(f"--accept writes an accepted-baseline file, but the baseline is {described}; " + (
                f"drop --baseline (default {acceptance.BASELINE_FILE}) or name a .json file" if baseline else
                f"it comes from check.baseline in {where}: set that to a .json file (e.g. {acceptance.BASELINE_FILE}) "
                "or pass --baseline FILE.json"))
        if old is None and accept_reason is None:
            raise GateError(f"{file} does not exist; accept the current {metrics_path} as the baseline with "
                            "`iqabench check --accept --reason \"initial baseline\"` and commit it")
        if accept_reason is not None:  # before the table: nothing is accepted, so say so first
            acceptance.check_storable(current, str(metrics_path))
        reports = Path(reports) if reports else Path(metrics_path).parent
        seed_std = seed_std_from(reports / VARIANCE_FILE)
        if seed_std is None:
            say(errors, "warning:", "yellow", f" {reports / VARIANCE_FILE} not found: tolerances are "
                "sampling error only. Measure the seed spread with `python benchmarks/seed_spread.py`.")
        test_frac = float((settings.get("evaluate") or {}).get("test_frac", 0.2))
        result = None
        try:
            if old is not None:
                result = check(current, old, _tolerance_settings(check_cfg), "auto",
                               n_test=n_test_from_reports(reports, test_frac),
                               gated=tuple(check_cfg.get("gate", GATED)),
                               auto_factor=float(check_cfg.get("auto_factor", AUTO_FACTOR)),
                               seed_std=seed_std and training_noise(seed_std, old, inputs.source),
                               seed_factor=float(check_cfg.get("seed_factor", SEED_FACTOR)),
                               sources=(str(metrics_path), inputs.source), partial=inputs.partial)
        except BaselineError as exc:
            if accept_reason is None:  # a baseline that cannot gate must not pass: say how to get a good one
                raise GateError(f"{exc}. To fix: {inputs.fix}") from None
            say(console, "note:", "yellow", f" the baseline being replaced could not gate ({exc})")
        if result is not None:
            console.print(render(result, f"{metrics_path} against {described}"))
        # Only against an accepted-baseline file (a git revision or plain JSON records no data): read manifests then.
        digests = acceptance.data_digests(root, current) if file is not None else {}
        if file is not None and Path(file).is_file():
            for name, then, now in acceptance.changed_data(acceptance.read(file), digests):
                say(console, "note:", "yellow", f" {name}'s images, scores or contents differ from those the "
                    f"baseline was accepted on (data {then[:12]} -> {now[:12]}): its metrics moved with "
                    "the data as well as the code")
        if accept_reason is not None:
            moved = [] if result is None else [
                {"metric": row.metric, "old": row.old, "new": row.new, "status": row.status}
                for row in result.rows if row.status != OK]
            acceptance.accept(file, current, accept_reason, acceptance.git_head(root), moved, data=digests,
                              where=str(metrics_path))
            say(console, "accepted", "bold green", f": {file} now holds {metrics_path} "
                f"({len(moved)} metric(s) moved beyond their tolerance); commit it with the change.")
            return 0
    except (GateError, acceptance.AcceptanceError) as exc:
        say(errors, "error:", "red", f" {exc}", soft_wrap=True)  # unwrapped, so a path stays whole
        return 2
    if result.failed:
        names = ", ".join(f"{row.metric} ({row.status})" for row in result.failures)
        missing = any(row.status == MISSING for row in result.failures)
        say(console, "FAILED", "bold red", f": {names}. " + (
            f"A MISSING metric is in the baseline but not in {metrics_path}: rerun `dvc repro` if it should be "
            "there. " if missing else "") + "If the change is intended, accept it with `iqabench check --accept "
            "--reason \"...\"` and commit the baseline file; the record shows the change and your reason in review.")
        return 1
    warned = sum(row.status == REGRESSED for row in result.rows)
    added = sum(row.status == ADDED for row in result.rows)
    say(console, "passed", "bold green", f": no gated metric ({', '.join(result_gated(result))}) fell "
        f"beyond its tolerance of {inputs.source}" + (f"; {warned} ungated drop(s) flagged (warn)" if warned else "")
        + (f"; {added} new metric(s) not in the baseline (`--accept` to gate them)" if added else "") + ".")
    return 0


def check_command(
    baseline: Optional[str] = typer.Option(
        None, "--baseline", "-b", help="the accepted baseline file (default: params.yaml check.baseline, "
                                       f"{acceptance.BASELINE_FILE}), or for ad-hoc use a git revision "
                                       "(REV, or REV:reports/baseline.json), "
                                       "a metrics JSON or a `dvc metrics diff --json` file"),
    # str, not Path: as a Path, "" (an unset shell variable) arrived as "." and was called a folder.
    metrics: Optional[str] = typer.Option(None, "--metrics", help="current metrics written by `dvc repro` "
                                                                  f"(default: the repository's {METRICS_FILE})"),
    accept: bool = typer.Option(False, "--accept", help="make the current metrics the accepted baseline "
                                                        "(needs --reason)"),
    reason: str = typer.Option("", "--reason", help="why the change is accepted; recorded in the baseline file"),
) -> None:
    """Fail (exit 1) when an SRCC fell by more than its tolerance or a metric disappeared."""
    if reason and not accept:
        typer.echo("error: --reason goes with --accept", err=True)
        raise typer.Exit(2)
    if metrics is not None and not metrics.strip():
        typer.echo(f"error: --metrics is empty; give the metrics file, e.g. --metrics {METRICS_FILE}, or leave it "
                   "out for the repository's", err=True)
        raise typer.Exit(2)
    code = run_check(baseline, metrics_path=metrics, accept_reason=reason if accept else None)
    if code:
        raise typer.Exit(code)
