"""The corpus under faults: a killed write's temp file and a truncated shard (`truncate -s`) are repaired by the
next synthesize, to the bytes an undisturbed run writes; pretrain names a damaged shard and its fix in one line;
a full disk names the shard it could not write."""
from __future__ import annotations

import errno
import importlib.util
import os
from pathlib import Path

import pytest
import torch
import yaml

from iqabench import io, stage_errors
from iqabench.training import corpus
from stage_cmd import args as dvc_args

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(photos=["astronaut", "coffee"], crop=48, n_images=24, shard_size=8, seed=0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, bytes]:
    """Every file of an undisturbed build, by name."""
    out = tmp_path_factory.mktemp("clean") / "corpus"
    corpus.build(out, **SMALL)
    return _files(out)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _copy(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_a_killed_writes_temp_file_is_removed_before_the_build(tmp_path, clean, capsys):
    out = _copy(clean, tmp_path / "corpus")
    (out / ".shard-00001.pt.k3_x9q0z.tmp").write_bytes(clean["shard-00001.pt"][:1000])  # SIGKILL mid-write
    corpus.build(out, **SMALL)
    assert _files(out) == clean  # nothing for DVC to cache besides the shards: the hash every machine gets
    assert capsys.readouterr().err.splitlines() == [
        f"warning: removed 1 temporary file(s) that an interrupted write left in {out}: .shard-00001.pt.k3_x9q0z.tmp"]


@pytest.mark.parametrize("size, reason", [(1000, "PytorchStreamReader failed reading zip archive: failed finding "
                                                 "central directory"),
                                          (0, "EOFError")])
def test_a_truncated_shard_is_generated_again_with_a_warning(tmp_path, clean, capsys, size, reason):
    out = _copy(clean, tmp_path / "corpus")
    os.truncate(out / "shard-00001.pt", size)
    corpus.build(out, **SMALL)
    assert _files(out) == clean
    assert capsys.readouterr().err.splitlines() == [
        f"warning: corpus shard {out / 'shard-00001.pt'} cannot be read ({reason}); generating it again"]


def test_a_truncated_shard_stops_loading_in_one_line_naming_it_and_the_fix(tmp_path, clean):
    out = _copy(clean, tmp_path / "corpus")
    os.truncate(out / "shard-00001.pt", 1000)
    with pytest.raises(corpus.CorpusError) as err:
        corpus.load(out)
    assert str(err.value) == (
        f"corpus shard {out / 'shard-00001.pt'} cannot be read (PytorchStreamReader failed reading zip archive: "
        f"failed finding central directory): it is cut short or damaged, and pretrain.source 'corpus' reads it; "
        f"restore it with `dvc checkout {out}`, or regenerate the corpus with `dvc repro -f synthesize`")
    assert isinstance(err.value, stage_errors.INPUT_ERRORS)  # a stage under one_line prints it as one line


def test_the_pretrain_stage_says_it_in_one_line(tmp_path, clean, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"seed": 0, "pretrain": {"contrique": {"arch": "small_cnn", "width": 4, "crop": 32, "batch_size": 8,
                                                "steps": 1, "device": "cpu"}}}))
    out = _copy(clean, tmp_path / "data" / "corpus")
    os.truncate(out / "shard-00001.pt", 1000)
    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location("stage_pretrain_corpus", REPO / "stages" / "pretrain.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    with pytest.raises(SystemExit) as stop:
        stage.main(dvc_args("pretrain", "contrique"))
    assert stop.value.code == (
        "error: corpus shard data/corpus/shard-00001.pt cannot be read (PytorchStreamReader failed reading zip "
        "archive: failed finding central directory): it is cut short or damaged, and pretrain.contrique.source "
        "'corpus' reads it; restore it with `dvc checkout data/corpus`, or regenerate the corpus with "
        "`dvc repro -f synthesize`")
    assert not (tmp_path / "data" / "encoders").exists()


def test_a_full_disk_names_the_shard_and_leaves_no_temp_file(tmp_path, clean, monkeypatch):
    out = _copy({k: v for k, v in clean.items() if k == "shard-00000.pt"}, tmp_path / "corpus")

    def full(obj, fh, *args, **kwargs):
        fh.write(b"PK half")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(io.OutputWriteError) as err:
        corpus.build(out, **SMALL)
    assert str(err.value) == (f"cannot write {out / 'shard-00001.pt'} (No space left on device): free space there "
                              "or make the folder writable, then run again")
    assert _files(out) == {"shard-00000.pt": clean["shard-00000.pt"]}  # the finished shard kept, nothing half
