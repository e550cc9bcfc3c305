"""io's writes under faults: a killed write's temp file is recognised and removed (and ignored by git and DVC), and
a full disk or read-only folder is one OutputWriteError naming the output, never its temp file or torch's
"unexpected pos"; nothing half-written is left, and valid writes keep their bytes."""
from __future__ import annotations

import errno
import fnmatch
import io as pyio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from iqabench import io, stage_errors

REPO = Path(__file__).resolve().parents[1]
FULL = "free space there or make the folder writable, then run again"
needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full (Linux's full disk)")


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _killed_write(folder: Path, name: str) -> Path:
    """The temp file a process SIGKILLed inside ``atomic_path`` leaves behind."""
    code = ("import os, signal, sys; from iqabench import io\n"
            "with io.atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    run = subprocess.run([sys.executable, "-c", code, str(folder / name)], capture_output=True)
    assert run.returncode == -signal.SIGKILL
    (left,) = [p for p in folder.iterdir() if p.name.startswith(".")]
    return left


def test_a_killed_writes_temp_file_is_removed_and_named_in_one_line(tmp_path, capsys):
    (tmp_path / "shard-00000.pt").write_bytes(b"kept")
    left = _killed_write(tmp_path, "shard-00001.pt")
    assert io.TEMP_NAME.fullmatch(left.name)["name"] == "shard-00001.pt"
    assert io.remove_orphans(tmp_path) == [left]
    assert [p.name for p in tmp_path.iterdir()] == ["shard-00000.pt"]
    assert capsys.readouterr().err == (f"warning: removed 1 temporary file(s) that an interrupted write left in "
                                       f"{tmp_path}: {left.name}\n")
    assert io.remove_orphans(tmp_path) == [] and capsys.readouterr().err == ""  # nothing left: no word
    assert io.remove_orphans(tmp_path / "absent") == []  # a first run: no folder yet


def test_only_files_named_exactly_as_atomic_path_names_them_go(tmp_path):
    ours = [".a.csv.abcd_123.tmp", "..iqabench-download.json.0a1b2c3d.tmp"]
    others = [".a.csv.tmp", ".a.csv.abc.tmp", "a.csv.abcd1234.tmp", ".a.csv.ABCD1234.tmp", ".a.csv.abcd1234.tmp.bak",
              ".a.csv.abcd12345.tmp.x", "results.md", ".step-00000001.pt.x.tmp"]
    for name in ours + others:
        (tmp_path / name).write_text("x")
    (tmp_path / ".dir.abcd1234.tmp").mkdir()  # a folder, not a temp file
    os.symlink(tmp_path / "results.md", tmp_path / ".link.abcd1234.tmp")  # atomic_path makes no links
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".b.csv.abcd1234.tmp").write_text("x")  # not below the folder
    assert sorted(p.name for p in io.remove_orphans(tmp_path)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        others + [".dir.abcd1234.tmp", ".link.abcd1234.tmp", "sub"])
    assert (tmp_path / "sub" / ".b.csv.abcd1234.tmp").exists()


def test_names_limits_the_removal_to_those_files(tmp_path):
    for name in (".kadid10k.lock.json.abcd1234.tmp", ".live.lock.json.abcd1234.tmp"):
        (tmp_path / name).write_text("x")
    removed = io.remove_orphans(tmp_path, names=("kadid10k.lock.json",))
    assert [p.name for p in removed] == [".kadid10k.lock.json.abcd1234.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == [".live.lock.json.abcd1234.tmp"]  # another download's, live


@pytest.mark.parametrize("ignore_file", [".gitignore", ".dvcignore"])
def test_git_and_dvc_ignore_the_temp_files_and_nothing_else(tmp_path, ignore_file):
    # .dvcignore has gitignore syntax; a pattern no file matches leaves an output folder's hash as it was.
    patterns = [line for line in (REPO / ignore_file).read_text().splitlines()
                if line.endswith(".tmp") and not line.startswith("#")]
    assert patterns == [".*.????????.tmp"]
    left = _killed_write(tmp_path, "results.md")
    assert fnmatch.fnmatchcase(left.name, patterns[0])
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not [p for p in tracked.splitlines() if fnmatch.fnmatchcase(Path(p).name, patterns[0])]


@needs_dev_full
def test_a_full_disk_is_one_error_naming_the_output_and_leaves_it_as_it_was(tmp_path):
    target = tmp_path / "within.csv"
    target.write_text("old\n")
    with pytest.raises(io.OutputWriteError) as err:
        with io.atomic_path(target) as tmp:
            with open("/dev/full", "wb") as fh:  # every write is ENOSPC
                tmp.write_text("new, half")
                fh.write(b"x" * 100_000)
    assert str(err.value) == f"cannot write {target} (No space left on device): {FULL}"
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert err.value.strerror == "No space left on device"  # callers' "({err.strerror or err})" reads as before
    assert [p.name for p in tmp_path.iterdir()] == ["within.csv"] and target.read_text() == "old\n"


@pytest.mark.parametrize("where", ["os.replace", "tempfile.mkstemp"])
@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EROFS, "Read-only file system"),
                                          (errno.EACCES, "Permission denied")])
