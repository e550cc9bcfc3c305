"""BRISQUE, NIQE and full-reference metrics as model rows: names, shapes, direction, references."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iqabench import baselines, features, images, manifest, rows
from iqabench.datasets.embedded import PHOTOS, content_patches
from iqabench.distortions import distort
from iqabench.models.niqe import NiqeModel, fit_niqe

PATCH = 128  # the embedded sets' content patch size (params.yaml prepare.patch_size)
NIQE_TRAIN_PHOTOS = ("coffee", "chelsea", "rocket")  # the NIQE test photo, astronaut, is not among them


@pytest.fixture(scope="module")
def niqe_model() -> NiqeModel:
    return fit_niqe([images.from_uint8(PHOTOS[name]()) for name in NIQE_TRAIN_PHOTOS], progress=False)


@pytest.fixture
def in_repo_layout(tmp_path, monkeypatch, niqe_model) -> Path:
    """A working directory where `niqe` finds its model at the pipeline's path."""
    monkeypatch.chdir(tmp_path)
    niqe_model.save(baselines.NIQE_MODEL)
    return tmp_path


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    return torch.stack([tile for _, tile in content_patches("astronaut", PATCH, 3)])


@pytest.fixture(scope="module")
def blur_manifest(tmp_path_factory, patches) -> pd.DataFrame:
    """Two patches, each as its reference, a level-1 and a level-5 Gaussian blur, with PNGs on disk."""
    root = tmp_path_factory.mktemp("blurred")
    refs, rows = patches[:2], []
    for p, ref in enumerate(refs):
        ref_path = images.save_png(ref, root / "reference" / f"p{p}.png")
        for level in (0, 1, 5):
            img = ref if level == 0 else distort(ref[None], "gaussian_blur", level)[0]
            rows.append((images.save_png(img, root / "images" / f"p{p}_l{level}.png"), ref_path, level))
    paths, ref_paths, levels = zip(*rows)
    frame = manifest.make("synthetic-test", paths, [1.0 - lv / 5 for lv in levels], score_type="pseudo-MOS", lo=0, hi=1,
                          higher_is_better=True, score_source="test", reference=[str(r) for r in ref_paths],
                          level=[str(lv) for lv in levels], content_id=[Path(r).stem for r in ref_paths])
    return manifest.validate(frame)


@pytest.mark.parametrize("name, width", [("brisque", 36), ("niqe", 1)])
def test_no_reference_baselines_give_one_row_of_features_per_image(name, width, patches, in_repo_layout):
    values = rows.feature_fn(name)(patches)
    assert values.shape == (len(patches), width)
    assert torch.isfinite(values).all()
    # Different contents must not collapse onto one feature vector.
    assert not torch.allclose(values[0], values[1])


@pytest.mark.parametrize("name", [n for n in rows.ROWS if n.startswith("fr:") and rows.ROWS[n].stage is None])
def test_full_reference_rows_rank_a_level5_blur_below_a_level1_blur(name, blur_manifest):
    fn = rows.feature_fn(name)
    assert fn.needs_reference
    values = features.extract(fn, blur_manifest, batch_size=4)
    assert values.shape == (len(blur_manifest), 1) and np.isfinite(values).all()
    by_level = {lv: values[(blur_manifest["level"] == lv).to_numpy(), 0] for lv in ("0", "1", "5")}
    assert (by_level["1"] > by_level["5"]).all(), f"{name}: level 1 {by_level['1']} vs level 5 {by_level['5']}"
    # An undistorted image scores at least as high as its level-1 blur (PSNR capped, not inf).
    assert (by_level["0"] >= by_level["1"]).all()


def test_psnr_of_an_unchanged_image_is_the_finite_cap_above_any_real_change(patches):
    ref = patches[:1]
    one_level = ref.clone()
    one_level[0, 0, 0, 0] += 1 / 255 if ref[0, 0, 0, 0] < 0.5 else -1 / 255
    values = rows.feature_fn("fr:psnr")(torch.cat([ref, one_level]), torch.cat([ref, ref]))[:, 0]
    assert torch.isfinite(values).all()
    assert values[0] >= values[1]


def test_full_reference_model_on_a_dataset_without_references_names_the_dataset(patches, tmp_path):
    paths = [images.save_png(p, tmp_path / f"{i}.png") for i, p in enumerate(patches)]
    frame = manifest.validate(manifest.make("koniq10k", paths, [3.0] * len(paths), score_type="MOS", lo=1, hi=5,
                                            higher_is_better=True, score_source="human MOS"))
    with pytest.raises(features.MissingReferenceError, match="fr:ssim needs reference images; koniq10k has none"):
        features.extract(rows.feature_fn("fr:ssim"), frame)


