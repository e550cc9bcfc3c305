"""prepare empties its --out first, so it empties only a previous output of its own, and only once the dataset is
known to be there: `stages/prepare.py tid2031 --out data` (a misspelt name and a wrong --out) deleted the whole
data/ folder (downloads, encoders, the git-ignored registry) before the name was even looked up."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from PIL import Image

from iqabench import manifest, params
from iqabench.datasets import embedded
from iqabench.datasets.local import register_generic, registered_manifest

REPO = Path(__file__).resolve().parents[1]
REFUSED = "so it is not a prepare output, and the stage empties --out first: give the dataset's own folder"


def _prepare(monkeypatch, capsys, cwd: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(cwd)  # the guard stops before params.yaml is read; a run past it reads the repository's
    monkeypatch.setattr(params, "repo_root", lambda: REPO)
    monkeypatch.setattr(sys, "argv", ["stages/prepare.py", *args])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / "stages" / "prepare.py"), run_name="__main__")
    out, err = capsys.readouterr()
    return info.value.code, " ".join(out.split()), " ".join(err.split())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _workspace(root: Path) -> dict[str, bytes]:
    """A repository's data/ and reports/ as a user has them: nothing in them is a prepare output."""
    for rel, text in {"data/registry.json": "{}", "data/raw/kadid10k/dmos.csv": "image,dmos\n",
                      "data/encoders/contrique.pt": "weights", "data/prepared/synthetic-single/manifest.csv": "m",
                      "reports/results.md": "# results", "notes.txt": "mine"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return _tree(root)


NOT_OURS = "holds files but no manifest.csv written by prepare"


@pytest.mark.parametrize("out, says", [("data", f"--out data {NOT_OURS}"),
                                       ("data/prepared", f"--out data/prepared {NOT_OURS}"),
                                       ("reports", f"--out reports {NOT_OURS}"),
                                       ("notes.txt", "--out notes.txt is a file")])
@pytest.mark.parametrize("name", ["tid2031", "synthetic-single"])
def test_an_out_that_is_not_a_prepare_output_is_refused_before_anything_is_emptied(monkeypatch, tmp_path, capsys,
                                                                                   out, says, name):
    before = _workspace(tmp_path)
    code, _, err = _prepare(monkeypatch, capsys, tmp_path, name, "--out", out)
    assert code == 2 and "usage: prepare.py [-h] --out DIR dataset" in err
    assert f"{says}, {REFUSED}" in err
    assert _tree(tmp_path) == before  # every file survives, and nothing was written


def _generic(root: Path, name: str) -> None:
    """A registered generic dataset of 4 images (data/registry.json under ``root``, the working folder)."""
    photos = root / "photos"
    photos.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (40 * i, 20, 200 - 30 * i)).save(photos / f"im{i}.png")
    (root / "mos.csv").write_text("image,mos\n" + "".join(f"im{i}.png,{1 + i}\n" for i in range(4)))
    register_generic(name, photos, root / "mos.csv", "image", "mos", 1.0, 5.0, True, check_pixels=False,
                     progress=False)


def test_a_misspelt_name_leaves_the_previous_output_in_place(monkeypatch, tmp_path, capsys):
    """A registry dataset is read before its --out is emptied (an embedded one writes into it: its name is known)."""
    previous = tmp_path / "prep" / "tid2013"
    previous.mkdir(parents=True)
    (previous / "manifest.csv").write_text(",".join(manifest.COLUMNS) + "\nthe previous run's\n")
    (previous / "images").mkdir()
    (previous / "images" / "a.png").write_bytes(b"png")
    before = _tree(tmp_path)
    code, _, err = _prepare(monkeypatch, capsys, tmp_path, "tid2031", "--out", "prep/tid2013")
    assert code == 1 and "prepare tid2031: tid2031: not here yet; it is not a known dataset" in err
    assert _tree(tmp_path) == before
    code, _, err = _prepare(monkeypatch, capsys, tmp_path, "tid2031", "--out", "prep/new")  # a new folder: not made
    assert code == 1 and "not here yet" in err and not (tmp_path / "prep" / "new").exists()


