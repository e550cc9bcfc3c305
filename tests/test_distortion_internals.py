"""Speed-motivated internals of the distortion engine keep its results: reused output memory, uniform
draws from random words, in-place patches, trimmed kernels, the jpeg input layout. And the registry: a
distortion type is one entry, from which every table is derived."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from skimage import data

from iqabench.distortions import compression, engine, filters, memory, params, registry, spatial


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    crops = [data.astronaut()[60:156, 180:276], data.chelsea()[40:136, 120:216], data.coffee()[100:196, 200:296]]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255)


def test_freed_output_batches_are_reused_and_live_ones_never():
    shape = (2, 3, 1024, 1536)  # 36 MiB: a mapped output
    first = memory.empty(shape, torch.float32, torch.device("cpu"))
    address, view = first.data_ptr(), first[1]
    del first
    assert memory.empty(shape, torch.float32, torch.device("cpu")).data_ptr() != address  # a view still holds it
    del view
    again = memory.empty(shape, torch.float32, torch.device("cpu"))
    assert again.data_ptr() == address and again.shape == shape


def test_uniform_draws_have_24_bits_and_do_not_depend_on_threads():
    threads = torch.get_num_threads()
    try:
        draws = []
        for count in (1, 2):
            torch.set_num_threads(count)
            draws.append(filters.rand(_seeded(2), (3, 100001), "cpu"))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*draws) and draws[0].dtype == torch.float32
    x = draws[0].double()
    assert float(x.min()) >= 0 and float(x.max()) < 1 and abs(float(x.mean()) - 0.5) < 0.005
    assert torch.equal(x * 2 ** 24, (x * 2 ** 24).round())


def test_patch_types_paste_in_place_as_they_do_into_a_copy(images):
    for function in (spatial.non_eccentricity_patch, spatial.color_block):
        expected = function(images, [60, 20, 100], _seeded(4))
        inplace = images.clone()
        assert function(inplace, [60, 20, 100], _seeded(4), out=inplace) is inplace
        assert torch.equal(inplace, expected) and not torch.equal(expected, images)
    corners = (torch.rand(30, 3, 2, generator=_seeded(5)) * 60).long()
    expected = spatial._patch_copies(images, [30, 7, 0], 30, corners.roll(1, 0), corners, 16, batched=True)
    inplace = images.clone()  # the accelerator path, in place
    spatial._patch_copies(inplace, [30, 7, 0], 30, corners.roll(1, 0), corners, 16, batched=True, out=inplace)
    assert torch.equal(inplace, expected)


def test_trimmed_kernel_stacks_filter_as_the_padded_ones(images):
    kernels = [filters.motion_kernel(4, 0), filters.motion_kernel(10, 30), filters.motion_kernel(2, 95)]
    size = max(k.shape[0] for k in kernels)
    padded = torch.as_tensor(np.stack([np.pad(k, (size - k.shape[0]) // 2) for k in kernels]), dtype=torch.float32)
    trimmed = filters.stack_kernels(kernels, images)
    assert trimmed.shape[-2:] != padded.shape[-2:]
    torch.testing.assert_close(filters.filter_2d(images, trimmed), filters.filter_2d(images, padded),
                               atol=1e-6, rtol=0)


def test_jpeg_input_is_rounded_as_before_in_libjpeg_s_interleaved_layout(images):
    interleaved = compression._to_uint8_hwc_cpu(images)
    assert interleaved.shape == (3, 96, 96, 3) and interleaved.is_contiguous()
    assert torch.equal(interleaved.permute(0, 3, 1, 2), compression._to_uint8_cpu(images))


def _rederive() -> None:
    """Re-run the derivations of ``params`` and ``engine`` from ``registry.DISTORTIONS`` (their functions,
    already imported elsewhere, read the re-derived globals)."""
    importlib.reload(params)
    importlib.reload(engine)


def _toy_noise(x: torch.Tensor, levels: list, generator: torch.Generator) -> torch.Tensor:
    amount = torch.tensor(levels, dtype=x.dtype).view(-1, 1, 1, 1)
    return x + amount * (torch.rand(x.shape, generator=generator, dtype=x.dtype) - 0.5)


def test_a_distortion_type_is_one_registry_entry(monkeypatch, images):
    toy = registry.Distortion("toy_noise", "toy group", (0.1, 0.2, 0.3, 0.4, 0.5), _toy_noise, random=True)
    classes = params.NUM_CLASSES
    monkeypatch.setattr(registry, "DISTORTIONS", registry.DISTORTIONS + (toy,))
    try:
        _rederive()
        assert params.DISTORTION_TYPES[-1] == "toy_noise" and params.GROUP_OF["toy_noise"] == "toy group"
        assert list(params.DISTORTION_GROUPS)[-1] == "toy group"
        assert params.DISTORTION_GROUPS["toy group"] == ("toy_noise",)
        assert params.LEVEL_PARAMETERS["toy_noise"] == toy.levels
        assert params.NUM_CLASSES == classes + params.NUM_LEVELS  # appended: every existing class keeps its index
        assert params.class_index("toy_noise", 1) == classes and params.class_name(classes + 4) == ("toy_noise", 5)
        assert engine.DISTORTION_FUNCTIONS["toy_noise"] is _toy_noise and "toy_noise" in engine.RANDOM_TYPES
        expected = _toy_noise(images, [0.3] * 3, _seeded(6)).clamp(0, 1)
        assert torch.equal(engine.distort(images, "toy_noise", 3, _seeded(6)), expected)
    finally:
        monkeypatch.undo()
        _rederive()
    assert params.NUM_CLASSES == classes and "toy_noise" not in engine.DISTORTION_FUNCTIONS


@pytest.mark.parametrize("change", ["repeat", "levels"])
def test_a_bad_registry_entry_is_refused(change):
    first = registry.DISTORTIONS[0]
    bad = first if change == "repeat" else registry.Distortion("toy", "blur", (1, 2), first.function)
    with pytest.raises(ValueError, match="twice: gaussian_blur" if change == "repeat" else "'toy' has 2 level"):
        registry.check(registry.DISTORTIONS + (bad,))
