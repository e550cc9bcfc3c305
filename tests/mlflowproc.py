"""Start an MLflow server or UI as a child process for a test, and always stop it.

The process runs in its own session: `mlflow server` forks a uvicorn worker, and
teardown must stop both (the whole process group).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(argv: list[str], *, port: int, cwd: Path, log: Path, timeout: float, env: dict | None = None):
    """Run `argv` (which listens on `port`), wait until /health answers, yield (url, pid)."""
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                   env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"{argv[2:4]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer /health in {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, process.pid
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
