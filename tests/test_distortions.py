"""Behaviour of the KADID distortion engine (iqabench.distortions)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline
from skimage import color, data
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from iqabench.distortions import (
    DISTORTION_GROUPS, DISTORTION_TYPES, GROUP_OF, LEVEL_PARAMETERS, NUM_CLASSES, RANDOM_TYPES,
    DistortionTransform, apply_plans, apply_sequence, class_index, class_name, distort, sample_composition,
    save_gallery)
from iqabench.distortions import colorspace, engine, filters, noise

DETERMINISTIC_TYPES = [d for d in DISTORTION_TYPES if d not in RANDOM_TYPES]
# Published tables whose level order is perceptual, not a monotone pixel change
# (see iqabench.distortions.params); they get their own exact checks below.
SIGNED_TYPES = ("mean_shift", "contrast_change")


def _crops(size: int) -> torch.Tensor:
    crops = [data.astronaut()[60:60 + size, 180:180 + size],
             data.chelsea()[40:40 + size, 120:120 + size],
             data.coffee()[100:100 + size, 200:200 + size]]
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return _crops(96)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dist", [d for d in DISTORTION_TYPES if d not in SIGNED_TYPES])
def test_quality_drops_with_every_level(images, dist):
    # OpenJPEG's minimum codestream makes ratios 120 and 170 coincide below ~128 px.
    batch = _crops(160) if dist == "jpeg2000" else images
    n = batch.shape[0]
    levels = torch.arange(6).repeat_interleave(n)
    out = distort(batch.repeat(6, 1, 1, 1), dist, levels, _seeded())
    assert out.shape == (6 * n, *batch.shape[1:]) and out.dtype == batch.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    scores = [float(ssim(out[k * n:(k + 1) * n], batch, data_range=1.0)) for k in range(6)]
    assert scores[1] <= scores[0] + 1e-6, scores
    for level in range(1, 5):
        assert scores[level + 1] < scores[level], f"{dist}: SSIM per level 0..5 = {scores}"
    assert scores[5] < 0.95, f"{dist}: level 5 is barely visible, SSIM {scores[5]:.3f}"


def test_mean_shift_adds_the_published_signed_amount(images):
    for level, amount in enumerate(LEVEL_PARAMETERS["mean_shift"], start=1):
        out = distort(images, "mean_shift", level)
        unclipped = ((images + amount) >= 0) & ((images + amount) <= 1)
        torch.testing.assert_close(out[unclipped], (images + amount)[unclipped])
        torch.testing.assert_close(out[~unclipped], (images + amount).clamp(0, 1)[~unclipped])


def test_contrast_change_passes_through_the_published_control_points():
    greys = torch.tensor([0.3, 0.5, 0.7]).view(3, 1, 1, 1).expand(3, 3, 4, 4).contiguous()
    for level, amount in enumerate(LEVEL_PARAMETERS["contrast_change"], start=1):
        out = distort(greys, "contrast_change", level)[:, 0, 0, 0]
        torch.testing.assert_close(out, torch.tensor([0.25 - amount / 4, 0.5, 0.75 + amount / 4]))


@pytest.mark.parametrize("dist", DISTORTION_TYPES)
def test_level_zero_is_identity_and_leaves_pristine_images_untouched(images, dist):
    assert torch.equal(distort(images, dist, 0, _seeded()), images)
    mixed = distort(images, dist, torch.tensor([0, 4, 0]), _seeded())
    assert torch.equal(mixed[0], images[0]) and torch.equal(mixed[2], images[2])
    assert not torch.equal(mixed[1], images[1])


@pytest.mark.parametrize("dist", DETERMINISTIC_TYPES)
def test_per_image_levels_match_separate_calls(images, dist):
    levels = torch.tensor([1, 3, 5])
    together = distort(images, dist, levels)
    for i in range(3):
        alone = distort(images[i:i + 1], dist, int(levels[i]))
        torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dist", sorted(RANDOM_TYPES))
def test_same_seed_repeats_and_other_seed_differs(images, dist):
    first = distort(images, dist, 3, _seeded(7))
    assert torch.equal(first, distort(images, dist, 3, _seeded(7)))
    assert not torch.equal(first, distort(images, dist, 3, _seeded(8)))


def test_global_rng_is_not_used(images):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    distort(images, "white_noise", 2, _seeded(1))
    DistortionTransform(generator=_seeded(2))(images)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("dist", ["gaussian_blur", "jpeg", "white_noise", "brighten", "color_block"])
def test_half_precision_keeps_dtype_and_range(images, dist, dtype):
    out = distort(images.to(dtype), dist, 3, _seeded())
    assert out.dtype == dtype and out.shape == images.shape
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dist", DISTORTION_TYPES)
def test_cuda_output_stays_on_device_and_is_reproducible(images, dist):
    gpu = images.cuda()
    out = distort(gpu, dist, 4, torch.Generator(device="cuda").manual_seed(3))
    assert out.device == gpu.device and out.shape == gpu.shape
    again = distort(gpu, dist, 4, torch.Generator(device="cuda").manual_seed(3))
    assert torch.equal(out, again)
    if dist in DETERMINISTIC_TYPES and dist not in ("jpeg", "jpeg2000", "color_quantization"):
        torch.testing.assert_close(out.cpu(), distort(images, dist, 4), atol=2e-3, rtol=0)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "dtype"),
    (torch.full((2, 3, 8, 8), 1.5), r"\[0, 1\]"),
    (torch.full((2, 3, 8, 8), -0.1), r"\[0, 1\]"),
    (torch.full((2, 3, 8, 8), float("nan")), r"\[0, 1\]"),
    (torch.zeros(2, 4, 8, 8), "3 \\(RGB\\) channels"),
    (torch.zeros(3, 8, 8), "4-D"),
    (torch.zeros(0, 3, 8, 8), "empty"),
])
def test_bad_images_are_rejected_with_the_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        distort(bad, "gaussian_blur", 1)


def test_unknown_type_lists_the_valid_names(images):
    with pytest.raises(ValueError, match="valid names: gaussian_blur, lens_blur"):
        distort(images, "gaussian blur", 1)


@pytest.mark.parametrize("level, message", [
    (6, r"0\.\.5"), (-1, r"0\.\.5"), (torch.tensor([1, 2]), r"shape \(3,\)"),
    (torch.tensor([1.0, 2.0, 3.0]), "integer dtype"), (torch.tensor([1, 9, 2]), r"\[9\]"),
    (2.5, "int"), (True, "int"),
])
def test_bad_levels_are_rejected(images, level, message):
    with pytest.raises(ValueError, match=message):
        distort(images, "jpeg", level)


def test_small_images_get_a_size_error_for_patch_types():
    with pytest.raises(ValueError, match="at least 48 x 48"):
        distort(torch.rand(1, 3, 40, 40), "non_eccentricity_patch", 1)


def test_class_indices_cover_126_classes_and_invert():
    assert NUM_CLASSES == 126 and class_index("gaussian_blur", 0) == 0
    assert class_index("gaussian_blur", 1) == 1 and class_index("contrast_change", 5) == 125
    assert class_index("jpeg", 2) == 9 * 5 + 2
    for index in range(NUM_CLASSES):
        name, level = class_name(index)
        assert index == (0 if level == 0 else class_index(name, level))
    with pytest.raises(ValueError, match="out of range"):
        class_name(126)


def test_groups_partition_the_types():
    assert len(DISTORTION_GROUPS) == 7
    assert sorted(GROUP_OF) == sorted(DISTORTION_TYPES) and len(DISTORTION_TYPES) == 25


def test_compositions_use_distinct_groups_within_bounds_and_repeat_under_a_seed():
    generator = _seeded(11)
    sizes = set()
    for _ in range(200):
        steps = sample_composition(generator, max_k=4, min_k=2)
        groups = [GROUP_OF[d] for d, _ in steps]
        assert len(set(groups)) == len(groups) and 2 <= len(steps) <= 4
        assert all(1 <= level <= 5 for _, level in steps)
        sizes.add(len(steps))
    assert sizes == {2, 3, 4}
    assert [sample_composition(_seeded(5)) for _ in range(3)] == [sample_composition(_seeded(5))] * 3
    only_five = sample_composition(_seeded(1), max_k=7, min_k=7, level_probs=[0, 0, 0, 0, 1])
    assert [level for _, level in only_five] == [5] * 7
    with pytest.raises(ValueError, match="level_probs"):
        sample_composition(_seeded(), level_probs=[1, 1])
    with pytest.raises(ValueError, match="min_k"):
        sample_composition(_seeded(), max_k=8)


def test_apply_sequence_equals_chained_calls(images):
    steps = [("gaussian_blur", 3), ("white_noise", torch.tensor([1, 0, 5])), ("jpeg", 2)]
    chained = images
    generator = _seeded(4)
    for dist, level in steps:
        chained = distort(chained, dist, level, generator)
    assert torch.equal(apply_sequence(images, steps, _seeded(4)), chained)
    with pytest.raises(ValueError, match="step 0"):
        apply_sequence(images, [("jpeg",)])


def test_transform_labels_describe_the_applied_distortion(images):
    transform = DistortionTransform(generator=_seeded(3))
    out, labels = transform(images)
    assert labels.shape == (3,) and out.shape == images.shape
    for i in range(3):
        dist, level = class_name(int(labels[i]))
        expected = distort(images[i:i + 1], dist, level, _seeded(0))
        if dist not in RANDOM_TYPES:
            torch.testing.assert_close(out[i:i + 1], expected, atol=1e-5, rtol=0)
    pristine, zero = DistortionTransform(pristine_prob=1.0, generator=_seeded())(images)
    assert torch.equal(pristine, images) and torch.equal(zero, torch.zeros(3, dtype=torch.int64))
    single, label = DistortionTransform(generator=_seeded())(images[0])
    assert single.shape == images[0].shape and label.ndim == 0


def test_plans_drawn_first_then_applied_give_the_transform_s_images(images):
    # The data loaders' path: labels drawn in workers (plan), images distorted later (apply_plans).
    transform = DistortionTransform(mode="composition", max_k=2, pristine_prob=0.3)
    generator = _seeded(8)
    plans = [transform.plan(generator) for _ in range(3)]
    out, labels = transform(images, _seeded(8))
    assert torch.equal(apply_plans(images, plans, generator), out)
    assert [[class_index(*step) for step in plan] for plan in plans] == [[c for c in row if c] for row in
                                                                          labels.tolist()]
    with pytest.raises(ValueError, match="one plan per image: 3 images, 2 plans"):
        apply_plans(images, plans[:2], generator)


def test_composition_transform_is_reproducible_with_padded_labels(images):
    make = lambda: DistortionTransform(mode="composition", max_k=3, generator=_seeded(9))  # noqa: E731
    out, labels = make()(images)
    again, labels_again = make()(images)
    assert torch.equal(out, again) and torch.equal(labels, labels_again)
    assert labels.shape == (3, 3)
    for row in labels.tolist():
        applied = [class_name(c)[0] for c in row if c != 0]
        assert 1 <= len(applied) and len({GROUP_OF[d] for d in applied}) == len(applied)
        assert all(c == 0 for c in row[len(applied):])


def test_gallery_writes_a_png(tmp_path):
    path = tmp_path / "gallery.png"
    save_gallery(_crops(64)[0], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="3 x H x W"):
        save_gallery(_crops(64), tmp_path / "bad.png")


def test_chunked_batches_match_whole_batch_calls(images, monkeypatch):
    # Large batches are distorted a few images at a time; that must not change any image
    # (beyond float rounding: convolutions may sum in another order for another batch size).
    whole = {dist: distort(images, dist, torch.tensor([1, 3, 5])) for dist in DETERMINISTIC_TYPES}
    monkeypatch.setattr(engine, "CHUNK_PIXELS", images.shape[-2] * images.shape[-1])
    assert engine.chunk_size(*images.shape[-2:]) == 1
    for dist, expected in whole.items():
        torch.testing.assert_close(distort(images, dist, torch.tensor([1, 3, 5])), expected,
                                   atol=1e-5, rtol=0, msg=dist)


def test_colour_spaces_match_scikit_image(images):
    rgb = images.permute(0, 2, 3, 1).double().numpy()
    hsv = colorspace.rgb_to_hsv(images)
    np.testing.assert_allclose(hsv.permute(0, 2, 3, 1).numpy(), color.rgb2hsv(rgb), atol=1e-5)
    np.testing.assert_allclose(colorspace.hsv_to_rgb(hsv).numpy(), images.numpy(), atol=1e-5)
    lab = colorspace.rgb_to_lab(images)
    # scikit-image's D65 white differs from MATLAB's in the fourth decimal.
    np.testing.assert_allclose(lab.permute(0, 2, 3, 1).numpy(), color.rgb2lab(rgb), atol=0.05)
    np.testing.assert_allclose(colorspace.lab_to_rgb(lab).numpy(), images.numpy(), atol=1e-4)
    ycbcr = colorspace.rgb_to_ycbcr(images)
    np.testing.assert_allclose(ycbcr.permute(0, 2, 3, 1).numpy() * 255, color.rgb2ycbcr(rgb), atol=1e-3)


def test_hsv_to_rgb_is_linear_in_saturation_for_negative_factors(images):
    hsv = colorspace.rgb_to_hsv(images)
    negated = hsv.clone()
    negated[:, 1] *= -1
    # V - V*S*g(H) at -S is the mirror of the +S colour around V.
    torch.testing.assert_close(colorspace.hsv_to_rgb(negated), 2 * hsv[:, 2:] - colorspace.hsv_to_rgb(hsv),
                               atol=1e-5, rtol=0)


def test_tone_curve_equals_scipy_not_a_knot_spline():
    knots = (0.0, 0.3, 0.5, 0.7, 1.0)
    curves = [(0.0, 0.25 - a / 4, 0.5, 0.75 + a / 4, 1.0) for a in (0.3, -0.6)] + [(0.0, 0.1, 0.5, 0.9, 1.0)]
    x = torch.rand(3, 3, 16, 16, generator=_seeded())
    out = filters.tone_curve(x, knots, curves)
    for i, ys in enumerate(curves):
        expected = np.clip(CubicSpline(knots, ys, bc_type="not-a-knot")(x[i].double().numpy()), 0, 1)
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-5)


def test_non_local_means_removes_most_of_the_noise():
    clean = _crops(64)
    sigma = torch.full((3, 1, 1, 1), 0.1)
    noisy = clean + sigma * torch.randn(clean.shape, generator=_seeded())
    denoised = noise.non_local_means(noisy, sigma)
    assert float((denoised - clean).square().mean()) < 0.5 * float((noisy - clean).square().mean())


@pytest.mark.parametrize("dist", sorted(engine.IN_RANGE_TYPES))
def test_types_that_skip_the_engine_clamp_stay_in_range(images, dist):
    # Constant black and white images are the extremes; the engine does not clamp these types' output.
    batch = torch.cat([images, torch.zeros(1, 3, 96, 96), torch.ones(1, 3, 96, 96)])
    for level in range(1, 6):
        params = [LEVEL_PARAMETERS[dist][level - 1]] * batch.shape[0]
        out = engine.DISTORTION_FUNCTIONS[dist](batch, params, _seeded(level))
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0, (dist, level)


@pytest.mark.parametrize("fill", [False, True])
def test_patch_pasting_is_the_same_on_the_cpu_and_the_batched_accelerator_path(images, fill):
    from iqabench.distortions import spatial

    draws, n = 30, images.shape[0]
    corners = (torch.rand(draws, n, 2, generator=_seeded(5)) * 60).long()
    # Sources overlap the previous targets, so the paste order matters.
    sources = corners.roll(1, 0)
    colours = torch.rand(draws, n, 3, generator=_seeded(6)) if fill else None
    counts = [30, 7, 0]
    cpu = spatial._patch_copies(images, counts, draws, sources, corners, 16, colours)
    batched = spatial._patch_copies(images, counts, draws, sources, corners, 16, colours, batched=True)
    assert torch.equal(cpu, batched)
    assert torch.equal(cpu[2], images[2]) and not torch.equal(cpu[0], images[0])


def test_chunks_are_one_image_on_the_cpu_and_large_on_accelerators():
    assert engine.chunk_size(512, 512, "cpu") == 1 and engine.chunk_size(64, 64) == 64
    assert engine.chunk_size(512, 512, "cuda") == 256


def test_large_cpu_outputs_are_ordinary_tensors():
    from iqabench.distortions import memory

    big = memory.empty((9, 3, 512, 1024), torch.float32, torch.device("cpu"))  # 54 MiB: above the threshold
    assert big.shape == (9, 3, 512, 1024) and big.is_contiguous()
    big.fill_(0.5)
    big.share_memory_()
    assert big.is_shared() and float(big.sum()) == 0.5 * big.numel()
    small = memory.empty((2, 3, 8, 8), torch.float16, torch.device("cpu"))
    assert small.dtype == torch.float16 and small.shape == (2, 3, 8, 8)


def test_a_bad_chunk_of_a_large_batch_raises_and_leaves_the_generator_as_it_was(monkeypatch):
    monkeypatch.setattr(engine, "CHUNK_PIXELS", 2 * 64 * 64)  # chunks of two images
    batch = torch.rand(6, 3, 64, 64, generator=_seeded())
    batch[4, 1, 3, 3] = 1.5  # in the last chunk: the first two are distorted before it is seen
    generator = _seeded(3)
    state = generator.get_state()
    assert engine._chunked(batch)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        distort(batch, "white_noise", 2, generator)
    assert torch.equal(generator.get_state(), state)


def test_chunk_by_chunk_range_check_changes_nothing(images, monkeypatch):
    monkeypatch.setattr(engine, "CHUNK_PIXELS", images.shape[-2] * images.shape[-1])
    assert engine._chunked(images)
    for dist in ("white_noise", "jpeg", "brighten"):
        chunked = distort(images, dist, 2, _seeded(1))
        engine.check_range(images)
        whole = engine._in_chunks(dist, images, [LEVEL_PARAMETERS[dist][1]] * 3, _seeded(1))
        assert torch.equal(chunked, whole), dist

