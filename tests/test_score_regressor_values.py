"""A regressor file whose values are wrong (not only its keys) is refused by name, with the fix, before any image
is scored: a NaN coefficient scored every photo NaN, a zero scale inf, an array intercept was a TypeError
traceback, max_short_side 2.7 was read as 2 px; features of another width named neither file nor fix."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from iqabench import images, regressor, scoring
from iqabench.cli import app
from iqabench.models import encoders

FIX = "the file is damaged or was not written by iqabench: re-fit it with `dvc repro evaluate`"


def _good() -> dict:
    """The arrays Regressor.save writes for 3 features."""
    fitted = regressor.fit(np.random.default_rng(0).normal(size=(20, 3)), np.linspace(0, 1, 20), alpha=0.1,
                           standardize=True, dataset="d", max_short_side=512)
    return {"coef": fitted.coef, "intercept": fitted.intercept, "mean": fitted.mean, "scale": fitted.scale,
            "alpha": fitted.alpha, "dataset": fitted.dataset, "max_short_side": fitted.max_short_side}


def _write(tmp_path, **changes):
    arrays = {**_good(), **changes}
    path = tmp_path / "r.npz"
    with open(path, "wb") as fh:
        np.savez(fh, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("changes, problem", [
    ({"coef": np.array([0.1, np.nan, 0.2])}, "'coef' holds NaN or infinite values"),
    ({"coef": np.array([0.1, np.inf, 0.2])}, "'coef' holds NaN or infinite values"),
    ({"scale": np.zeros(3)}, "'scale' holds 0; every feature is divided by it, so it must be above 0"),
    ({"scale": np.full(3, np.nan)}, "'scale' holds NaN or infinite values"),
    ({"intercept": np.array([0.5, 0.5])}, "'intercept' is an array of shape (2,), not one value"),
    ({"mean": np.zeros(4)}, "'mean' has shape (4,), 'coef' (3,); they must match"),
    ({"coef": np.array(["a", "b", "c"])}, "'coef' is not a number (dtype <U1)"),
    ({"max_short_side": -5}, "'max_short_side' is -5; it must be 0 (whole images) or a whole number of pixels, "
                             f"at least {images.MIN_SIDE}"),
    ({"max_short_side": 8}, "'max_short_side' is 8;"),
    ({"max_short_side": 2.7}, "'max_short_side' is 2.7;"),
    ({"max_short_side": 600.5}, "'max_short_side' is 600.5;"),
])
def test_a_bad_value_is_named_with_its_key_and_the_fix(tmp_path, changes, problem):
    path = _write(tmp_path, **changes)
    with pytest.raises(ValueError) as err:
        regressor.load(path)
    assert str(err.value).startswith(f"{path}: {problem}") and str(err.value).endswith(FIX)


@pytest.mark.parametrize("side, read", [(0, 0), (512, 512), (np.int32(300), 300), (512.0, 512), (None, None)])
def test_the_values_regressor_save_writes_still_load(tmp_path, side, read):
    fitted = regressor.load(_write(tmp_path, max_short_side=side))
    good = _good()
    assert fitted.max_short_side == read and type(fitted.max_short_side) in (int, type(None))
    assert np.array_equal(fitted.coef, good["coef"]) and fitted.intercept == good["intercept"]
    assert np.array_equal(fitted.scale, good["scale"]) and fitted.dataset == "d"


def test_score_names_the_file_and_the_fix(tmp_path):
    encoder = tmp_path / "enc.pt"
    encoders.save(encoders.Encoder(arch="small_cnn", width=4).eval(), encoder)
    model = f"file:{encoder}"
    folder = tmp_path / "regressors"
    folder.mkdir()
    bad = _write(tmp_path, coef=np.full(3, np.nan))
    bad.rename(regressor.path_for(model, folder))
    Image.new("RGB", (64, 64), "grey").save(tmp_path / "p.png")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "p.png"), "--model", model, "--regressors", str(folder)])
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"error: {regressor.path_for(model, folder)}: 'coef' holds NaN or infinite values; {FIX}" in out


def test_features_of_another_width_name_the_regressor_and_the_fix(tmp_path):
    """The regressor was fitted on a width-4 encoder's features (2 x 32); the file now holds a width-8 one."""
    torch.manual_seed(0)
    encoder = tmp_path / "enc.pt"
    model = f"file:{encoder}"
    folder = tmp_path / "regressors"
    regressor.fit(np.random.default_rng(0).normal(size=(20, 64)), np.linspace(0, 1, 20), alpha=0.1,
                  standardize=False, dataset="d").save(regressor.path_for(model, folder))
    encoders.save(encoders.Encoder(arch="small_cnn", width=8).eval(), encoder)
    Image.new("RGB", (64, 64), "grey").save(tmp_path / "p.png")
    with pytest.raises(ValueError) as err:
        scoring.score_images([tmp_path / "p.png"], model, folder)
    assert str(err.value).startswith(f"{regressor.path_for(model, folder)} expects 64 features per image, but "
                                     f"{model} gives 128: it was fitted on the features of another encoder")
    assert f"re-fit it with `dvc repro evaluate` ('{model}' in params.yaml `models:`)" in str(err.value)


def test_a_regressor_fitted_for_a_row_whose_name_maps_to_the_same_file_is_refused(tmp_path, monkeypatch):
    """file:a/enc.pt and file:a_enc.pt share one regressor file name: score read the other row's regressor
    without a word (an ARNIQA encoder scored through CONTRIQUE's ridge)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    for path in (tmp_path / "a" / "enc.pt", tmp_path / "a_enc.pt"):
        encoders.save(encoders.Encoder(arch="small_cnn", width=4).eval(), path)
    folder = tmp_path / "regressors"
    assert regressor.path_for("file:a/enc.pt", folder) == regressor.path_for("file:a_enc.pt", folder)
    fitted = regressor.fit(np.random.default_rng(0).normal(size=(20, 64)), np.linspace(0, 1, 20), alpha=0.1,
                           standardize=False, dataset="d", model="file:a/enc.pt")
    fitted.save(regressor.path_for("file:a/enc.pt", folder))
    assert regressor.load(regressor.path_for("file:a/enc.pt", folder)).model == "file:a/enc.pt"
    Image.new("RGB", (64, 64), "grey").save(tmp_path / "p.png")
    with pytest.raises(ValueError, match=r"was fitted for the row 'file:a/enc.pt', not 'file:a_enc.pt' \(both names "
                                         r"map to that file\); score with --model 'file:a/enc.pt'"):
        scoring.score_images([tmp_path / "p.png"], "file:a_enc.pt", folder)
    assert len(scoring.score_images([tmp_path / "p.png"], "file:a/enc.pt", folder)) == 1
    with pytest.raises(ValueError, match="'model' is not a name"):
        regressor.load(_write(tmp_path, model=np.array([1, 2])))
