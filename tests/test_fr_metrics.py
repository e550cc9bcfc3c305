"""Full-reference label metrics: GMSD's direction and range, DeepWSD as a pseudo-label source, the same bits on
another CPU's MKL path."""
from __future__ import annotations

import json
import os
import subprocess
import sys

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


LABELS = """
import json, torch
from iqabench import fr_metrics
from iqabench.datasets.embedded import LABEL_DTYPE
from skimage import data
img = torch.from_numpy(data.astronaut()[:256, :256].copy()).permute(2, 0, 1).float().div(255)
ref = img.unfold(1, 128, 128).unfold(2, 128, 128).permute(1, 2, 0, 3, 4).reshape(-1, 3, 128, 128)
dist = torch.cat([ref * 0.3 + 0.05, (ref * 8).round() / 8, ref.mean(1, keepdim=True).expand_as(ref) * 0.9])
values = fr_metrics.compute(dist, ref.repeat(3, 1, 1, 1), ["ssim", "ms_ssim", "vif"], dtype=LABEL_DTYPE)
print(json.dumps({m: v.tolist() for m, v in values.items()}))
"""


def _labels(**env: str) -> dict[str, np.ndarray]:
    """SSIM, MS-SSIM and VIF of darkened, posterised and grey astronaut patches at the embedded sets' label
    precision, computed in a fresh interpreter (MKL and torch read their settings once) with ``env``."""
    proc = subprocess.run([sys.executable, "-c", LABELS], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {m: np.array(v) for m, v in json.loads(proc.stdout).items()}


def test_labels_move_far_less_than_their_rounding_step_on_another_cpus_code_paths():
    # Another CPU: torch's scalar kernels, oneDNN and MKL on their AVX2 paths (on an AVX-512 machine). In float32
    # these values moved by up to 3e-7 (4.5e-5 on a colour-diffused patch), and 2 of the 1,740 embedded labels
    # rounded the other way; float64's move is ~1e-16, 1e-12 of the 4-decimal step.
    native = _labels()
    other = _labels(ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    for metric, values in native.items():
        assert values.shape == (12,) and np.isfinite(values).all()
        np.testing.assert_allclose(other[metric], values, rtol=0, atol=1e-12, err_msg=metric)


def test_float64_windows_agree_with_torchs_own_convolution_far_below_the_label_rounding():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 40, 36, generator=gen, dtype=torch.float64)
    depthwise = torch.rand(3, 1, 11, 7, generator=gen, dtype=torch.float64)  # asymmetric: a missing flip shows
    single = torch.rand(1, 1, 5, 5, generator=gen, dtype=torch.float64)
    with fr_metrics.Float64Windows():
        fast = torch.nn.functional.conv2d(x, depthwise, groups=3)
        fast_single = torch.conv2d(x[:, :1], single)
        by_name = torch.nn.functional.conv2d(input=x, weight=depthwise, groups=3)  # keywords, as torch allows
    torch.testing.assert_close(fast, torch.nn.functional.conv2d(x, depthwise, groups=3), rtol=0, atol=1e-13)
    torch.testing.assert_close(by_name, fast, rtol=0, atol=0)
    torch.testing.assert_close(fast_single, torch.conv2d(x[:, :1], single), rtol=0, atol=1e-13)


def test_float64_windows_leave_every_other_convolution_to_torch(monkeypatch):
    # A padded, strided, biased, full or float32 convolution is not a window filter: torch computes it.
    monkeypatch.setattr(fr_metrics.signal, "fftconvolve", lambda *a, **k: pytest.fail("FFT path taken"))
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    w = torch.rand(3, 1, 3, 3, dtype=torch.float64)
    with fr_metrics.Float64Windows():
        torch.nn.functional.conv2d(x, w, groups=3, padding=1)
        torch.nn.functional.conv2d(x, w, groups=3, stride=2)
        torch.nn.functional.conv2d(x, w, torch.zeros(3, dtype=torch.float64), groups=3)
        torch.nn.functional.conv2d(x, torch.rand(4, 3, 3, 3, dtype=torch.float64))
        torch.nn.functional.conv2d(x.float(), w.float(), groups=3)
        with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
            torch.nn.functional.conv2d(x[..., :2, :], w, groups=3)  # scipy would swap the two and answer


def test_float64_labels_through_the_fft_windows_match_torchmetrics_direct_ones():
    image = astronaut(96).double()
    dist, ref = noise_series(image), image.expand(len(SIGMAS), -1, -1, -1)
    fast = fr_metrics.compute(dist, ref, ["ssim", "ms_ssim", "vif"], dtype=torch.float64)
    for metric, values in fast.items():
        direct = fr_metrics.FR_METRICS[metric](dist, ref).numpy()  # outside the mode: torch's own conv2d
        np.testing.assert_allclose(values, direct, rtol=0, atol=1e-12, err_msg=metric)
