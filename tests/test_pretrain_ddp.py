"""Two CPU processes with the gloo backend train one model: DDP keeps the ranks in step and it learns."""
import os
import socket

import torch
import torch.multiprocessing as mp

from iqabench.training import corpus
from iqabench.training.pretrain import PretrainConfig, fit

WORLD = 2
CFG = dict(arch="small_cnn", width=4, crop=32, batch_size=16, steps=12, lr=3e-3, proj_hidden=16, proj_dim=8,
           checkpoint_every=6, log_every=1, seed=0, device="cpu", all_gather=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    model, history = fit(PretrainConfig(**CFG), f"{root}/corpus", f"{root}/encoder.pt", f"{root}/ckpt")
    torch.save({"state": model.state_dict(), "history": history}, f"{root}/rank{rank}.pt")


def test_two_gloo_ranks_end_with_identical_weights_and_a_falling_loss(tmp_path):
    corpus.build(tmp_path / "corpus", photos=["astronaut", "coffee"], crop=48, n_images=96, shard_size=96, seed=0)
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    a, b = results[0]["state"], results[1]["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [h["loss"] for h in results[0]["history"]]
    assert len(losses) == CFG["steps"]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    assert (tmp_path / "encoder.pt").exists()  # only rank 0 writes, and it does
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step-*.pt")) == ["step-00000006.pt", "step-00000012.pt"]


# --- the stage launches torchrun itself when params ask for more than one process ----------------------------

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402
from stage_cmd import args as dvc_args  # noqa: E402

STAGE = Path(__file__).resolve().parents[1] / "stages" / "pretrain.py"
_spec = importlib.util.spec_from_file_location("stage_pretrain", STAGE)
stage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stage)


def test_launcher_decision(monkeypatch, tmp_path):
    monkeypatch.delenv("RANK", raising=False)
    assert stage.torchrun_command(1, "auto", []) is None
    cmd = stage.torchrun_command(2, "cpu", ["arniqa", "--profile", "p.yaml"])
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(STAGE)]
    assert cmd[-3:] == ["arniqa", "--profile", "p.yaml"]  # the same encoder and arguments on every rank
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    with pytest.raises(SystemExit, match="nproc is 2 but this machine has 1 GPU"):
        stage.torchrun_command(2, "auto", [])
    assert stage.torchrun_command(2, "cpu", []) is not None  # CPU processes (gloo) need no GPU
    for bad in (0, "2", True, 1.5):
        with pytest.raises(SystemExit, match="pretrain.arniqa.nproc must be a whole number"):
            stage.torchrun_command(bad, "cpu", [], key="pretrain.arniqa.nproc")
    monkeypatch.setenv("RANK", "0")  # a rank of a torchrun started by hand (multi-node): never relaunch
    assert stage.torchrun_command(8, "auto", []) is None
    (tmp_path / "p.yaml").write_text("nproc: 2\n")
    with pytest.raises(SystemExit, match="nproc is how this machine runs the recipe.*pretrain.arniqa.nproc=N"):
        stage.read_profile(tmp_path / "p.yaml", "arniqa")


def test_the_stage_trains_an_entry_of_pretrain_and_refuses_others(monkeypatch, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"contrique": {"steps": 1}}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"pretrain: has no 'arniqa' entry; it has \['contrique'\]"):
        stage.main(dvc_args("pretrain", "arniqa"))
    with pytest.raises(SystemExit, match="encoder name 'a.b': use letters, digits"):
        stage.main(dvc_args("pretrain", "a.b"))
    (tmp_path / "p.yaml").write_text("learning_rate: 0.1\n")
    with pytest.raises(SystemExit, match=r"profile p.yaml: unknown key\(s\) \['learning_rate'\]"):
        stage.main([*dvc_args("pretrain", "contrique"), "--profile", "p.yaml"])
    # pretrain.contrique.profile names it too (dvc exp run -S pretrain.contrique.profile=p.yaml)
    # (params validation reads that profile first, with the section's own schema)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"contrique": {"profile": "p.yaml"}}}))
    with pytest.raises(SystemExit, match=r"p.yaml: pretrain.contrique.learning_rate is not a known key"):
        stage.main(dvc_args("pretrain", "contrique"))
    assert not (tmp_path / "data").exists()  # refused before any work


def test_a_bad_setting_is_named_with_its_entry_in_one_line(monkeypatch, tmp_path):
    # ARNIQA's spatial distortions need larger crops: the library says "pretrain.crop", the stage names the entry.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"seed": 0, "pretrain": {"arniqa": {"objective": "arniqa", "source": "embedded", "crop": 32, "steps": 1}}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: .*raise pretrain\.arniqa\.crop$"):
        stage.main(dvc_args("pretrain", "arniqa"))
    assert not (tmp_path / "data" / "encoders").exists()
    # A loss that became NaN mid-run: one line naming the entry's lr, not a traceback.
    def diverged(*args):
        raise stage.NonFiniteLoss("pretraining loss became nan between steps 1 and 2; Lower pretrain.lr (a new run)")
    monkeypatch.setattr(stage, "train", diverged)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"arniqa": {"steps": 1}}}))
    with pytest.raises(SystemExit, match=r"^error: pretraining loss became nan.*Lower pretrain\.arniqa\.lr"):
        stage.main(dvc_args("pretrain", "arniqa"))


def test_stage_with_nproc_2_runs_two_gloo_ranks_through_torchrun(tmp_path):
    section = {**CFG, "steps": 4, "checkpoint_every": 2, "log_every": 2, "nproc": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"contrique": section}}))
    corpus.build(tmp_path / "data" / "corpus", photos=["astronaut", "coffee"], crop=48, n_images=96,
                 shard_size=96, seed=0)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    run = subprocess.run([sys.executable, str(STAGE), *dvc_args("pretrain", "contrique")], cwd=tmp_path,
                         env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "--nproc_per_node=2" in run.stdout
    last = torch.load(tmp_path / "data" / "checkpoints" / "pretrain-contrique" / "step-00000004.pt", weights_only=True)
    assert len(last["generator"]) == 2  # one view generator per rank: two ranks trained
    assert (tmp_path / "data" / "encoders" / "contrique.pt").exists()
    assert (tmp_path / "data" / "encoders" / "contrique_history.csv").read_text().count("\n") == 1 + 2


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_stage_with_nproc_2_on_two_gpus_runs_nccl_with_syncbn(tmp_path):
    section = {**CFG, "steps": 4, "checkpoint_every": 2, "log_every": 2, "nproc": 2, "device": "cuda"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"contrique": section}}))
    corpus.build(tmp_path / "data" / "corpus", photos=["astronaut", "coffee"], crop=48, n_images=96,
                 shard_size=96, seed=0)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    run = subprocess.run([sys.executable, str(STAGE), *dvc_args("pretrain", "contrique")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    last = torch.load(tmp_path / "data" / "checkpoints" / "pretrain-contrique" / "step-00000004.pt", weights_only=True)
    assert len(last["generator"]) == 2
