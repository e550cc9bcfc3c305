"""Sharing data across machines: push to a DVC S3 remote, clone, pull, same bytes.

The remote is moto's S3 server on 127.0.0.1, so the real S3 protocol (s3fs,
aiobotocore, multipart, listing) runs without any cloud account. The data is
what iqabench puts under DVC: a raw dataset directory (``dvc add``), and the
features and model a pipeline stage produces (recorded in dvc.lock). The
``download`` stage layout proposed for dvc.yaml (foreach, persistent outputs, a
git-tracked checksum lock per dataset) is run under ``dvc repro`` against a local
HTTP server.
"""
from __future__ import annotations

import hashlib
import json
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakeserver import KADID_LAYOUT_IMAGES

HANG_S = 900  # against a hang only: a DVC command on two busy cores can take minutes

MISSING = [name for name in ("moto", "boto3", "dvc_s3") if importlib.util.find_spec(name) is None]
needs_s3 = pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)}: pip install 'dvc-s3' 'moto[server]'")

DVC = Path(sys.executable).parent / "dvc"
BUCKET = "iqabench-test"
PREFIX = "dvcstore"
UP_TO_DATE = "Data and pipelines are up to date."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def dvc_env(monkeypatch, tmp_path):
    """Environment for git and DVC subprocesses, isolated from the user's configuration."""
    # Dummy credentials: the remote must work from the environment alone, never
    # from secrets written into the committed .dvc/config.
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "NO_PROXY": "127.0.0.1,localhost",
                       "no_proxy": "127.0.0.1,localhost"}.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    # Keep DVC's global/system config and its hash database out of the user's home.
    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tmp_path / "dvc-global"))
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(tmp_path / "dvc-system"))
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_IGNORE_ISATTY", "1")
    for key, value in {"GIT_AUTHOR_NAME": "iqabench test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
                       "GIT_COMMITTER_NAME": "iqabench test",
                       "GIT_COMMITTER_EMAIL": "test@example.invalid"}.items():
        monkeypatch.setenv(key, value)
    # Stage commands say `python`: it must be this interpreter, with iqabench installed.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture()
