"""`iqabench score` and `iqabench report` find the repository's files from any folder in it (their defaults were
relative to the cwd: from a subfolder, "run `dvc repro evaluate`"), say so outside any repository, and name a
wrong --regressors or a model file that is no regular file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from iqabench import params, regressor, rows
from iqabench.cli import app
from iqabench.models import encoders, preprocessing


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def repo(tmp_path):
    """A repository with the pipeline's contrique encoder and its fitted regressor, and a photo in a subfolder."""
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "params.yaml").write_text("seed: 0\n")
    torch.manual_seed(0)
    encoder = encoders.Encoder(arch="small_cnn", width=4).eval()
    encoders.save(encoder, root / rows.CONTRIQUE_ENCODER)
    train = torch.from_numpy(np.random.default_rng(0).uniform(size=(20, 3, 48, 48)).astype(np.float32))
    regressor.fit(preprocessing.pooled_features(encoder, train).numpy(), np.linspace(0, 1, 20), alpha=0.1,
                  standardize=False, dataset="d", max_short_side=512).save(
        regressor.path_for("contrique", root / regressor.REGRESSORS))
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(
        root / "docs" / "photo.png")
    (root / "reports").mkdir()
    (root / "reports" / "results.md").write_text("# iqabench results\n\nall good\n")
    return root


def test_score_from_a_subfolder_reads_the_repositorys_encoder_and_regressor(repo, monkeypatch):
    monkeypatch.chdir(repo)
    code, at_root = _invoke("score", "docs/photo.png")
    assert code == 0, at_root
    monkeypatch.chdir(repo / "docs")
    code, below = _invoke("score", "photo.png")
    assert code == 0, below
    assert below == at_root.replace("docs/photo.png", "photo.png")  # the same score; the path as typed


def test_score_outside_any_repository_says_where_to_run_it(repo, tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError):
        params.repo_root()  # nothing above tmp_path holds a params.yaml
    code, out = _invoke("score", repo / "docs" / "photo.png")
    assert code == 1
    assert (f"error: no params.yaml in {tmp_path / 'elsewhere'} or its parents, so the fitted regressors "
            "(data/models/regressors) cannot be found: run `iqabench score` from the repository (any folder in it), "
            "or pass --regressors FOLDER") in out
    assert "dvc repro evaluate" not in out
    # With the folder given, the row's encoder is the one of the repository that holds it (fitted on it).
    code, out = _invoke("score", repo / "docs" / "photo.png", "--regressors", repo / regressor.REGRESSORS)
    assert code == 0, out
    monkeypatch.chdir(repo)
    assert _invoke("score", repo / "docs" / "photo.png") == (code, out)  # the same score as from inside
    # A regressor folder copied out of any repository: the row's own file is the one missing.
    copied = tmp_path / "elsewhere" / "regressors"
    copied.mkdir()
    (copied / "contrique.npz").write_bytes((repo / regressor.path_for("contrique")).read_bytes())
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out = _invoke("score", repo / "docs" / "photo.png", "--regressors", copied)
    assert code == 1 and "contrique: no params.yaml in" in out and "its file data/encoders/contrique.pt" in out


def test_regressors_given_a_file_or_a_missing_folder(repo, monkeypatch):
    monkeypatch.chdir(repo)
    fitted = regressor.path_for("contrique", regressor.REGRESSORS)
    code, out = _invoke("score", "docs/photo.png", "--regressors", fitted)
    assert code == 1 and f"error: --regressors {fitted} is a file; give the folder that holds the fitted " \
                         "regressors (one .npz per model, e.g. data/models/regressors), not one of them" in out
    assert "contrique.npz/contrique.npz" not in out
    code, out = _invoke("score", "docs/photo.png", "--regressors", "data/models/regresors")
    assert code == 1 and "error: --regressors data/models/regresors: no such folder" in out


def test_a_device_as_the_weights_file_is_not_called_missing(repo, monkeypatch):
    monkeypatch.chdir(repo)
    code, out = _invoke("score", "docs/photo.png", "--model", "file:/dev/null")
    assert code == 1
    assert "file:/dev/null: /dev/null is not a regular file (a device, pipe or socket); give the path of the " \
           "weights file" in out and "no such file" not in out


def test_report_from_a_subfolder_and_outside(repo, tmp_path, monkeypatch):
    """`iqabench report`'s default reports/results.md was relative to the cwd too (the same bug as score's)."""
    monkeypatch.chdir(repo / "docs")
    code, out = _invoke("report")
    assert code == 0 and "all good" in out
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out = _invoke("report")
    assert code == 1 and (f"error: no params.yaml in {tmp_path / 'elsewhere'} or its parents, so there is no "
                          "reports/results.md to show: run `iqabench report` from the repository (any folder in "
                          "it), or pass --path FILE") in out
    code, out = _invoke("report", "--path", repo / "reports" / "results.md")  # an explicit path works anywhere
    assert code == 0 and "all good" in out
