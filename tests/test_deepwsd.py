"""DeepWSD: the published formula, both backbones, the VGG16 loader and the fr:deepwsd rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance
from skimage import data
from skimage.transform import resize

from iqabench import rows
from iqabench.distortions import distort
from iqabench.models import deepwsd, encoders

BLUR_LEVELS = (2, 3, 4, 5)  # level 1 of gaussian_blur is a near-identity kernel on 128 px
NOISE_SIGMAS = (0.02, 0.05, 0.1, 0.2)


def astronaut(size: int) -> torch.Tensor:
    return torch.from_numpy(resize(data.astronaut(), (size, size), anti_aliasing=True)).permute(2, 0, 1).float()[None]


def noisy(image: torch.Tensor, sigma: float) -> torch.Tensor:
    # One noise pattern, scaled: the levels differ in strength only.
    pattern = torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    return (image + sigma * pattern).clamp(0, 1)


def random_vgg16_features() -> torch.nn.Sequential:
    from torchvision.models.vgg import cfgs, make_layers  # torchvision's own VGG16 `features` layout
    torch.manual_seed(0)
    return make_layers(cfgs["D"])


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in random_vgg16_features().state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def models(vgg_weights) -> dict[str, deepwsd.DeepWSD]:
    torch.manual_seed(0)
    encoder = encoders.Encoder("small_cnn", width=8).eval()
    # VGG16 runs on 64 px to keep the test fast; the small encoder on the embedded sets' 128 px.
    return {"encoder": deepwsd.DeepWSD(deepwsd.EncoderStages(encoder)), "vgg16": deepwsd.from_vgg16(vgg_weights)}


SIZES = {"encoder": 128, "vgg16": 64}


@pytest.mark.parametrize("backbone", ["encoder", "vgg16"])
def test_identical_images_are_at_distance_zero_and_distortion_levels_are_ordered(backbone, models):
    model, image = models[backbone], astronaut(SIZES[backbone])
    assert model(image, image).item() == 0.0
    blurred = torch.cat([distort(image, "gaussian_blur", level) for level in BLUR_LEVELS])
    noised = torch.cat([noisy(image, sigma) for sigma in NOISE_SIGMAS])
    for name, batch in (("blur", blurred), ("noise", noised)):
        scores = model(batch, image.expand_as(batch))
        assert (scores > 0).all() and (torch.diff(scores) > 0).all(), f"{backbone} {name}: {scores.tolist()}"


def test_distance_is_symmetric_and_a_batch_scores_each_pair_alone(models):
    model, image = models["encoder"], astronaut(128)
    dist = torch.cat([distort(image, "gaussian_blur", 3), noisy(image, 0.05), distort(image, "jpeg", 4)])
    ref = image.expand_as(dist)
    batch = model(dist, ref)
    torch.testing.assert_close(model(ref, dist), batch)
    torch.testing.assert_close(torch.cat([model(d[None], r[None]) for d, r in zip(dist, ref)]), batch)


def test_stage_distance_matches_scipy_wasserstein_on_the_authors_grouping():
    window = 2
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(1, 2, 4, 4, generator=gen)
    # The authors' reshape(x, [win, win, C, -1]) then [-1, C * patches]: column j holds every
    # (C*H*W / win**2)-th value of the flattened map from j on.
    x_cols = x.reshape(window * window, -1).T
    # Permuting values within each column keeps its total mass and the map's sum, so the
    # un-normalised transport of POT equals that total times scipy's normalised W1.
    perms = torch.stack([torch.randperm(window * window, generator=gen) for _ in range(len(x_cols))])
    y_cols = torch.gather(x_cols, 1, perms)
    y = y_cols.T.reshape(x.shape)
    total = x.sum().item()
    expected = 0.0
    for a, b in zip(x_cols.double().numpy(), y_cols.double().numpy()):
        u, v = a * a / total, b * b / total
        wsd = u.sum() * wasserstein_distance(np.arange(4), np.arange(4), u, v)
        weight = 1 / (np.sqrt(np.exp(-1 / (wsd + 10))) * (wsd + 10) ** 2)
        expected += wsd + ((a - b) ** 2).sum() * weight
    got = deepwsd.stage_distance(x, y, window, p=1).item()
    assert got == pytest.approx(expected, rel=1e-4)


def test_histogram_wasserstein_is_pots_unrooted_wp_power():
    gen = torch.Generator().manual_seed(1)
    u, v = torch.rand(5, 6, generator=gen).double(), torch.rand(5, 6, generator=gen).double()
    v = v * (u.sum(1, keepdim=True) / v.sum(1, keepdim=True))  # equal totals per row
    expected = [row_u.sum() * wasserstein_distance(np.arange(6), np.arange(6), row_u, row_v)
                for row_u, row_v in zip(u.numpy(), v.numpy())]
    np.testing.assert_allclose(deepwsd.histogram_wasserstein(u, v, p=1).numpy(), expected, rtol=1e-10)
    # p = 2 without the root: mass 0.5 moved by 3 bins costs 0.5 * 3**2.
    point_u, point_v = torch.tensor([[0.5, 0, 0, 0]]), torch.tensor([[0, 0, 0, 0.5]])
    assert deepwsd.histogram_wasserstein(point_u, point_v, p=2).item() == pytest.approx(4.5)


def test_downsampling_and_window_follow_the_authors_utils():
    assert deepwsd.downsample(torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 128, 128))[2:] == (4, 1)
    x, _, window, factor = deepwsd.downsample(torch.zeros(1, 3, 768, 1024), torch.zeros(1, 3, 768, 1024))
    assert (tuple(x.shape[2:]), window, factor) == ((192, 256), 4, 4)
    assert deepwsd.downsample(torch.zeros(1, 3, 64, 1300), torch.zeros(1, 3, 64, 1300))[2:] == (16, 5)
    # round(size / window) * window, half to even as numpy's round: 6 -> 8, 5 -> 4, 10 -> 8.
    shapes = [deepwsd.fit_to_window(torch.ones(1, 1, n, n), 4).shape[2] for n in (6, 5, 10)]
    assert shapes == [8, 4, 8]


@pytest.mark.parametrize("arch, size, count", [("small_cnn", 64, 4), ("resnet18", 64, 5)])
def test_encoder_stages_end_with_the_feature_map(arch, size, count):
    torch.manual_seed(0)
    encoder = encoders.Encoder(arch, width=4).eval()
    image = torch.rand(2, 3, size, size)
    with torch.no_grad():
        stages = encoder.stages(image)
        assert len(stages) == count
        assert [s.shape[2] for s in stages] == sorted({s.shape[2] for s in stages}, reverse=True)
        torch.testing.assert_close(stages[-1], encoder.feature_map(image))
        assert all((s >= 0).all() for s in stages)


def test_vgg16_loader_accepts_features_only_keys_and_ignores_the_classifier(tmp_path, vgg_weights):
    reference = random_vgg16_features().state_dict()
    bare = tmp_path / "features_only.pth"
    torch.save(reference, bare)
    full = tmp_path / "full.pth"
    torch.save({**torch.load(vgg_weights, weights_only=True), "classifier.6.bias": torch.zeros(1000)}, full)
    for path in (bare, full):
        loaded = deepwsd.load_vgg16_features(path).state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in reference.items()), path


def test_vgg16_loader_names_the_file_and_the_keys_of_a_wrong_state_dict(tmp_path):
    wrong = tmp_path / "encoder.pth"
    torch.save(encoders.Encoder("small_cnn", width=4).state_dict(), wrong)
    message = r"encoder\.pth: not torchvision VGG16 weights: missing features\.\['0\.weight'.*unexpected \['trunk"
    with pytest.raises(ValueError, match=message):
        deepwsd.load_vgg16_features(wrong)
    with pytest.raises(FileNotFoundError, match="absent.pth do not exist"):
        deepwsd.load_vgg16_features(tmp_path / "absent.pth")


def test_fr_deepwsd_rows_score_with_references_and_higher_is_better(tmp_path, monkeypatch, vgg_weights):
    assert rows.get("fr:deepwsd").artifacts == (encoders.trained_path("contrique"),)  # contrique's encoder
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="dvc repro pretrain"):
        rows.feature_fn("fr:deepwsd")
    encoders.save(encoders.Encoder("small_cnn", width=4), encoders.trained_path("contrique"))
    image = astronaut(64)
    dist = torch.cat([image, distort(image, "gaussian_blur", 2), distort(image, "gaussian_blur", 5)])
    for name in ("fr:deepwsd", f"fr:deepwsd-vgg16:{vgg_weights}"):
        assert rows.is_full_reference(name)
        fn = rows.feature_fn(name)
        assert fn.needs_reference
        values = fn(dist, image.expand_as(dist))
        assert values.shape == (3, 1)
        assert values[0, 0] == 0 and values[0, 0] > values[1, 0] > values[2, 0], f"{name}: {values[:, 0]}"
    with pytest.raises(ValueError, match="path after the colon"):
        rows.feature_fn("fr:deepwsd-vgg16:")
