"""Wall time of each pipeline stage, written to ``reports/timings/<stage>.json``.

The report sums them into the pipeline's wall time, so the 10-minute budget of
the default is visible in every run.
"""
from __future__ import annotations

import contextlib
import platform
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
    """
    tic, extra = time.perf_counter(), {}
    yield extra
    if enabled:
        io.write_json(Path(root) / TIMINGS_DIR / f"{stage}.json", {
            "stage": stage, "seconds": round(time.perf_counter() - tic, 2),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                       f"{'cuda' if torch.cuda.is_available() else 'cpu'}", **extra})