def test_partly_missing_references_are_counted(blur_manifest):
    frame = blur_manifest.copy()
    frame.loc[frame.index[1], "reference"] = ""
    with pytest.raises(features.MissingReferenceError, match="has none for 1 of 6 images"):
        features.extract(rows.feature_fn("fr:vif"), frame)


def test_bf16_extraction_does_not_touch_the_baselines(blur_manifest, in_repo_layout):
    for name in ("fr:ssim", "brisque"):
        fn = rows.feature_fn(name)
        np.testing.assert_array_equal(features.extract(fn, blur_manifest, bf16=True),
                                      features.extract(fn, blur_manifest, bf16=False), err_msg=name)


def test_niqe_feature_is_higher_for_a_pristine_photo_than_for_its_blurred_copy(in_repo_layout):
    photo = images.from_uint8(PHOTOS["astronaut"]())[None, :, 64:448, :]
    blurred = distort(photo, "gaussian_blur", 3)
    values = rows.feature_fn("niqe")(torch.cat([photo, blurred]))[:, 0]
    assert values[0] > values[1], f"-NIQE pristine {values[0]:.3f} vs blurred {values[1]:.3f}"


def test_niqe_without_a_fitted_model_says_how_to_fit_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="stages/fit_niqe.py"):
        rows.feature_fn("niqe")


def test_unknown_full_reference_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match="fr:ms_ssim"):
        rows.feature_fn("fr:lpips")


def test_pristine_model_uses_kadis_when_present(tmp_path):
    kadis = tmp_path / "kadis700k"
    rng = np.random.default_rng(0)
    for i in range(4):
        photo = (images.from_uint8(PHOTOS["coffee"]())[:, :192, i * 64:i * 64 + 192]
                 + torch.from_numpy(rng.normal(0, 0.01, (3, 192, 192))).float()).clamp(0, 1)
        images.save_png(photo, kadis / "ref_imgs" / f"kadis{i}.png")
    assert baselines.pristine_source(tmp_path / "absent") == "embedded"
    assert baselines.pristine_source(kadis) == "kadis700k"
    assert len(baselines.pristine_images(kadis, kadis_sample=2)) == 2
    model = baselines.fit_pristine_niqe(kadis, kadis_sample=2)
    # 2 photos x 4 patches of 96 px, the sharpest 75% of each kept.
    assert model.mean.shape == (36,) and 2 <= model.num_patches <= 8


def test_a_nearly_flat_image_still_gets_finite_brisque_and_niqe_features(in_repo_layout):
    # synthetic-single holds this image: colour diffusion at level 5 leaves 10 grey levels, and
    # its neighbour products are one-signed, where the reference AGGD fit gives NaN. Dataset
    # members must get a prediction.
    tile = dict(content_patches("coffee", PATCH, 16))["coffee-r0c128"]
    nearly_flat = images.from_uint8(images.to_uint8(distort(tile[None], "color_diffusion", 5)[0]))[None]
    for name in ("brisque", "niqe"):
        assert torch.isfinite(rows.feature_fn(name)(nearly_flat)).all(), name


def test_a_constant_image_gets_undefined_brisque_features_and_the_rest_are_kept(patches, tmp_path, in_repo_layout):
    # The features contract: NaN where a row is undefined; the protocol drops and counts such images.
    flat = torch.full_like(patches[0], 0.5)
    paths = [images.save_png(patches[0], tmp_path / "textured.png"), images.save_png(flat, tmp_path / "flat.png")]
    frame = manifest.validate(manifest.make("koniq10k", paths, [3.0, 1.0], score_type="MOS", lo=1, hi=5,
                                            higher_is_better=True, score_source="human MOS"))
    values = features.extract(rows.feature_fn("brisque"), frame, show_progress=False)
    assert features.undefined_images(values).tolist() == [False, True]
    with pytest.raises(ValueError, match=r"undefined \(NaN\) on every one of the 1 images"):
        features.extract(rows.feature_fn("brisque"), frame.iloc[1:].reset_index(drop=True), show_progress=False)


def test_niqe_is_nan_on_an_image_without_a_defined_patch_and_finite_beside_it():
    # A dataset must not end on one image (seed 1 of the embedded set once held such a patch): NIQE is
    # undefined there, so that image's score is NaN (extract keeps it as missing) and the others are scored.
    from iqabench.models.niqe import NiqeModel, niqe_score

    model = NiqeModel(mean=np.zeros(36), covariance=np.eye(36), patch_size=32, sharpness_threshold=0.75,
                      num_patches=1)
    textured = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    flat = torch.full((1, 3, 64, 64), 0.5)
    scores = niqe_score(torch.cat([textured, flat]), model)
    assert torch.isfinite(scores[0]) and torch.isnan(scores[1])
