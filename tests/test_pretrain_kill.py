"""A pretraining run SIGKILLed after its first checkpoint resumes to exactly the uninterrupted weights."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from iqabench import io
from iqabench.training import corpus
from iqabench.training.pretrain import PretrainConfig, train
from stage_cmd import args as dvc_args

STAGE = Path(__file__).resolve().parents[1] / "stages" / "pretrain.py"
# The params.yaml section stays the CPU default; the profile shrinks it to a test-sized run.
SECTION = {"arch": "small_cnn", "width": 16, "crop": 64, "batch_size": 128, "steps": 300, "optimizer": "adamw",
           "lr": 0.002, "checkpoint_every": 50, "device": "cpu"}
PROFILE = {"width": 4, "crop": 32, "batch_size": 16, "steps": 60, "proj_hidden": 16, "proj_dim": 8,
           "checkpoint_every": 5, "log_every": 5}


def _workspace(root: Path) -> Path:
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"contrique": SECTION}}))
    (root / "small.yaml").write_text(yaml.safe_dump(PROFILE))
    corpus.build(root / "data" / "corpus", photos=["astronaut", "coffee"], crop=48, n_images=96, shard_size=96,
                 seed=0)
    return root


def _start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return subprocess.Popen([sys.executable, str(STAGE), *dvc_args("pretrain", "contrique"), "--profile", "small.yaml"],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _weights(root: Path) -> dict:
    return torch.load(root / "data" / "encoders" / "contrique.pt", weights_only=True)["state_dict"]


def test_sigkill_after_first_checkpoint_then_restart_gives_the_uninterrupted_weights(tmp_path):
    killed = _workspace(tmp_path / "killed")
    ckpt = killed / "data" / "checkpoints" / "pretrain-contrique"
    proc = _start(killed)
    deadline = time.monotonic() + 120
    while not list(ckpt.glob("step-*.pt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert list(ckpt.glob("step-*.pt")) and not (killed / "data" / "encoders" / "contrique.pt").exists()

    resumed = _start(killed)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out
    assert "resuming pretraining from" in out

    clean = _workspace(tmp_path / "clean")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): same kernels, same rounding
    try:
        clean_history = train(PretrainConfig(**{**SECTION, **PROFILE}), clean / "data" / "corpus",
                              clean / "encoder.pt", clean / "ckpt")
    finally:
        torch.set_num_threads(threads)
    a, b = _weights(killed), torch.load(clean / "encoder.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = (killed / "data" / "encoders" / "contrique_history.csv").read_text().splitlines()
    assert len(history) == 1 + PROFILE["steps"] // PROFILE["log_every"]  # no step logged twice or lost
    # The stage's history CSV (a DVC output) holds no wall-clock figure, so the resumed run's file is the
    # uninterrupted run's, byte for byte; the images/s went to the timing JSON.
    io.write_csv(tmp_path / "clean_history.csv",
                 pd.DataFrame([{k: v for k, v in row.items() if k not in ("images_per_s", "seconds")}
                               for row in clean_history]))
    assert "\n".join(history) + "\n" == (tmp_path / "clean_history.csv").read_text()
    timed = json.loads((killed / "reports" / "timings" / "pretrain-contrique.json").read_text())
    assert timed["images_per_s"] > 0 and len(timed["images_per_s_per_window"]) == len(history) - 1
    # The training compute of the windows before the kill is counted too.
    assert timed["training_seconds"] > 0
