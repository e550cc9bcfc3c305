"""Pruning keeps what a resume needs: damaged checkpoints never push good ones out, a killed save's temporary
files go, a dangling link is skipped, and a save that cannot write says so in one line, keeping the earlier ones."""
import errno
import os
import warnings

import numpy as np
import pytest
import torch

from iqabench import runtime
from iqabench.training import checkpoint
from iqabench.training.checkpoint import CheckpointSaveError, CheckpointWarning


def _state(step, digest="abc"):
    return {"model": {"w": torch.full((3,), float(step))}, "step": step, "config_hash": digest,
            "rng": runtime.rng_state(), "history": [{"loss": np.float64(0.5)}]}


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_two_damaged_newest_checkpoints_do_not_make_every_new_one_be_deleted(tmp_path):
    for step in (21, 28):
        checkpoint.save(tmp_path, step, _state(step))
    for step in (21, 28):  # e.g. a disk that failed: both cut short after their sidecars were written
        path = checkpoint.path_for(tmp_path, step)
        path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(CheckpointWarning):
        assert checkpoint.latest(tmp_path, "abc") is None  # the run starts over, as it must
    checkpoint.save(tmp_path, 7, _state(7))
    checkpoint.save(tmp_path, 14, _state(14))
    # It kept the damaged 21 and 28 as "the newest two" and deleted 7 and 14 as soon as they were written.
    assert _names(tmp_path) == ["step-00000007.json", "step-00000007.pt", "step-00000014.json", "step-00000014.pt"]
    assert checkpoint.latest(tmp_path, "abc")["step"] == 14


def test_the_backup_is_the_newest_intact_one(tmp_path):
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, _state(step))
    damaged = checkpoint.path_for(tmp_path, 3)
    damaged.write_bytes(damaged.read_bytes()[:100])
    checkpoint.save(tmp_path, 4, _state(4))
    assert _names(tmp_path) == ["step-00000002.json", "step-00000002.pt", "step-00000004.json", "step-00000004.pt"]


def test_a_killed_saves_temporary_files_are_removed_by_the_next_save(tmp_path):
    checkpoint.save(tmp_path, 1, _state(1))
    (tmp_path / ".step-00000002.pt.abc123.tmp").write_bytes(b"\0" * 1000)  # SIGKILL while writing step 2
    (tmp_path / ".step-00000002.json.def456.tmp").write_text("{")
    (tmp_path / "notes.txt").write_text("mine")
    checkpoint.save(tmp_path, 2, _state(2))
    assert _names(tmp_path) == ["notes.txt", "step-00000001.json", "step-00000001.pt", "step-00000002.json",
                                "step-00000002.pt"]


def test_a_save_writes_one_temporary_file_not_one_inside_another(tmp_path, monkeypatch):
    seen = []
    real = torch.save

    def spy(obj, fh, *args, **kwargs):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return real(obj, fh, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    checkpoint.save(tmp_path, 5, _state(5))
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith(".step-00000005.pt.")
    assert seen[0][0].count(".tmp") == 1


def test_a_dangling_link_named_as_a_checkpoint_is_skipped(tmp_path):
    checkpoint.save(tmp_path, 1, _state(1))
    link = checkpoint.path_for(tmp_path, 9)
    checkpoint.sidecar_for(link).write_text(checkpoint.sidecar_for(checkpoint.path_for(tmp_path, 1)).read_text()
                                            .replace('"step": 1', '"step": 9'))
    os.symlink(tmp_path / "gone.pt", link)
    with pytest.warns(CheckpointWarning, match="step-00000009.pt skipped: unreadable"):
        assert checkpoint.latest(tmp_path, "abc")["step"] == 1


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     OSError(errno.EROFS, "Read-only file system")])
def test_a_save_that_cannot_write_is_one_line_and_keeps_the_earlier_checkpoints(tmp_path, monkeypatch, failure):
    checkpoint.save(tmp_path, 1, _state(1))
    before = _names(tmp_path)

    def fail(obj, fh, *args, **kwargs):
        fh.write(b"PK partial")
        raise failure

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(CheckpointSaveError) as err:
        checkpoint.save(tmp_path, 2, _state(2))
    message = str(err.value)
    assert "\n" not in message and f"cannot write checkpoint {checkpoint.path_for(tmp_path, 2)}" in message
    assert failure.strerror in message and "it resumes from step-00000001.pt" in message
    assert _names(tmp_path) == before  # no temp file, no sidecar, the earlier checkpoint intact
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoint.latest(tmp_path, "abc")["step"] == 1
