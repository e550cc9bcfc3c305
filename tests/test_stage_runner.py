"""stages/run.sh: the Python that runs the caller (not PATH's), a clear refusal of a wrong IQABENCH_PYTHON,
and the recovery hint when a stage fails. tests/test_dvc_graph.py runs it under a real `dvc repro`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "stages" / "run.sh"
BARE = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no venv on PATH


def _run(*args, **env):
    return subprocess.run(["sh", str(RUN), *args], env={**BARE, **env}, capture_output=True, text=True, timeout=900)  # a hang guard, not a speed test


def test_uses_the_interpreter_of_its_caller_without_the_venv_on_path():
    # Our ancestor is this pytest process, as the dvc process is under `dvc repro`.
    out = _run("-c", "import iqabench, sys; print(sys.prefix)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == sys.prefix


def test_failure_keeps_the_exit_status_and_says_how_to_recover():
    out = _run("-c", "raise SystemExit(3)", DVC_STAGE="evaluate")
    assert out.returncode == 3
    assert "stage evaluate failed (exit 3)" in out.stderr and "git checkout reports && dvc checkout" in out.stderr
    # `dvc exp run -S 'datasets=[]'` leaves params.yaml without the foreach stages whose outputs it would restore
    assert "after `git checkout params.yaml` if the error is in params.yaml" in " ".join(out.stderr.split())


def test_a_wrong_iqabench_python_is_refused_by_name():
    out = _run("-c", "pass", IQABENCH_PYTHON="/usr/bin/false")
    assert out.returncode == 1 and "IQABENCH_PYTHON=/usr/bin/false is not a Python that can import iqabench" in out.stderr
    good = _run("-c", "import sys; print(sys.executable)", IQABENCH_PYTHON=sys.executable)
    assert good.returncode == 0 and good.stdout.strip() == sys.executable