def s3_endpoint(dvc_env):
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def run(*args, cwd: Path, timeout: float = HANG_S) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed in {cwd} (exit {result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def make_data(repo: Path) -> list[Path]:
    """A small raw dataset, a features file and a model checkpoint, like the pipeline's."""
    rng = np.random.default_rng(0)
    raw = repo / "data/raw/toy"
    (raw / "images").mkdir(parents=True)
    rows = ["image,mos"]
    for i in range(6):
        pixels = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(raw / "images" / f"img{i:02d}.png")
        rows.append(f"img{i:02d}.png,{rng.uniform(1, 5):.3f}")
    (raw / "scores.csv").write_text("\n".join(rows) + "\n")
    features = repo / "data/features/toy.npz"
    features.parent.mkdir(parents=True)
    np.savez(features, features=rng.standard_normal((6, 16)).astype(np.float32), mos=rng.uniform(1, 5, 6))
    model = repo / "data/models/encoder.pt"
    model.parent.mkdir(parents=True)
    torch.save(torch.nn.Linear(16, 4).state_dict(), model)
    return [p for p in sorted((repo / "data").rglob("*")) if p.is_file()]


def tracked_digests(repo: Path) -> dict[str, str]:
    """SHA-256 of every data file, leaving out DVC's own .dvc and .gitignore files."""
    return {p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((repo / "data").rglob("*"))
            if p.is_file() and p.suffix != ".dvc" and p.name != ".gitignore"}


@needs_s3
def test_push_clone_pull_gives_identical_data_and_fails_clearly_before_push(s3_endpoint, tmp_path):
    import boto3

    origin = tmp_path / "machine-a"
    origin.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=origin)
    run(DVC, "init", "-q", cwd=origin)
    run(DVC, "remote", "add", "-d", "s3remote", f"s3://{BUCKET}/{PREFIX}", cwd=origin)
    run(DVC, "remote", "modify", "s3remote", "endpointurl", s3_endpoint, cwd=origin)
    files = make_data(origin)
    expected = tracked_digests(origin)
    assert len(expected) == 9

    run(DVC, "add", "-q", "data/raw/toy", cwd=origin)
    # The features and model as a pipeline stage's outputs, recorded without re-running it.
    (origin / "build.py").write_text("raise SystemExit('recorded by dvc commit in this test')\n")
    run(DVC, "stage", "add", "-n", "extract", "-d", "build.py", "-d", "data/raw/toy",
        "-o", "data/features/toy.npz", "-o", "data/models/encoder.pt", "python build.py", cwd=origin)
    run(DVC, "commit", "-f", "-q", "extract", cwd=origin)
    run("git", "add", "-A", cwd=origin)
    run("git", "commit", "-q", "-m", "track data", cwd=origin)
    assert UP_TO_DATE in run(DVC, "status", cwd=origin)

    clone = tmp_path / "machine-b"
    run("git", "clone", "-q", origin, clone, cwd=tmp_path)
    assert not (clone / "data/raw/toy").exists() and not (clone / "data/models/encoder.pt").exists()
    # A collaborator pulling before anyone pushed: the pull must fail and name what is missing.
    early = subprocess.run([str(DVC), "pull"], cwd=clone, capture_output=True, text=True, timeout=HANG_S)
    assert early.returncode != 0 and "data/models/encoder.pt" in early.stdout + early.stderr, early.stderr

    run(DVC, "push", cwd=origin)

    config = (origin / ".dvc/config").read_text()
    assert s3_endpoint in config and "testing" not in config, config
    stored = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    keys = [obj["Key"] for obj in stored.get("Contents", [])]
    # One object per file plus the directory listing (.dir) of data/raw/toy.
    assert len(keys) == len(files) + 1 and all(k.startswith(f"{PREFIX}/files/md5/") for k in keys), keys

    run(DVC, "pull", cwd=clone)

    assert tracked_digests(clone) == expected
    assert UP_TO_DATE in run(DVC, "status", cwd=clone)
    assert "Cache and remote 's3remote' are in sync." in run(DVC, "status", "--cloud", cwd=clone)
    # Pulled data must not look modified to git either: nothing left to commit.
    assert run("git", "status", "--porcelain", cwd=clone).strip() == ""


STAGE_SCRIPT = Path(__file__).resolve().parents[1] / "stages" / "download.py"
# The stage proposed for dvc.yaml; only cmd and deps differ there (stages/download.py and its modules).
DOWNLOAD_DVC_YAML = """\
stages:
  download:
    foreach: ${download}
    do:
      cmd: python run_download.py ${item} --data-root data/raw --lock data/checksums/${item}.lock.json --retries 0
      deps:
        - run_download.py
      outs:
        - data/raw/${item}:
            persist: true
        - data/checksums/${item}.lock.json:
            cache: false
            persist: true
"""
# Runs the real stage script with kadid10k's remote pointed at the test's local server.
RUN_DOWNLOAD = f"""\
import dataclasses, os, runpy, sys
from iqabench.datasets import registry
spec = registry.SPECS["kadid10k"]
registry.SPECS["kadid10k"] = dataclasses.replace(
    spec, remotes=(registry.Remote(os.environ["IQABENCH_TEST_URL"], "kadid10k.zip"),), n_images={KADID_LAYOUT_IMAGES})
sys.argv = [{str(STAGE_SCRIPT)!r}] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_download_stage_resumes_after_interruption_and_then_stays_cached(dvc_env, monkeypatch, tmp_path):
    from fakeserver import Behaviour, kadid_zip, serve

    repo = tmp_path / "repo"
    repo.mkdir()
    run("git", "init", "-q", "-b", "main", cwd=repo)
    run(DVC, "init", "-q", cwd=repo)
    (repo / "params.yaml").write_text("download:\n  - kadid10k\n")
    (repo / "dvc.yaml").write_text(DOWNLOAD_DVC_YAML)
    (repo / "run_download.py").write_text(RUN_DOWNLOAD)
    archive = kadid_zip(tmp_path / "kadid-src")

    with serve({"kadid10k.zip": archive}) as server:
        monkeypatch.setenv("IQABENCH_TEST_URL", server.url("kadid10k.zip"))
        server.behaviour["kadid10k.zip"] = Behaviour(cut_after=len(archive) // 3, cuts_left=1)
        first = subprocess.run([str(DVC), "repro"], cwd=repo, capture_output=True, text=True, timeout=HANG_S)
        assert first.returncode != 0, first.stdout
        # persist: true is what keeps the partial file for the next run to resume.
        part = repo / "data/raw/kadid10k/.archives/kadid10k.zip.part"
        assert part.stat().st_size == len(archive) // 3
        run(DVC, "repro", cwd=repo)
        assert server.requests[-1] == ("kadid10k.zip", f"bytes={len(archive) // 3}-")
        requests_after_download = len(server.requests)
        assert "didn't change" in run(DVC, "repro", cwd=repo)
        assert len(server.requests) == requests_after_download

    lock = json.loads((repo / "data/checksums/kadid10k.lock.json").read_text())
    assert lock["kadid10k/kadid10k.zip"]["sha256"] == hashlib.sha256(archive).hexdigest()
    assert (repo / "data/raw/kadid10k/.iqabench-download.json").is_file()
    assert UP_TO_DATE in run(DVC, "status", cwd=repo)
    # The lock goes to git (it pins the bytes for every machine), the data to the DVC cache.
    assert subprocess.run(["git", "check-ignore", "-q", "data/checksums/kadid10k.lock.json"], cwd=repo).returncode == 1
    assert subprocess.run(["git", "check-ignore", "-q", "data/raw/kadid10k"], cwd=repo).returncode == 0


def test_stage_writes_the_lock_dvc_yaml_names_and_refuses_to_run_without_one(monkeypatch, tmp_path, capsys):
    """dvc.yaml's command pins checksums in data/checksums/NAME.lock.json, one file per dataset; without --lock
    (it was data/checksums/NAME.lock.json by default) the stage stops with its usage before any download."""
    import dataclasses
    import runpy

    from fakeserver import kadid_zip, serve
    from iqabench.datasets import registry
    from stage_cmd import args as dvc_args

    archive = kadid_zip(tmp_path / "kadid-src")
    stage = runpy.run_path(str(STAGE_SCRIPT), run_name="download_stage")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        stage["main"](["kadid10k", "--data-root", "data/raw"])
    assert stop.value.code == 2 and "the following arguments are required: --lock" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
    with serve({"kadid10k.zip": archive}) as server:
        monkeypatch.setitem(registry.SPECS, "kadid10k", dataclasses.replace(
            registry.SPECS["kadid10k"], remotes=(registry.Remote(server.url("kadid10k.zip"), "kadid10k.zip"),),
            n_images=KADID_LAYOUT_IMAGES))
        assert stage["main"]([*dvc_args("download", "kadid10k"), "--retries", "0"]) == 0
    lock = json.loads((tmp_path / "data/checksums/kadid10k.lock.json").read_text())
    assert lock["kadid10k/kadid10k.zip"]["sha256"] == hashlib.sha256(archive).hexdigest()
