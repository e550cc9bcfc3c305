"""The pretraining loop on a tiny corpus: it learns, checkpoints, and resumes exactly."""
import dataclasses
import math

import pytest
import torch

from iqabench.models import encoders
from iqabench.training import corpus, pretrain
from iqabench.training.pretrain import NonFiniteLoss, PretrainConfig, batch_indices, train


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    labels = corpus.build(out, photos=["astronaut", "coffee"], crop=48, n_images=96, shard_size=48, seed=0)
    return out, labels


def _cfg(**kw):
    base = dict(arch="small_cnn", width=4, crop=32, batch_size=16, steps=6, lr=1e-3, proj_hidden=16,
                proj_dim=8, checkpoint_every=3, log_every=1, seed=0, device="cpu")
    return PretrainConfig(**{**base, **kw})


def test_corpus_is_sharded_labelled_and_resumable(tiny_corpus, tmp_path):
    out, labels = tiny_corpus
    images, classes = corpus.load(out)
    assert images.dtype == torch.uint8 and images.shape == (96, 3, 48, 48)
    assert classes.tolist() == labels["class"].tolist() and classes.max() < corpus.N_CLASSES
    # A rebuilt corpus with the same config reuses the shards byte for byte.
    before = (out / "shard-00001.pt").stat().st_mtime_ns
    corpus.build(out, photos=["astronaut", "coffee"], crop=48, n_images=96, shard_size=48, seed=0)
    assert (out / "shard-00001.pt").stat().st_mtime_ns == before


def test_batches_partition_each_epoch_across_ranks():
    seen = torch.cat([batch_indices(s, 40, 5, r, 2, seed=3) for s in range(4) for r in range(2)])
    assert sorted(seen.tolist()) == list(range(40))


