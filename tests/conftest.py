"""Shared test fixtures: the repository root and the optional ../shared material."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under `make test`'s workers (one per core) every torch, in the worker and in the stages it starts, gets one
# thread: two workers x two threads on two cores made OpenMP spin against itself. A value the user set stays.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    root = SHARED / "datasets"
    if not root.is_dir():
        pytest.skip(f"{root} is absent (a user's fresh clone): the shared real subsets are not available")
    return root


@pytest.fixture
def restore_tracking_uri():
    """mlflow.set_tracking_uri (called by tracking.log_study) sets a process global and MLFLOW_TRACKING_URI;
    later tests must not inherit this test's store (or a server that is gone)."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(None)
    if before is not None:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture
def crash_after_first_checkpoint(monkeypatch):
    """A context in which training dies (KeyboardInterrupt) right after writing its first checkpoint.

    Stands in for a SIGKILL at the worst moment for resuming: progress exists on
    disk, the final outputs do not. Outside the context, saving is normal again.
    """
    import contextlib

    from iqabench.training import checkpoint

    real_save = checkpoint.save

    def save_then_die(ckpt_dir, step, state):
        real_save(ckpt_dir, step, state)
        raise KeyboardInterrupt("killed after the first checkpoint")

    @contextlib.contextmanager
    def crashing():
        monkeypatch.setattr(checkpoint, "save", save_then_die)
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            monkeypatch.setattr(checkpoint, "save", real_save)

    return crashing


def pytest_collection_modifyitems(items):
    """Slow (end-to-end) tests first: under `make test`'s two workers the longest file then runs beside the
    others instead of after them. The sort is stable, so the order within each group is unchanged."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
