"""Full-reference label metrics: GMSD's direction and range, DeepWSD as a pseudo-label source."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import resize

from iqabench import fr_metrics
from iqabench.models import deepwsd

SIGMAS = (0.01, 0.03, 0.06, 0.12, 0.25)


def astronaut(size: int) -> torch.Tensor:
    return torch.from_numpy(resize(data.astronaut(), (size, size), anti_aliasing=True)).permute(2, 0, 1).float()[None]


def noise_series(image: torch.Tensor) -> torch.Tensor:
    pattern = torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    return torch.cat([(image + s * pattern).clamp(0, 1) for s in SIGMAS])


def test_gmsd_is_zero_for_an_unchanged_image_and_falls_with_noise():
    image = astronaut(128)  # the embedded sets' patch size
    noisy = noise_series(image)
    values = fr_metrics.gmsd(torch.cat([image, noisy]), image.expand(len(SIGMAS) + 1, -1, -1, -1))
    assert values.dtype == torch.float32 and values.shape == (len(SIGMAS) + 1,)
    assert values[0].item() == 0.0
    assert (torch.diff(values) < 0).all(), values.tolist()


def test_gmsd_can_label_the_embedded_sets_alongside_the_torchmetrics():
    image = astronaut(128)
    noisy = noise_series(image)
    values = fr_metrics.compute(noisy, image.expand_as(noisy), ["ssim", "gmsd"], batch_size=2)
    assert set(values) == {"ssim", "gmsd"} and values["gmsd"].shape == (len(SIGMAS),)
    mos = fr_metrics.pseudo_mos(values)
    assert (np.diff(mos) < 0).all(), mos


def test_deepwsd_labels_need_vgg16_weights_and_say_why_not_the_encoder():
    image = astronaut(64)
    with pytest.raises(ValueError, match=r"prepare\.deepwsd_weights.*circular"):
        fr_metrics.compute(image, image, ["ssim", "deepwsd"])
    with pytest.raises(ValueError, match="unknown full-reference metric.*'deepwsd'.*'gmsd'"):
        fr_metrics.compute(image, image, ["lpips"])


def test_deepwsd_labels_on_vgg16_weights_are_minus_the_distance(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers
    torch.manual_seed(0)
    weights = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, weights)
    image = astronaut(64)
    noisy = noise_series(image)[[0, 2, 4]]
    ref = image.expand_as(noisy)
    values = fr_metrics.compute(noisy, ref, ["deepwsd"], batch_size=2, deepwsd_weights=weights)["deepwsd"]
    np.testing.assert_allclose(values, -deepwsd.from_vgg16(weights)(noisy, ref).numpy(), rtol=1e-5)
    assert (np.diff(values) < 0).all(), values



def test_compute_rounded_gives_float64_values_rounded():
    image = astronaut(64)
    pattern = torch.randn((24, *image.shape[1:]), generator=torch.Generator().manual_seed(1))
    noisy = (image + torch.linspace(0.005, 0.2, 24).view(-1, 1, 1, 1) * pattern).clamp(0, 1)
    ref = image.expand_as(noisy)
    metrics = ["psnr", "ssim", "ms_ssim", "vif", "gmsd"]
    exact = fr_metrics.compute(noisy, ref, metrics, dtype=torch.float64)
    rounded = fr_metrics.compute_rounded(noisy, ref, metrics, 4)
    for metric in metrics:
        np.testing.assert_array_equal(rounded[metric], np.round(exact[metric], 4), err_msg=metric)


def test_compute_rounded_recomputes_in_float64_only_what_float32_could_round_the_other_way(monkeypatch):
    # float64 values just above a 4-decimal boundary, whose float32 values (another CPU's, say) fall
    # just below it, among values far from any boundary.
    near = np.array([0.12345 + 3e-8, 0.67895 + 5e-8, 0.99995 + 2e-8])
    far = np.array([0.1234, 0.5, 0.91112])
    exact = np.concatenate([near, far])
    float32 = np.concatenate([near - 8e-8, far + 1e-7])
    calls = []

    def fake(dist, ref, metrics, batch_size=64, deepwsd_weights=None, dtype=torch.float32):
        calls.append((dtype, dist[:, 0, 0, 0].long().tolist()))
        values = exact if dtype == torch.float64 else float32
        return {m: values[dist[:, 0, 0, 0].long().numpy()] for m in metrics}

    monkeypatch.setattr(fr_metrics, "compute", fake)
    index = torch.arange(6, dtype=torch.float64).view(-1, 1, 1, 1).expand(6, 3, 4, 4)
    rounded = fr_metrics.compute_rounded(index, index, ["ssim"], 4)["ssim"]
    np.testing.assert_array_equal(rounded, np.round(exact, 4))
    assert calls == [(torch.float32, [0, 1, 2, 3, 4, 5]), (torch.float64, [0, 1, 2])]