def test_a_failed_rename_or_temp_file_names_the_output(tmp_path, monkeypatch, where, code, reason):
    module, name = where.split(".")

    def fail(*args, **kwargs):
        raise OSError(code, reason, str(args[0]) if args else None)
    monkeypatch.setattr(f"{module}.{name}", fail)
    with pytest.raises(io.OutputWriteError) as err:
        io.write_json(tmp_path / "metrics.json", {"srcc": 0.5})
    assert str(err.value) == f"cannot write {tmp_path / 'metrics.json'} ({reason}): {FULL}"
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_of_the_folder_is_said_so(tmp_path):
    (tmp_path / "reports").write_text("a file")
    with pytest.raises(io.OutputWriteError, match=r"^cannot write .*reports/results.md \(.*\): a file stands where "
                                                  r"one of its folders should be: move it aside, then run again$"):
        io.write_text(tmp_path / "reports" / "results.md", "x")


class _FillsUp(pyio.RawIOBase):
    """A disk that fills after ``room`` bytes: torch.save reports it as RuntimeError "unexpected pos" over the
    OSError."""

    def __init__(self, fh, room: int):
        self.fh, self.room = fh, room

    def writable(self) -> bool:
        return True

    def write(self, block) -> int:
        if len(block) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(block)
        return self.fh.write(block)


@needs_dev_full
@pytest.mark.parametrize("disk, raised", [("fills up", RuntimeError), ("/dev/full", OSError)])
def test_write_torch_on_a_full_disk_names_the_shard_not_unexpected_pos(tmp_path, monkeypatch, disk, raised):
    real = torch.save

    def onto_a_full_disk(obj, fh, *args, **kwargs):
        if disk == "fills up":
            return real(obj, _FillsUp(fh, 100), *args, **kwargs)
        fh.write(b"PK half")
        with open(disk, "wb") as full:  # torch's RuntimeError, then an OSError on closing over it
            real(obj, full, *args, **kwargs)
    monkeypatch.setattr(torch, "save", onto_a_full_disk)
    target = tmp_path / "corpus" / "shard-00000.pt"
    with pytest.raises(io.OutputWriteError) as err:
        io.write_torch(target, {"images": torch.zeros(4096, dtype=torch.uint8)})
    assert str(err.value) == f"cannot write {target} (No space left on device): {FULL}"
    assert type(err.value.__cause__) is raised
    assert list((tmp_path / "corpus").iterdir()) == []


def test_a_nested_write_keeps_its_own_name_and_other_errors_their_type(tmp_path, monkeypatch):
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: _no_space() if str(b).endswith(".json") else real(a, b))
    with pytest.raises(io.OutputWriteError, match=r"^cannot write .*/step-1.json \(No space"):
        with io.atomic_path(tmp_path / "step-1.pt") as tmp:  # a checkpoint and its sidecar
            tmp.write_bytes(b"x")
            io.write_json(tmp_path / "step-1.json", {})
    with pytest.raises(FileNotFoundError):  # reading another file inside the block is no write failure
        with io.atomic_path(tmp_path / "out.txt"):
            (tmp_path / "missing.txt").read_text()
    with pytest.raises(RuntimeError, match="a bug"):
        with io.atomic_path(tmp_path / "out.txt"):
            raise RuntimeError("a bug")
    assert list(tmp_path.iterdir()) == []


def test_a_stage_prints_a_failed_write_as_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", _no_space)
    with pytest.raises(SystemExit) as stop, stage_errors.one_line("evaluate"):
        io.write_text(tmp_path / "within.csv", "x")
    target = tmp_path / "within.csv"
    assert stop.value.code == f"error: evaluate: cannot write {target} (No space left on device): {FULL}"


def test_valid_writes_keep_their_bytes(tmp_path):
    blob = {"images": torch.arange(256, dtype=torch.uint8).reshape(4, 64), "config_hash": "abc"}
    expected = pyio.BytesIO()
    torch.save(blob, expected)
    assert io.write_torch(tmp_path / "a.pt", blob).read_bytes() == expected.getvalue()
    assert io.write_json(tmp_path / "m.json", {"srcc": 0.1 + 0.2}).read_text() == '{\n  "srcc": 0.3\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "m.json"]


def test_every_stage_ends_a_failed_write_in_one_line_through_its_timing_block(tmp_path, monkeypatch):
    # Each stage writes its outputs inside timing.timed: a full disk there was a traceback (torch's "unexpected pos").
    from iqabench import timing

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        with timing.timed("extract-mine"):
            with io.atomic_path(tmp_path / "out.npz"):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert str(info.value) == (f"error: extract-mine: cannot write {tmp_path / 'out.npz'} (No space left on device): "
                               "free space there or make the folder writable, then run again")
    assert not (tmp_path / "reports").exists() and not list(tmp_path.iterdir())  # no timing file, no temp file


def test_the_fingerprint_stage_ends_a_failed_write_in_one_line(tmp_path, monkeypatch):
    # The always-run stage writes outside any timing block: a full disk was a traceback.
    import runpy

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # its params.yaml; the fingerprints go to tmp_path
    monkeypatch.setattr(io, "write_json", lambda path, *a, **k: (_ for _ in ()).throw(
        io.OutputWriteError(path, OSError(errno.ENOSPC, "No space left on device"))))
    monkeypatch.setattr(sys, "argv", ["stages/fingerprint.py", "--out", str(tmp_path / "fp")])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(repo / "stages" / "fingerprint.py"), run_name="__main__")
    assert str(info.value).startswith(f"error: fingerprint: cannot write {tmp_path / 'fp'}/")
    assert str(info.value).endswith("(No space left on device): free space there or make the folder writable, "
                                    "then run again")
