"""Wall time of each pipeline stage, written to ``reports/timings/<stage>.json``, and read back for the report.

The report sums them into the pipeline's wall time, so the 10-minute budget of
the default is visible in every run: :func:`stage_timings` finds the stages that
ran in this pipeline run, :func:`timings_markdown` is the table.
"""
from __future__ import annotations

import contextlib
import platform
import sys
import time
from pathlib import Path

import torch

from . import io

TIMINGS_DIR = Path("reports/timings")


@contextlib.contextmanager
def timed(stage: str, root: str | Path = ".", enabled: bool = True):
    """Time the block; ``enabled=False`` on non-zero DDP ranks, where only rank 0 writes.

    Yields a dict the block may fill with more measurements (e.g. a throughput): they go into the same JSON,
    so a DVC output (an encoder's loss history) never holds a wall-clock figure that changes on every run.
    An output that cannot be written (a full disk, a read-only folder: :class:`io.OutputWriteError`, which
    names the file) ends the stage with one line, as every stage writes inside this block.
    """
    tic, extra = time.perf_counter(), {}
    try:
        yield extra
        if enabled:
            io.write_json(Path(root) / TIMINGS_DIR / f"{stage}.json", {
                "stage": stage, "seconds": round(time.perf_counter() - tic, 2),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                           f"{'cuda' if torch.cuda.is_available() else 'cpu'}", **extra})
    except io.OutputWriteError as err:
        raise SystemExit(f"error: {stage}: {err}") from None


# Outside DVC, a timing file counts as "ran in this run" when it is newer than the previous report by more
# than this (a git checkout writes both within a second).
SAME_CHECKOUT_S = 1.0


def repro_started() -> float | None:
    """When the `dvc` process running this stage started (s since the epoch), or None outside DVC.

    Every stage of one `dvc repro` (or `dvc exp run`) is a child of that process, so a timing file
    written after it started belongs to a stage that ran in this pipeline run.
    """
    import psutil

    try:
        for parent in psutil.Process().parents():
            args = parent.cmdline()[:3]
            if any(Path(a).name in ("dvc", "dvc.exe") for a in args) or args[1:3] == ["-m", "dvc"]:
                return parent.create_time()
    except psutil.Error:  # a parent gone or unreadable: fall back on the previous report
        return None
    return None


PER_DATASET = ("prepare", "extract")  # stages DVC runs once per name of `datasets:` (timing STAGE-DATASET)


def stage_timings(previous_report: Path | None = None, started: float | None = None,
                  datasets: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(every stage's last timing file, those written in this pipeline run: the stages that ran).

    Each stage writes reports/timings/<stage>.json when it runs; DVC keeps the file of a stage it skips.
    "This run" starts when ``started`` (the `dvc` process, :func:`repro_started`) began; outside DVC, after
    ``previous_report`` (this stage's results.md; none: every file counts). (DVC deletes the report's own outputs
    before the stage runs, so under DVC the previous report is gone.) Each entry gains ``finished`` (the file's
    mtime, s). With ``datasets``, the files of a dataset no longer listed (git keeps them; no stage writes them
    again) are left out.
    """
    if started is not None:
        since = started
    else:
        known = previous_report is not None and previous_report.is_file()
        since = previous_report.stat().st_mtime + SAME_CHECKOUT_S if known else float("-inf")
    every = []
    for path in sorted(TIMINGS_DIR.glob("*.json")):
        entry = _read_timing(path)
        if entry is None:
            continue
        kind, _, dataset = entry["stage"].partition("-")
        if datasets is None or kind not in PER_DATASET or dataset in datasets:
            every.append({**entry, "finished": path.stat().st_mtime})
    return every, [t for t in every if t["finished"] > since]


def _read_timing(path: Path) -> dict | None:
    """A timing file's contents, or None with a one-line warning when it is damaged. The files are git-tracked
    and rewritten on every run (a merge conflict leaves markers in them) and only informational: a bad one must
    not stop the report, which reads them after it wrote the figures."""
    try:
        entry = io.loads_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError and io.JSONShapeError are ValueErrors
        problem = f"is not readable JSON ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    else:
        number = (int, float)
        if not isinstance(entry, dict):
            problem = f"is a JSON {type(entry).__name__}, not an object"
        elif not isinstance(entry.get("stage"), str) or not entry["stage"]:
            problem = "has no 'stage' name"
        elif not isinstance(entry.get("seconds"), number) or isinstance(entry["seconds"], bool):
            problem = f"has no number 'seconds' (got {entry.get('seconds')!r})"
        elif entry.get("training_seconds") is not None and (not isinstance(entry["training_seconds"], number)
                                                            or isinstance(entry["training_seconds"], bool)):
            problem = f"'training_seconds' is not a number (got {entry['training_seconds']!r})"
        else:
            return entry
    print(f"warning: {path} {problem}; skipped in the wall-time table. Run its stage again to rewrite it, or "
          f"`git checkout {path}`", file=sys.stderr)
    return None


def timings_markdown(every: list[dict], ran: list[dict]) -> str:
    """The report's wall-time table: every stage as last run, those that ran in this run marked and summed."""
    names = {t["stage"] for t in ran}
    lines = ["| stage | seconds | ran in this run |", "|---|---:|---|"]
    for t in every:
        note = ""
        if (t.get("training_seconds") or 0) > t["seconds"]:  # resumed: what the training cost (None: unknown)
            note = f" (training {t['training_seconds']:.1f} s, resumed)"
        lines.append(f"| {t['stage']} | {t['seconds']:.1f}{note} | {'yes' if t['stage'] in names else ''} |")
    machine = every[0].get("machine", "unknown") if every else "unknown"
    return "\n".join(lines + [
        f"| **this run (compute, excluding DVC overhead)** | **{sum(t['seconds'] for t in ran):.1f}** | |",
        f"| all stages, as last run | {sum(t['seconds'] for t in every):.1f} | |", "",
        f"Machine: {machine}."]) + "\n"
