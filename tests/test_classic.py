"""BRISQUE features and NIQE: agreement with a reference, monotonicity, model I/O, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data, filters, util

from iqabench.models import nss
from iqabench.models.brisque import FEATURE_NAMES, brisque_features
from iqabench.models.niqe import NiqeModel, fit_niqe, niqe_score

SHARED = Path(__file__).resolve().parents[2] / "shared"
KONIQ = SHARED / "datasets" / "koniq10k-subset"
SHAPE_COLUMNS = [i for i, name in enumerate(FEATURE_NAMES) if name.endswith("shape")]
OTHER_COLUMNS = [i for i in range(36) if i not in SHAPE_COLUMNS]
GGD_COLUMNS = [0, 1, 18, 19]  # MSCN shape and variance at both scales


def as_batch(*arrays: np.ndarray) -> torch.Tensor:
    return torch.stack([torch.from_numpy(util.img_as_float(a)).permute(2, 0, 1).float() for a in arrays])


@pytest.fixture(scope="module")
def koniq_sample():
    pd = pytest.importorskip("pandas")
    from PIL import Image
    table = KONIQ / "reference_brisque_features.csv"
    if not table.is_file():
        pytest.skip(f"{table} is absent: the shared KonIQ subset lives at ../shared beside the checkout")
    reference = pd.read_csv(table).head(24)
    images = torch.stack([
        torch.from_numpy(np.array(Image.open(KONIQ / "512x384" / name).convert("RGB"))).permute(2, 0, 1)
        for name in reference["image_name"]]).float() / 255
    return images, reference.iloc[:, 1:].to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def koniq_features(koniq_sample):
    images, _ = koniq_sample
    return torch.cat([brisque_features(images[i:i + 8]) for i in range(0, len(images), 8)]).numpy()


def _flat_free(images: torch.Tensor) -> np.ndarray:
    grey = nss.luma(images)
    flat_fine = (nss.mscn(grey, "zeros")[0] == 0).flatten(1).any(dim=1)
    flat_coarse = (nss.mscn(nss.half_resize(grey), "zeros")[0] == 0).flatten(1).any(dim=1)
    return (~(flat_fine | flat_coarse)).numpy()


def test_brisque_matches_piq_reference_on_images_without_flat_windows(koniq_sample, koniq_features):
    """All 36 features agree with piq 0.8.0 (float64, YIQ luma rounded, 7x7 sigma 7/6, MATLAB
    bicubic half resize, grid step 0.001) from ../shared/datasets/koniq10k-subset/
    reference_brisque_features.csv, for those of the first 24 KonIQ images that have no
    perfectly flat 7x7 window: shapes to half a grid step, everything else to 1e-6 relative
    (the CSV holds 8 significant digits).

    Images with flat windows (saturated skies) are left out here on purpose: there the
    reference counts convolution round-off (+-1e-14) as AGGD samples, which depends on the
    float summation order; we set those coefficients to 0 (see nss.mscn) so the features do
    not change between CPU and GPU.
    """
    images, reference = koniq_sample
    clean = _flat_free(images)
    assert clean.sum() >= 8, "too few flat-free images to make the comparison meaningful"
    ours, ref = koniq_features[clean], reference[clean]
    np.testing.assert_allclose(ours[:, SHAPE_COLUMNS], ref[:, SHAPE_COLUMNS], atol=5e-4, rtol=0)
    np.testing.assert_allclose(ours[:, OTHER_COLUMNS], ref[:, OTHER_COLUMNS], rtol=1e-6, atol=1e-9)


def test_brisque_mscn_statistics_match_reference_on_every_image(koniq_sample, koniq_features):
    """The MSCN GGD features do not depend on how flat windows are counted, so they agree with
    the piq 0.8.0 reference (same CSV as above) on all 24 images: shape exactly on the grid,
    variance to 1e-6 relative."""
    _, reference = koniq_sample
    np.testing.assert_allclose(koniq_features[:, [0, 18]], reference[:, [0, 18]], atol=5e-4, rtol=0)
    np.testing.assert_allclose(koniq_features[:, [1, 19]], reference[:, [1, 19]], rtol=1e-6)


def test_brisque_batch_equals_single_images_and_float_precision_does_not_matter():
    photos = as_batch(data.astronaut()[:128, :160], data.coffee()[:128, :160])
    batched = brisque_features(photos)
    singles = torch.cat([brisque_features(photos[i:i + 1]) for i in range(2)])
    assert batched.shape == (2, 36) and batched.dtype == torch.float64
    torch.testing.assert_close(batched, singles, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(brisque_features(photos.double()), batched, rtol=1e-12, atol=1e-12)
    assert not torch.equal(batched[0], batched[1])


def test_grid_lookup_returns_the_linear_scan_answer():
    ratios = torch.rand(500, dtype=torch.float64) * 0.5 + 0.3
    tables = nss._shape_tables("cpu")
    shapes = tables["shapes"]
    table = torch.exp(2 * torch.lgamma(2 / shapes) - torch.lgamma(1 / shapes) - torch.lgamma(3 / shapes))
    expected = shapes[(ratios[:, None] - table[None, :]).abs().argmin(dim=1)]
    torch.testing.assert_close(nss._nearest_shape(ratios, "aggd"), expected, rtol=0, atol=0)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(3, 64, 64), "4-D"),
    (torch.rand(1, 4, 64, 64), "channels"),
    (torch.rand(1, 3, 10, 64), "at least"),
    (torch.rand(1, 3, 64, 64) * 255, r"\[0, 1\]"),
    (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "floating-point"),
])
def test_brisque_rejects_bad_input_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        brisque_features(bad)


def test_brisque_is_undefined_on_flat_images_only():
    # The features contract: NaN where the statistics do not exist (no luminance variation), the rest kept.
    feats = brisque_features(torch.cat([torch.rand(1, 3, 32, 32), torch.full((1, 3, 32, 32), 0.5)]))
    assert torch.isfinite(feats[0]).all() and torch.isnan(feats[1]).all()


PRISTINE = [data.coffee, data.chelsea, data.rocket, data.hubble_deep_field, data.immunohistochemistry]


@pytest.fixture(scope="module")
def niqe_model():
    # The test photo (astronaut) is deliberately not among the pristine photos.
    return fit_niqe([as_batch(load())[0] for load in PRISTINE], progress=False)


def test_niqe_model_is_a_valid_gaussian(niqe_model):
    cov = niqe_model.covariance
    assert niqe_model.mean.shape == (36,) and cov.shape == (36, 36)
    np.testing.assert_array_equal(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() >= -1e-10 * np.abs(cov).max()
    assert niqe_model.num_patches >= 37


def test_niqe_is_lower_for_pristine_and_grows_with_blur_and_noise(niqe_model):
    photo = data.astronaut()
    rng = np.random.default_rng(0)
    blurred = [filters.gaussian(photo, sigma=s, channel_axis=-1) for s in (1, 2, 4)]
    noisy = [np.clip(util.img_as_float(photo) + rng.normal(0, s, photo.shape), 0, 1) for s in (0.03, 0.08, 0.2)]
    scores = niqe_score(as_batch(photo, *blurred, *noisy), niqe_model).numpy()
    assert np.all(np.diff(scores[[0, 1, 2, 3]]) > 0), f"blur not monotone: {scores[:4]}"
    assert np.all(np.diff(scores[[0, 4, 5, 6]]) > 0), f"noise not monotone: {scores[[0, 4, 5, 6]]}"


def test_niqe_model_round_trips_through_npz(niqe_model, tmp_path):
    path = niqe_model.save(tmp_path / "niqe.npz")
    loaded = NiqeModel.load(path)
    np.testing.assert_array_equal(loaded.mean, niqe_model.mean)
    np.testing.assert_array_equal(loaded.covariance, niqe_model.covariance)
    assert (loaded.patch_size, loaded.sharpness_threshold, loaded.num_patches) == (
        niqe_model.patch_size, niqe_model.sharpness_threshold, niqe_model.num_patches)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["niqe.npz"]


def test_niqe_load_names_the_file_when_it_is_not_a_model(tmp_path):
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, mean=np.zeros(3))
    with pytest.raises(ValueError, match="bogus.npz"):
        NiqeModel.load(bogus)
    with pytest.raises(ValueError, match="does not exist"):
        NiqeModel.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(p.read_bytes()[:3000]), "BadZipFile: not a zip archive of arrays"),
    (lambda p: p.write_bytes(b""), "BadZipFile: not a zip archive of arrays"),  # numpy: EOFError, typer: "Aborted."
    (lambda p: p.write_text("hello"), "BadZipFile: not a zip archive of arrays"),  # numpy: "pickled data"
])
def test_a_damaged_niqe_model_is_one_error_naming_it_and_how_to_restore_it(niqe_model, tmp_path, damage, reason):
    path = niqe_model.save(tmp_path / "niqe_mvg.npz")
    damage(path)
    with pytest.raises(ValueError) as error:
        NiqeModel.load(path)
    assert str(error.value) == (f"NIQE model {path} is unreadable ({reason}); restore it (`dvc checkout {path}`) "
                                "or fit it again (`dvc repro -f fit_niqe`)")


def test_a_niqe_model_without_its_arrays_names_what_it_lacks(tmp_path):
    from iqabench.models.niqe import FORMAT_TAG

    np.savez(tmp_path / "m.npz", format=np.array(FORMAT_TAG), mean=np.zeros(36))
    with pytest.raises(ValueError, match=r"m\.npz lacks \['covariance', 'patch_size', 'sharpness_threshold', "
                                         r"'num_patches'\]; restore it"):
        NiqeModel.load(tmp_path / "m.npz")


def test_niqe_rejects_images_smaller_than_one_patch(niqe_model):
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe_score(torch.rand(2, 3, 80, 200), niqe_model)
    with pytest.raises(ValueError, match="patch_size"):
        fit_niqe(torch.rand(1, 3, 128, 128), patch_size=95, progress=False)