def test_a_rerun_over_a_previous_output_empties_it_and_writes_the_same_manifest(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    _generic(tmp_path, "mine")
    code, out, _ = _prepare(monkeypatch, capsys, tmp_path, "mine", "--out", "prep/mine")
    assert code == 0 and "mine: 4 images, 4 contents -> prep/mine/manifest.csv" in out
    first = (tmp_path / "prep" / "mine" / "manifest.csv").read_bytes()
    (tmp_path / "prep" / "mine" / "stale.png").write_bytes(b"another parameter set's")
    code, _, _ = _prepare(monkeypatch, capsys, tmp_path, "mine", "--out", "prep/mine")
    assert code == 0 and _tree(tmp_path / "prep" / "mine") == {"manifest.csv": first}  # emptied, same bytes
    (tmp_path / "empty").mkdir()  # an empty folder is no one's files
    code, _, _ = _prepare(monkeypatch, capsys, tmp_path, "mine", "--out", "empty")
    assert code == 0 and (tmp_path / "empty" / "manifest.csv").is_file()


@pytest.mark.parametrize("killed_in", ["build", "manifest.write"])
def test_an_interrupted_run_is_emptied_by_the_same_command_run_again(monkeypatch, tmp_path, capsys, killed_in):
    """A killed embedded prepare left images and a tmp file but no manifest.csv; the guard refused the same command
    run again until the folder was removed by hand. Its mark, made before any image, now says the folder is ours."""
    monkeypatch.chdir(tmp_path)
    _generic(tmp_path, "mine")
    frame, seen, kill = registered_manifest("mine"), [], []  # the frame stands for the embedded set's (fast)

    def build(name, out_dir, **_):  # embedded.build, writing into out_dir
        seen.append(sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else None)
        (out_dir / "images").mkdir(parents=True)
        (out_dir / "images" / "a_00000.png").write_bytes(b"png")
        if kill == ["build"]:
            (out_dir / "images" / ".a_00001.png.k2x9ab12.tmp").write_bytes(b"half an image")
            raise KeyboardInterrupt
        return frame.copy()

    real_write = manifest.write

    def write(*args, **kwargs):
        if kill == ["manifest.write"]:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(embedded, "build", build)
    monkeypatch.setattr(manifest, "write", write)
    code, _, _ = _prepare(monkeypatch, capsys, tmp_path, "synthetic-single", "--out", "prep/synthetic-single")
    clean = _tree(tmp_path / "prep" / "synthetic-single")
    assert code == 0 and set(clean) == {"manifest.csv", "images/a_00000.png"}  # no mark left: DVC hashes it
    kill.append(killed_in)
    with pytest.raises(KeyboardInterrupt):
        _prepare(monkeypatch, capsys, tmp_path, "synthetic-single", "--out", "prep/synthetic-single")
    left = set(_tree(tmp_path / "prep" / "synthetic-single"))
    assert "manifest.csv" not in left and ".prepare-incomplete" in left and "images/a_00000.png" in left
    kill.clear()
    code, out, err = _prepare(monkeypatch, capsys, tmp_path, "synthetic-single", "--out", "prep/synthetic-single")
    assert code == 0 and REFUSED not in err and "synthetic-single: 4 images" in out
    assert _tree(tmp_path / "prep" / "synthetic-single") == clean  # emptied first: the same bytes, no tmp, no mark
    assert seen == [[".prepare-incomplete"]] * 3  # the mark is in before the first image


def test_a_folder_shaped_like_a_partial_output_without_the_mark_is_still_refused(monkeypatch, tmp_path, capsys):
    for rel in ("images/a_00000.png", "reference/a.png", "images/.a_00001.png.k2x9ab12.tmp"):
        (tmp_path / "mine" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "mine" / rel).write_bytes(b"mine")
    before = _tree(tmp_path)
    code, _, err = _prepare(monkeypatch, capsys, tmp_path, "synthetic-single", "--out", "mine")
    assert code == 2 and f"--out mine {NOT_OURS}, {REFUSED}" in err
    assert _tree(tmp_path) == before


def test_a_users_own_manifest_csv_does_not_make_a_folder_prepares(monkeypatch, tmp_path, capsys):
    # The guard trusted any file named manifest.csv: a dataset folder keeping its scores under that name was emptied.
    for rel, text in (("mine/manifest.csv", "image,MOS\na.png,3.1\n"), ("mine/a.png", "png")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    before = _tree(tmp_path)
    code, _, err = _prepare(monkeypatch, capsys, tmp_path, "synthetic-single", "--out", "mine")
    assert code == 2 and f"--out mine {NOT_OURS}, {REFUSED}" in err
    assert _tree(tmp_path) == before


def test_a_run_killed_while_emptying_leaves_a_folder_the_same_command_accepts(monkeypatch, tmp_path, capsys):
    # The mark went in after rmtree: a kill that removed manifest.csv before the images left neither.
    out = tmp_path / "prep" / "synthetic-single"
    for rel in ("manifest.csv", "images/a.png", "images/b.png"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(",".join(manifest.COLUMNS) + "\n" if rel == "manifest.csv" else "png")
    real_unlink = Path.unlink

    def unlink(self, *args, **kwargs):
        real_unlink(self, *args, **kwargs)
        if self.name == "manifest.csv":
            raise KeyboardInterrupt  # killed right after the manifest went, the images still there

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(KeyboardInterrupt):
        _prepare(monkeypatch, capsys, tmp_path, "synthetic-single", "--out", "prep/synthetic-single")
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert (out / ".prepare-incomplete").is_file() and not (out / "manifest.csv").exists()
    guard = runpy.run_path(str(REPO / "stages" / "prepare.py"))["_not_a_prepare_output"]
    assert guard(out) is None  # the same command will empty it
