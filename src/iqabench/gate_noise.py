"""The gate's noise inputs: test-set sizes (reports/within.csv, cross.csv) for each metric's sampling error, and
the measured seed spread (reports/variance.csv) for a pretrained row's allowance.

Each is a file a person can edit, and an edit that makes a tolerance infinite would let any drop pass, so every
cell is checked and a bad one is a GateError naming the file, the line and the fix.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from . import io
from .gate_inputs import STATISTICS, BaselineError, GateError, leaves


def _table(path: Path, columns=(), *, fix: str) -> pd.DataFrame:
    """io.read_table's checks (missing, unreadable, lacking a column), raised as the gate's own error."""
    try:
        return io.read_table(path, columns, fix=fix)
    except io.TableError as err:
        raise GateError(str(err)) from None


def n_test_from_reports(reports: Union[str, Path] = "reports", test_frac: float = 0.2) -> dict[str, int]:
    """Test-set sizes: n_images * test_frac within each dataset, and B's n_test for each "A->B"."""
    reports = Path(reports)
    sizes: dict[str, int] = {}
    within_csv, cross_csv = reports / "within.csv", reports / "cross.csv"
    if within_csv.is_file():
        within = _table(within_csv, ("dataset", "n_images"), fix="rerun `dvc repro evaluate`")
        within = within.assign(n_images=_counts(within, "n_images", within_csv))
        for dataset, n_images in within.groupby("dataset")["n_images"].max().items():
            sizes[str(dataset)] = int(round(float(n_images) * test_frac))
    if cross_csv.is_file():
        cross = _table(cross_csv, fix="rerun `dvc repro evaluate`")
        if {"train", "test", "n_test"} <= set(cross.columns):
            cross = cross.dropna(subset=["n_test"])  # blank on a train == test row: that pair is within's
            for row in cross.assign(n_test=_counts(cross, "n_test", cross_csv)).itertuples():
                if row.train != row.test:
                    sizes[f"{row.train}->{row.test}"] = int(row.n_test)
    return sizes


def _counts(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """``column`` as image counts; 'abc', inf, -5 or a blank was a ValueError or OverflowError traceback in int()."""
    values = pd.to_numeric(frame[column], errors="coerce")
    for index, raw, value in zip(frame.index, frame[column], values):
        if not (math.isfinite(value) and value >= 0 and float(value).is_integer()):  # NaN is not finite
            raise GateError(f"{path} line {index + 2}: {column} is {_cell(raw)}, not a count of images; regenerate "
                            "it with `dvc repro evaluate`")
    return values.astype(int)


def _cell(raw) -> str:
    # A CSV cell as written: text quoted, a number plain (numpy 2's repr would say np.float64(inf)).
    return repr(raw) if isinstance(raw, str) else "blank" if pd.isna(raw) else f"{float(raw):g}"


def seed_std_from(path: Union[str, Path]) -> Optional[dict[str, float]]:
    """{metric: std over seeds} from reports/variance.csv; None when the file does not exist.

    The gate allows a drop of seed_factor x std, so a std of inf, or above 1 (correlations lie in [-1, 1]: only seeds
    at opposite ends spread so far), passes any drop, and of a metric listed twice the last row won silently: each
    is a GateError naming the line. A blank std is one seed's (the sampling rule applies) unless n_seeds is 2 or more.
    """
    path = Path(path)
    if not path.is_file():
        return None
    variance = _table(path, ("metric", "std"), fix="rewrite it with benchmarks/seed_spread.py")
    std = pd.to_numeric(variance["std"], errors="coerce")
    seeds = pd.to_numeric(variance["n_seeds"], errors="coerce") if "n_seeds" in variance else [math.nan] * len(std)
    seen: dict[str, int] = {}
    for line, metric, raw, value, n in zip(range(2, len(std) + 2), variance["metric"].astype(str), variance["std"],
                                           std, seeds):
        problem = (f"is listed twice (line {seen[metric]}, std {_cell(std.iloc[seen[metric] - 2])}, and line {line}, "
                   f"std {_cell(value)}), and one row would be dropped silently" if metric in seen
                   else f"has std {raw!r}, not a number" if math.isnan(value) and not pd.isna(raw)
                   else f"has a blank std over {n:g} seeds" if math.isnan(value) and n >= 2
                   else f"has std {value:g}, below 0" if value < 0
                   else f"has std {value:g}, above 1, which lets any drop pass" if value > 1 else None)
        if problem:
            raise GateError(f"{path} line {line}: the metric {metric!r} {problem}; re-measure it with "
                            "`python benchmarks/seed_spread.py`")
        seen[metric] = line
    known = variance.assign(std=std).dropna(subset=["std"])  # one seed has no std: it keeps its sampling rule
    return dict(zip(known["metric"].astype(str), known["std"].astype(float)))


def training_noise(seed_std: dict[str, float], baseline: dict, where: str = "the baseline") -> dict[str, float]:
    """The seed std of the baseline's metrics whose row reads a pretrained encoder's weights (``Row.pretrain``
    and ``Row.trained_weights``).

    The gate compares two runs at the same seeds: the same split draw, and for a row without training
    (BRISQUE, NIQE, PSNR, and `random`, which reads only the encoder's architecture) the same features, so
    its spread over seeds (the split draw's alone) is noise a same-seed re-run does not have, and it keeps
    the sampling rule. A pretrained row differs between machines by its pretraining, which the measured
    spread holds (with the split draw's, so it errs towards passing). A row the project does not declare
    (an outside row, or one since removed) keeps its std.
    """
    from .rows import ROWS  # by name only: a metric name never imports code

    def trained(name: str) -> bool:
        return name not in ROWS or (ROWS[name].pretrain is not None and ROWS[name].trained_weights)

    # Names only: benchmarks/seed_spread.py passes one seed's metrics, where an undefined (NaN) value is expected.
    keep = {".".join(key) for key, _ in leaves(baseline, STATISTICS, where, error=BaselineError) if trained(key[1])}
    return {metric: std for metric, std in seed_std.items() if metric in keep}