def test_interrupted_run_resumes_to_the_same_weights(tiny_corpus, tmp_path, crash_after_first_checkpoint):
    out, _ = tiny_corpus
    cfg = _cfg()
    history = train(cfg, out, tmp_path / "a.pt", tmp_path / "ckpt-a")
    assert len(history) == cfg.steps
    with crash_after_first_checkpoint():
        train(cfg, out, tmp_path / "b.pt", tmp_path / "ckpt-b")
    assert not (tmp_path / "b.pt").exists()
    resumed = train(cfg, out, tmp_path / "b.pt", tmp_path / "ckpt-b")
    assert [h["step"] for h in resumed] == [h["step"] for h in history]
    # Each window keeps its measured seconds through the resume (the stage sums them into training_seconds).
    assert all(h["seconds"] > 0 and h["images_per_s"] * h["seconds"] == pytest.approx(cfg.images_per_step())
               for h in resumed)
    a, b = encoders.load(tmp_path / "a.pt").state_dict(), encoders.load(tmp_path / "b.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_other_params_is_not_resumed(tiny_corpus, tmp_path, capsys):
    out, _ = tiny_corpus
    train(_cfg(steps=3), out, tmp_path / "a.pt", tmp_path / "ckpt")
    history = train(_cfg(steps=3, lr=5e-4), out, tmp_path / "b.pt", tmp_path / "ckpt")
    assert history[0]["step"] == 1  # started from scratch, and says why
    assert "pretraining starts at step 0: the 1 checkpoint(s) in" in capsys.readouterr().out


def test_a_resume_across_how_the_run_is_watched_is_the_same_run(tiny_corpus, tmp_path, crash_after_first_checkpoint,
                                                               capsys):
    # checkpoint_every, log_every or device "auto" for "cpu" entered the hash: the run restarted at step 0 and
    # its first save deleted the checkpoints it could have resumed.
    out, _ = tiny_corpus
    train(_cfg(), out, tmp_path / "a.pt", tmp_path / "ckpt-a")
    with crash_after_first_checkpoint():
        train(_cfg(), out, tmp_path / "b.pt", tmp_path / "ckpt-b")
    train(_cfg(checkpoint_every=2, log_every=2, device="auto"), out, tmp_path / "b.pt", tmp_path / "ckpt-b")
    assert "resuming pretraining from" in capsys.readouterr().out
    a, b = encoders.load(tmp_path / "a.pt").state_dict(), encoders.load(tmp_path / "b.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_with_a_clear_message(tiny_corpus, tmp_path):
    out, _ = tiny_corpus
    with pytest.raises(NonFiniteLoss, match="last good checkpoint"):
        train(_cfg(lr=1e30, optimizer="sgd", steps=20), out, tmp_path / "x.pt", tmp_path / "ckpt")
    assert not (tmp_path / "x.pt").exists()


def test_loss_is_read_only_at_log_and_checkpoint_steps_and_a_late_nan_keeps_the_last_good_checkpoint(
        tiny_corpus, tmp_path, monkeypatch):
    out, _ = tiny_corpus
    reads, real_mean = [], pretrain._mean_over_ranks
    monkeypatch.setattr(pretrain, "_mean_over_ranks", lambda v, d: reads.append(1) or real_mean(v, d))
    history = train(_cfg(steps=10, log_every=5, checkpoint_every=100), out, tmp_path / "a.pt", tmp_path / "ca")
    assert len(reads) == 2 and [h["step"] for h in history] == [5, 10]  # no read of the loss in between

    calls, real_loss = [], pretrain.multi_positive_nt_xent

    def nan_at_step_6(z, target, temperature):
        calls.append(1)
        loss = real_loss(z, target, temperature)
        return loss * float("nan") if len(calls) == 6 else loss
    monkeypatch.setattr(pretrain, "multi_positive_nt_xent", nan_at_step_6)
    with pytest.raises(NonFiniteLoss, match="between steps 5 and 8"):
        train(_cfg(steps=12, log_every=4, checkpoint_every=4), out, tmp_path / "b.pt", tmp_path / "cb")
    assert len(calls) == 8  # caught at the next check, no later than log_every steps after
    assert sorted(p.name for p in (tmp_path / "cb").glob("step-*.pt")) == ["step-00000004.pt"]
    assert not (tmp_path / "b.pt").exists()


def test_config_is_a_plain_dataclass():
    assert {f.name for f in dataclasses.fields(PretrainConfig)} >= {"arch", "lr", "steps", "temperature"}


# --- views, on-the-fly sources, authentic images, the paper's knobs --------------------------------

import numpy as np  # noqa: E402
from PIL import Image, ImageCms  # noqa: E402

from iqabench import images  # noqa: E402
from iqabench.datasets.embedded import PHOTOS  # noqa: E402
from iqabench.training import sources, views  # noqa: E402


@pytest.fixture(scope="module")
def photo_u8():
    return np.ascontiguousarray(np.asarray(PHOTOS["astronaut"]())[:96, :96])


def _as_pil_units(t):
    return t[0].permute(1, 2, 0).numpy() * 255


def test_colour_spaces_match_what_contrique_feeds_through_pil(photo_u8):
    x = images.from_uint8(photo_u8)[None]
    pil = Image.fromarray(photo_u8)
    hsv_diff = np.abs(np.asarray(pil.convert("HSV"), dtype=float) - _as_pil_units(views.to_hsv(x)))
    hsv_diff[..., 0] = np.minimum(hsv_diff[..., 0], 255 - hsv_diff[..., 0])  # hue is circular
    assert hsv_diff.max() <= 1.01
    rgb2lab = ImageCms.buildTransformFromOpenProfiles(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                                      "RGB", "LAB")
    lab_diff = np.abs(np.asarray(ImageCms.applyTransform(pil, rgb2lab), dtype=float) - _as_pil_units(views.to_lab(x)))
    lab_diff = np.minimum(lab_diff, 256 - lab_diff)  # a and b wrap around as PIL's signed bytes
    assert lab_diff.max() <= 1.5 and lab_diff.mean() < 0.5
    gray = np.asarray(pil.convert("L"), dtype=float)
    assert np.abs(gray - _as_pil_units(views.to_gray(x))[..., 0]).max() <= 1.0


def test_mean_subtracted_view_ignores_brightness_offsets_and_spans_unit_range(photo_u8):
    x = images.from_uint8(photo_u8)[None] * 0.8
    a, b = views.to_mean_subtracted(x), views.to_mean_subtracted(x + 0.1)
    assert (a - b).abs().max() <= 1 / 255 + 1e-6  # 8-bit levels: a float's last bit can cross one
    # (diff - min) / (ptp + 1e-3) < 1, truncated to uint8: 0 .. 254, as CONTRIQUE's astype(np.uint8)
    assert a.amin() == 0 and torch.allclose(a.amax(dim=(2, 3)), torch.full((1, 3), 254 / 255))


def test_mean_subtracted_view_is_contrique_s_ms_transform(photo_u8):
    # modules/dataset_loader.py: correlate1d (mode='reflect') along axis 0 then 1 with skvideo's
    # gen_gauss_window(3, 7/6), image - mu, (x - min) / (ptp + 1e-3) per channel, then (x * 255).astype(uint8).
    from scipy import ndimage

    taps = np.exp(-0.5 * np.arange(-3, 4) ** 2 / (7 / 6) ** 2)
    window = taps / taps.sum()
    image = photo_u8.astype(np.float32)
    expected = np.empty_like(image)
    for c in range(3):
        mu = np.zeros(image.shape[:2], dtype=np.float32)
        ndimage.correlate1d(image[:, :, c], window, 0, mu, mode="reflect")
        ndimage.correlate1d(mu, window, 1, mu, mode="reflect")
        diff = image[:, :, c] - mu
        expected[:, :, c] = (diff - diff.min()) / (np.ptp(diff) + 1e-3)
    expected = (expected * 255).astype(np.uint8).astype(float)
    ours = _as_pil_units(views.to_mean_subtracted(images.from_uint8(photo_u8)[None].double()))
    assert np.abs(ours - expected).max() <= 1.0  # float32 against float64 may round one level apart
    assert (ours != expected).mean() < 0.01
    # The borders too: F.pad's 'reflect' (scipy's 'mirror') was tens of levels off there.
    assert np.abs(ours - expected)[[0, -1]].max() <= 1.0 and np.abs(ours - expected)[:, [0, -1]].max() <= 1.0


def test_each_forward_pass_mixes_both_scales_as_contrique_draws_them_per_image():
    # A 1-px checkerboard: its half-size copy is flat grey, so a view's variance says which scale it is.
    board = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float().expand(64, 3, 64, 64)
    first, second = views.make_views(board.contiguous(), 32, torch.Generator().manual_seed(0))
    fine_first, fine_second = first.var(dim=(1, 2, 3)) > 0.1, second.var(dim=(1, 2, 3)) > 0.1
    assert torch.equal(fine_first, ~fine_second)  # per image one view of each scale
    assert 16 < int(fine_first.sum()) < 48  # and the full-scale one in either pass


def test_warm_up_is_contrique_s_linear_ramp_to_the_full_rate():
    from iqabench.training.pretrain import _schedule

    factor = _schedule(100, 0.1)  # LinearWarmupAndCosineAnneal(warm_up=0.1, T_max=100): lr (e + 1) / (10 + 1)
    assert [factor(s) for s in (0, 4, 9, 10)] == pytest.approx([1 / 11, 5 / 11, 10 / 11, 1.0])
    assert factor(55) == pytest.approx(0.5) and factor(99) == pytest.approx(0.5 * (1 + np.cos(np.pi * 89 / 90)))


def test_views_draw_colour_spaces_per_image_and_rgb_only_draws_nothing():
    batch = torch.rand(64, 3, 24, 24)
    gen = torch.Generator().manual_seed(0)
    recoloured = views.recolour(batch, views.COLOUR_SPACES, gen)
    unchanged = (recoloured == batch).flatten(1).all(1)
    assert 0 < int(unchanged.sum()) < 64  # some rgb, some other spaces
    state = gen.get_state()
    assert torch.equal(views.recolour(batch, ["rgb"], gen), batch) and torch.equal(gen.get_state(), state)
    with pytest.raises(ValueError, match="colour_spaces"):
        views.make_views(batch, 8, gen, ["rgb", "xyz"])


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea"):
        images.save_png(images.from_uint8(PHOTOS[name]())[:, :80, :100], root / f"{name}.png")
    images.save_png(images.from_uint8(PHOTOS["coffee"]())[:, :50, :60], root / "small.png")  # padded
    return root


def _loaded(ds, workers, start=0, total=4):
    return list(sources.file_loader(ds, 2, 0, 1, seed=5, start=start, total=total, workers=workers,
                                    pin_memory=False))


def test_on_the_fly_batches_are_the_same_whatever_the_worker_count_and_placement(photo_folder):
    paths = sources.list_folder(photo_folder, "test")
    ds = sources.ImageFiles(paths, region=64, seed=5, distort=True, pristine_prob=0.0)
    serial, parallel = _loaded(ds, 0), _loaded(ds, 2)
    assert all(torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) for a, b in zip(serial, parallel))
    batch = serial[0]
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (2, 3, 64, 64) and not batch.pending
    assert ((batch.labels >= 1) & (batch.labels < corpus.N_CLASSES)).all()  # pristine_prob 0: always distorted
    resumed = _loaded(ds, 0, start=2)
    assert torch.equal(resumed[0].images, serial[2].images)  # a resumed run reads what it would have read
    # Workers that only decode and crop, the training process distorting: the same bits on the CPU.
    crops_only = sources.ImageFiles(paths, region=64, seed=5, distort=True, pristine_prob=0.0,
                                    distort_in_workers=False)
    pending = _loaded(crops_only, 2)
    assert all(b.pending and torch.equal(b.labels, a.labels) for a, b in zip(serial, pending))
    for a, b in zip(serial, pending):
        assert torch.equal(sources.to_device(b, torch.device("cpu")), sources.to_device(a, torch.device("cpu")))
    # The 50 x 60 image is distorted at its size, then zero-padded, centred.
    small = [(b, row) for b in serial for row, size in enumerate(b.sizes.tolist()) if size == [50, 60]]
    assert small, "the small image was never drawn"
    for b, row in small:
        image = b.images[row].long()
        assert image[:, 7:57, 2:62].float().mean() > 0 and image.sum() == image[:, 7:57, 2:62].sum()


def test_synthesis_groups_by_type_keeps_pristine_rows_and_is_deterministic():
    crops = (torch.rand(6, 3, 40, 40) * 255).round().to(torch.uint8)
    plans = [[("gaussian_blur", 3)], [], [("white_noise", 2)], [("gaussian_blur", 5)], [("white_noise", 2)], []]
    a = sources.synthesise(crops, plans, noise_seed=11)
    assert torch.equal(a, sources.synthesise(crops, plans, noise_seed=11))
    assert not torch.equal(a, sources.synthesise(crops, plans, noise_seed=12))  # white noise follows the seed
    assert torch.equal(a[1], crops[1].float() / 255) and torch.equal(a[5], crops[5].float() / 255)
    assert torch.equal(a, (a * 255).round() / 255)  # 8-bit values, as stored images
    assert not torch.equal(a[0], a[3])  # per-image levels within one call


def test_authentic_images_are_each_their_own_class(photo_folder, tmp_path):
    cfg = _cfg(source="folder", source_dir=str(photo_folder), region=64, crop=16, batch_size=2,
               authentic=str(photo_folder), authentic_batch_size=2)
    src = sources.Sources(cfg, tmp_path / "no-corpus", rank=0, world=1)
    imgs, labels = src.to_device(next(iter(src.batches(0, 1))))
    assert imgs.shape == (4, 3, 64, 64) and imgs.dtype == torch.float32
    assert (labels[:2] < corpus.N_CLASSES).all()
    assert labels[2:].tolist() != [] and (labels[2:] >= corpus.N_CLASSES).all() and labels[2] != labels[3]


def test_paper_knobs_train_from_files_with_authentic_images(photo_folder, tmp_path):
    cfg = _cfg(source="folder", source_dir=str(photo_folder), region=64, crop=16, batch_size=2,
               authentic=str(photo_folder), colour_spaces=list(views.COLOUR_SPACES), epochs=2,
               optimizer="sgd", lr=0.6, lr_base_batch=512, checkpoint_every=100)
    assert cfg.effective_lr() == pytest.approx(0.6 * 4 / 512)
    history = train(cfg, tmp_path / "no-corpus", tmp_path / "enc.pt", tmp_path / "ckpt")
    assert history[-1]["step"] == 2 * 2  # 4 images // 2 per step = 2 steps per epoch
    assert history[0]["lr"] == pytest.approx(cfg.effective_lr())  # warm-up of one step
    assert encoders.load(tmp_path / "enc.pt").arch == "small_cnn"


def test_images_too_small_to_distort_are_named(tmp_path):
    images.save_png(images.from_uint8(PHOTOS["coffee"]())[:, :40, :90], tmp_path / "tiny.png")
    ds = sources.ImageFiles([tmp_path / "tiny.png"], region=64, seed=0, distort=True)
    with pytest.raises(images.ImageError, match="tiny.png: 40 x 64 px is smaller than the 48 px"):
        ds[(0, 0, 0, 0)]
    with pytest.raises(ValueError, match="pretrain.region is 32 px"):
        sources.Sources(_cfg(source="folder", source_dir=str(tmp_path), region=32), tmp_path, rank=0, world=1)


def test_missing_source_folder_names_the_parameter(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain.source_dir"):
        train(_cfg(source="folder", source_dir=str(tmp_path / "nope")), tmp_path, tmp_path / "e.pt", tmp_path / "c")


def test_shards_made_by_other_distortion_code_are_regenerated(tmp_path, monkeypatch):
    kwargs = dict(photos=["astronaut"], crop=48, n_images=8, shard_size=8, seed=0)
    corpus.build(tmp_path, **kwargs)
    before = corpus.fingerprint(tmp_path)
    monkeypatch.setattr(corpus, "code_fingerprint", lambda: "other-engine")
    corpus.build(tmp_path, **kwargs)
    assert corpus.fingerprint(tmp_path) != before
    assert torch.load(tmp_path / "shard-00000.pt", weights_only=True)["config_hash"] == corpus.fingerprint(tmp_path)


# --- the device branches: CPU through the device-agnostic path, CUDA when present ------------------------------

from iqabench import runtime  # noqa: E402

cuda = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _on(marks):
    def wrap(fn):
        for mark in marks:
            fn = mark(fn)
        return fn
    return wrap


def test_runtime_branches_on_the_cpu():
    rt = runtime.setup("cpu")
    assert not rt.cuda and not rt.distributed
    with rt.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # full precision on the CPU
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert rt.distribute(model) == (model, model)  # one process: nothing wrapped, BN stays BN
    assert sources.placement("auto", rt.device) == "workers" and sources.placement("device", rt.device) == "device"
    with pytest.raises(ValueError, match="pretrain.synthesis must be one of"):
        sources.placement("gpu", rt.device)


@_on(cuda)
def test_cuda_runtime_autocasts_to_bf16_and_compiles():
    rt = runtime.setup("cuda")
    assert rt.cuda and sources.placement("auto", rt.device) == "device"
    with rt.autocast():
        assert (torch.ones(2, 2, device="cuda") @ torch.ones(2, 2, device="cuda")).dtype == torch.bfloat16
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).cuda()
    model, net = rt.distribute(model, compile=True)
    x = torch.rand(2, 3, 8, 8, device="cuda").contiguous(memory_format=torch.channels_last)
    assert torch.allclose(net(x), model(x), atol=1e-4)


@_on(cuda)
def test_cuda_synthesis_is_deterministic_and_matches_the_cpu_draws(photo_folder):
    crops = (torch.rand(6, 3, 48, 48) * 255).round().to(torch.uint8).pin_memory()
    plans = [[("gaussian_blur", 3)], [], [("white_noise", 2)], [("gaussian_blur", 5)], [("jpeg", 4)], []]
    a = sources.synthesise(crops, plans, noise_seed=3, device="cuda")
    assert a.device.type == "cuda" and torch.equal(a, sources.synthesise(crops, plans, 3, "cuda"))
    assert torch.equal(a[1].cpu(), crops[1].float() / 255)
    on_cpu = sources.synthesise(crops, plans, noise_seed=3)
    assert (a[0].cpu() - on_cpu[0]).abs().max() <= 1.5 / 255  # deterministic types agree to rounding
    # Pinned loader batches, distorted on the GPU: the same classes as the CPU placement draws.
    ds = sources.ImageFiles(sources.list_folder(photo_folder, "t"), region=64, seed=5, distort=True,
                            distort_in_workers=False)
    batch = next(iter(sources.file_loader(ds, 2, 0, 1, seed=5, start=0, total=1, workers=1, pin_memory=True)))
    assert batch.pending and batch.images.is_pinned()
    gpu = sources.to_device(batch, torch.device("cuda"))
    assert gpu.device.type == "cuda" and gpu.shape == (2, 3, 64, 64)
    assert torch.equal(batch.labels, _loaded(sources.ImageFiles(ds.paths, 64, 5, distort=True), 0, total=1)[0].labels)


@_on(cuda)
def test_cuda_pretraining_with_every_branch(photo_folder, tmp_path):
    # bf16 autocast, pinned loader batches, synthesis on the GPU, channels_last, torch.compile, all colour spaces.
    cfg = _cfg(source="folder", source_dir=str(photo_folder), region=64, crop=32, batch_size=2,
               authentic=str(photo_folder), colour_spaces=list(views.COLOUR_SPACES), steps=4, log_every=2,
               workers=1, compile=True, device="cuda")
    model, history = pretrain.fit(cfg, tmp_path / "no-corpus", tmp_path / "enc.pt", tmp_path / "ckpt")
    assert [h["step"] for h in history] == [2, 4] and all(math.isfinite(h["loss"]) for h in history)
    assert encoders.load(tmp_path / "enc.pt").arch == "small_cnn"
