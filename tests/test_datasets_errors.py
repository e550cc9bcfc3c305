"""`iqabench datasets add / add-generic / status`: bad input gives one clear line, and nothing is registered."""
from __future__ import annotations

import json

import numpy as np
import scipy.io
from typer.testing import CliRunner

from fakeserver import write_image
from iqabench.datasets.cli import app


def _invoke(registry, *args):
    result = CliRunner().invoke(app, ["--registry", str(registry), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _generic(tmp_path, rows: str, *extra):
    folder = tmp_path / "imgs"
    for name in ("a.png", "b.png"):
        write_image(folder / name)
    write_image(tmp_path / "other" / "x.jpg")
    csv = tmp_path / "scores.csv"
    csv.write_text("image,MOS\n" + rows)
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add-generic", "mine", "--folder", str(folder), "--csv", str(csv),
                     "--lo", "1", "--hi", "5", *extra)
    return result, registry


def test_row_outside_the_folder_is_refused_with_its_line(tmp_path):
    result, registry = _generic(tmp_path, "a.png,3\n../other/x.jpg,4\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "scores.csv line 3: image '../other/x.jpg' is outside --folder" in " ".join(result.output.split())


def test_absolute_row_is_refused_with_its_line(tmp_path):
    result, registry = _generic(tmp_path, f"{tmp_path / 'other' / 'x.jpg'},4\nb.png,2\n")
    assert result.exit_code == 1 and not registry.exists()
    assert "line 2" in result.output and "is outside --folder" in " ".join(result.output.split())


def test_empty_scale_is_refused_before_reading(tmp_path):
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add-generic", "mine", "--folder", str(tmp_path / "nowhere"), "--csv",
                     str(tmp_path / "none.csv"), "--lo", "5", "--hi", "5")
    assert result.exit_code == 1 and not registry.exists()
    assert "--hi (5) must be greater than --lo (5)" in result.output
    assert "Traceback" not in result.output


def test_literal_nan_is_quoted_not_called_blank(tmp_path):
    result, registry = _generic(tmp_path, "a.png,NaN\nb.png,\n")
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and not registry.exists()
    assert "line 2: 'MOS' is 'NaN', not a number (2 such row(s))" in out


def test_blank_score_is_still_called_blank(tmp_path):
    result, _ = _generic(tmp_path, "a.png,3\nb.png,\n")
    assert "line 3: 'MOS' is blank, not a number" in " ".join(result.output.split())


def test_clive_mat_with_a_duplicated_image_is_shown_cleanly(tmp_path):
    base = tmp_path / "ChallengeDB_release"
    names = [f"t{i}.bmp" for i in range(1, 8)] + ["10.bmp", "10.bmp"]
    write_image(base / "Images" / "10.bmp")
    (base / "Data").mkdir(parents=True)
    scipy.io.savemat(base / "Data" / "AllImages_release.mat",
                     {"AllImages_release": np.array([[n] for n in names], dtype=object)})
    scipy.io.savemat(base / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([[50.0] * 7 + [60, 61]])})
    registry = tmp_path / "registry.json"
    result = _invoke(registry, "add", "clive", "--from", str(tmp_path), "--partial")
    assert result.exit_code == 1 and not registry.exists()
    assert "error:" in result.output and "10.bmp" in result.output and "listed twice" in result.output


def test_hand_edited_entry_without_path_names_the_entry(tmp_path):
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"kadid10k": {"kind": "spec", "images": 3}}))
    result = _invoke(registry)
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and "entry 'kadid10k' lacks 'path'" in out
    assert "iqabench datasets add kadid10k --from PATH" in out
    assert json.loads(registry.read_text()) == {"kadid10k": {"kind": "spec", "images": 3}}  # left as it was


def test_listed_but_absent_datasets_say_the_command_that_gets_them(tmp_path):
    from iqabench.datasets import DatasetError
    from iqabench.datasets.local import registered_manifest

    expected = {"koniq10k": "`iqabench datasets download koniq10k`",
                "spaq": "no public URL", "nonexistent": "`iqabench datasets add-generic nonexistent"}
    for name, says in expected.items():
        try:
            registered_manifest(name, tmp_path / "registry.json")
        except DatasetError as err:
            assert says in str(err), err
        else:
            raise AssertionError(f"{name}: no error")
    assert not (tmp_path / "registry.json").exists()


def test_fit_niqe_names_a_broken_kadis_image_without_a_traceback(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "params.yaml").write_text("niqe:\n  kadis_sample: 2\n")
    folder = tmp_path / "data" / "raw" / "kadis700k" / "ref_imgs"
    folder.mkdir(parents=True)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    stage = Path(__file__).resolve().parents[1] / "stages" / "fit_niqe.py"
    proc = subprocess.run([sys.executable, str(stage)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "fit_niqe: the pristine photos from kadis700k cannot be used" in proc.stderr and "broken.png" in proc.stderr
    assert not (tmp_path / "data" / "models").exists()
