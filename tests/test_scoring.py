"""`iqabench score`: any no-reference row of the study rates a user's photos as the study saw its images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data

from iqabench import features, images, regressor, rows, scoring
from iqabench.models import encoders, preprocessing


@pytest.fixture
def study_outputs(tmp_path):
    """An encoder file and the regressor `evaluate` would have fitted for it, as `file:PATH` rows."""
    torch.manual_seed(0)
    encoder = tmp_path / "enc.pt"
    encoders.save(encoders.Encoder(arch="small_cnn", width=4).eval(), encoder)
    model = f"file:{encoder}"
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(40, 3, 48, 48)).astype(np.float32)
    feats = preprocessing.pooled_features(encoders.load(encoder), torch.from_numpy(train)).numpy()
    regressor.fit(feats, rng.uniform(size=40), alpha=0.1, standardize=False,
                dataset="synthetic-single").save(regressor.path_for(model, tmp_path / "regressors"))
    return model, tmp_path / "regressors"


def test_a_photo_is_scored_at_the_studys_resolution(study_outputs, tmp_path):
    model, regressors = study_outputs
    big = tmp_path / "big.png"
    images.save_png(images.from_uint8(data.astronaut()), big)  # 512 x 512
    small = tmp_path / "small.png"
    images.save_png(images.resize_short_side(images.load(big), 256), small)
    scored = scoring.score_images([big, small], model, regressors, max_short_side=256)
    assert list(scored["width"]) == [512, 256] and list(scored["height"]) == [512, 256]
    # Downscaled to the same short side first, the two files are the same picture to the model.
    assert scored["quality"].iloc[0] == pytest.approx(scored["quality"].iloc[1], abs=0.5)
    full = scoring.score_images([big], model, regressors, max_short_side=0)  # whole
    assert full["quality"].iloc[0] != pytest.approx(scored["quality"].iloc[0], abs=1e-3)
    assert scored["scale"].iloc[0] == "0-100, as synthetic-single scores (higher is better)"


def test_a_photo_is_read_at_the_resolution_the_regressor_was_fitted_at(study_outputs, tmp_path):
    # A study at the papers' whole images (extract.max_short_side: 0) once had its photos scored at 512 px.
    model, regressors = study_outputs
    path = regressor.path_for(model, regressors)
    assert regressor.load(path).max_short_side is None  # a file that does not record it: the default, 512
    photo = tmp_path / "photo.png"
    images.save_png(images.from_uint8(data.astronaut()), photo)  # 512 x 512
    at = {side: scoring.score_images([photo], model, regressors, max_short_side=side)["quality"].iloc[0]
          for side in (0, 256)}
    assert scoring.score_images([photo], model, regressors)["quality"].iloc[0] == at[0]  # 512 px: whole
    for recorded in (256, 0):
        fitted = regressor.load(path)
        regressor.Regressor(fitted.coef, fitted.intercept, fitted.mean, fitted.scale, fitted.alpha, fitted.dataset,
                            max_short_side=recorded).save(path)
        assert regressor.load(path).max_short_side == recorded
        assert scoring.score_images([photo], model, regressors)["quality"].iloc[0] == at[recorded]


def test_full_reference_rows_and_missing_regressors_are_refused_clearly(study_outputs, tmp_path):
    model, regressors = study_outputs
    photo = tmp_path / "p.png"
    images.save_png(images.from_uint8(data.coffee()), photo)
    with pytest.raises(ValueError, match="full-reference metric.*pristine reference"):
        scoring.score_images([photo], "fr:ssim", regressors)
    with pytest.raises(FileNotFoundError, match=r"arniqa\.npz does not exist; run `dvc repro evaluate`"):
        scoring.score_images([photo], "arniqa", regressors)


def test_each_photo_is_decoded_once_and_scored_as_extract_would(study_outputs, tmp_path, monkeypatch):
    # The size check read every photo and extraction read it again: twice the decoding for nothing.
    model, regressors = study_outputs
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    images.save_png(images.from_uint8(data.astronaut()), big)  # 512 x 512: downscaled to 256
    images.save_png(images.from_uint8(data.coffee()[:100, :120]), small)  # below the limit: as read
    decodes = []
    real = images.load_rgb
    monkeypatch.setattr(images, "load_rgb", lambda path, **kw: decodes.append(str(path)) or real(path, **kw))
    scored = scoring.score_images([big, small, big], model, regressors, max_short_side=256)
    assert sorted(decodes) == sorted([str(big), str(small)])  # a file listed twice is read once too
    assert list(scored["width"]) == [512, 120, 512] and list(scored["height"]) == [512, 100, 512]
    # What extract makes of the files itself (its own downscaling): the same scores.
    frame = pd.DataFrame({"image": [str(big), str(small)]})
    feats = features.extract(rows.feature_fn(model), frame, batch_size=1, max_short_side=256, show_progress=False,
                             load=scoring.load_displayed)
    expected = (regressor.load(regressor.path_for(model, regressors)).predict(feats) * 100.0).round(2)
    assert list(scored["quality"]) == [expected[0], expected[1], expected[0]]

def test_photos_beyond_the_memory_budget_are_decoded_again_with_the_same_scores(study_outputs, tmp_path,
                                                                                monkeypatch):
    # Every photo was held decoded until the model ran: `score ~/Pictures/*.jpg` grew ~4 MB a photo.
    model, regressors = study_outputs
    paths = []
    for i, crop in enumerate([(0, 0), (100, 50), (200, 120)]):
        paths.append(tmp_path / f"p{i}.png")
        images.save_png(images.from_uint8(data.astronaut()[crop[0]:crop[0] + 160, crop[1]:crop[1] + 200]), paths[-1])
    everything = scoring.score_images(paths, model, regressors)
    one_photo = 3 * 160 * 200 * 4
    monkeypatch.setattr(scoring, "KEEP_BYTES", one_photo)  # room for the first photo only
    decodes = []
    real = images.load_rgb
    monkeypatch.setattr(images, "load_rgb", lambda path, **kw: decodes.append(str(path)) or real(path, **kw))
    budgeted = scoring.score_images(paths, model, regressors)
    assert sorted(decodes) == sorted(map(str, [paths[0], paths[1], paths[2], paths[1], paths[2]]))
    pd.testing.assert_frame_equal(budgeted, everything)


def test_extract_downscales_only_images_above_the_limit(tmp_path):
    paths = []
    for name, size in (("a", (300, 200)), ("b", (90, 120))):
        paths.append(tmp_path / f"{name}.png")
        images.save_png(torch.rand(3, *size), paths[-1])
    seen = []

    def record(batch):
        seen.append(tuple(batch.shape[2:]))
        return batch.mean(dim=(2, 3))

    features.extract(record, pd.DataFrame({"image": [str(p) for p in paths]}), max_short_side=100,
                     show_progress=False)
    assert sorted(seen) == [(90, 120), (150, 100)]
