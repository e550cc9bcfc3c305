"""ARNIQA pretraining: pairs share a degradation across different images, the loss learns, resume is exact."""
import pytest
import torch
import torch.nn.functional as F

from iqabench.distortions import GROUP_OF, RANDOM_TYPES, apply_plans, class_name
from iqabench.models import encoders
from iqabench.training import arniqa
from iqabench.training.contrastive import multi_positive_nt_xent
from iqabench.training.pretrain import PretrainConfig, run_config, train

PHOTOS = ["astronaut", "coffee", "chelsea"]


def _cfg(**kw):
    base = dict(objective="arniqa", source="embedded", photos=PHOTOS, arch="small_cnn", width=4, crop=48,
                batch_size=6, steps=4, lr=2e-3, proj_hidden=16, proj_dim=8, grid=1, pristine_prob=0.05,
                checkpoint_every=2, log_every=1, seed=0, device="cpu")
    return PretrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pool():
    return arniqa.pool_for(_cfg())


def test_positives_share_the_distortion_sequence_and_differ_in_content(pool):
    views = arniqa.PairViews(pool, crop=48, seed=3, max_k=4, pristine_prob=0.0)
    keys = arniqa.step_keys(step=5, n=len(pool), batch=12, rank=0, world=1, seed=3)
    items = [views[key] for key in keys]
    assert items[0][0].dtype == torch.uint8  # workers only crop, in 8 bits
    batch = views.collate(items)
    batch_u8, compositions = batch.images, batch.labels
    assert batch_u8.shape == (12, 4, 3, 48, 48) and batch_u8.dtype == torch.uint8 and not batch.pending
    assert compositions.shape == (12, 4)
    checked_exactly = 0
    for key, (pristine, composition, _), distorted in zip(keys, items, batch_u8):
        pair = views.draw(key)
        assert pair.a != pair.b
        plan = [class_name(c) for c in composition.tolist() if c]
        assert plan == pair.plan and 1 <= len(plan) <= 4
        assert len(set(GROUP_OF[d] for d, _ in plan)) == len(plan)  # one type per group
        pristine = pristine.float() / 255
        a_full, b_full = pristine[arniqa.A_FULL], pristine[arniqa.B_FULL]
        assert (a_full - b_full).abs().mean() > 0.02  # two different photographs
        if not any(d in RANDOM_TYPES for d, _ in plan):
            # Deterministic types: every crop is exactly its pristine crop under the pair's one plan.
            expected = apply_plans(pristine, [plan] * 4, torch.Generator())
            assert torch.equal(distorted, expected.mul(255).round().to(torch.uint8))
            checked_exactly += 1
    assert checked_exactly > 0


def test_pairs_do_not_depend_on_workers_or_where_they_are_distorted_and_resume_reads_the_same_batches():
    source = arniqa.PairSource(_cfg(batch_size=4), rank=0, world=1)
    serial = [source.to_device(b) for b in source.batches(0, 3)]
    source.cfg = _cfg(batch_size=4, workers=2)
    parallel = [source.to_device(b) for b in source.batches(0, 3)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial, parallel))
    # Distorted by the training process (synthesis: device) instead of the loader: the same bits on the CPU.
    on_device = arniqa.PairSource(_cfg(batch_size=4, synthesis="device"), rank=0, world=1)
    raw = list(on_device.batches(0, 3))
    assert all(b.pending and b.images.dtype == torch.uint8 for b in raw)
    assert all(torch.equal(on_device.to_device(b)[0], a[0]) for b, a in zip(raw, serial))
    resumed = [source.to_device(b) for b in source.batches(2, 3)]
    assert torch.equal(resumed[0][0], serial[2][0])
    assert not torch.equal(serial[0][0], serial[1][0])
    assert serial[0][0].dtype == torch.float32 and serial[0][0].shape == (4, 4, 3, 48, 48)


def test_targets_make_same_scale_crops_of_a_pair_the_only_positives():
    n, grid = 3, 1
    views, target = arniqa.views_and_targets(torch.rand(n, 4, 3, 8, 8), grid)
    assert len(views) == 4 and views[arniqa.B_HALF].shape == (n, 3, 8, 8)
    by_view = target.view(4, n)
    assert torch.equal(by_view[arniqa.A_FULL], by_view[arniqa.B_FULL])
    assert torch.equal(by_view[arniqa.A_HALF], by_view[arniqa.B_HALF])
    assert not set(by_view[arniqa.A_FULL].tolist()) & set(by_view[arniqa.A_HALF].tolist())
    # With one positive per anchor the loss is SimCLR's NT-Xent, as ARNIQA's nt_xent_loss computes it.
    z = torch.randn(4 * n, 5)
    za, zb = z[:2 * n], z[2 * n:]  # rows: A full, A half | B full, B half
    a, b = F.normalize(za, dim=1), F.normalize(zb, dim=1)
    both = torch.cat([a, b])
    logits = (both @ both.T / 0.1).fill_diagonal_(float("-inf"))
    m = len(a)
    simclr = F.cross_entropy(logits, torch.cat([torch.arange(m, 2 * m), torch.arange(m)]))
    assert torch.allclose(multi_positive_nt_xent(z, target, 0.1), simclr, atol=1e-5)


def test_loss_falls_on_a_tiny_run(tmp_path):
    # One strong distortion per pair and 2 x 2 patch vectors per crop: a signal a tiny net picks up in 30 steps.
    cfg = _cfg(steps=30, batch_size=8, width=8, lr=5e-3, grid=2, proj_hidden=32, proj_dim=16, max_distortions=1,
               level_std=0.0, pristine_prob=0.0, warmup_frac=0.0, checkpoint_every=100)
    history = train(cfg, tmp_path / "no-corpus", tmp_path / "enc.pt", tmp_path / "ckpt")
    losses = [h["loss"] for h in history]
    assert sum(losses[-10:]) / 10 < sum(losses[:5]) / 5 - 0.05
    assert encoders.load(tmp_path / "enc.pt").arch == "small_cnn"


def test_the_encoder_sees_each_image_s_two_scales_in_one_pass_as_arniqa_s_train_py(tmp_path, monkeypatch):
    from iqabench.training import pretrain

    passes, forward = [], pretrain.ContrastiveModel.forward

    def spy(self, *views):
        passes.append([len(v) for v in views])
        return forward(self, *views)

    monkeypatch.setattr(pretrain.ContrastiveModel, "forward", spy)
    train(_cfg(steps=2, batch_size=4, checkpoint_every=100), tmp_path / "no-corpus", tmp_path / "e.pt", tmp_path / "k")
    assert passes == [[8, 8], [8, 8]]  # cat(A_full, A_half) and cat(B_full, B_half) of 4 pairs, each step


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, crash_after_first_checkpoint):
    cfg = _cfg()
    history = train(cfg, tmp_path / "no-corpus", tmp_path / "a.pt", tmp_path / "ckpt-a")
    with crash_after_first_checkpoint():
        train(cfg, tmp_path / "no-corpus", tmp_path / "b.pt", tmp_path / "ckpt-b")
    resumed = train(cfg, tmp_path / "no-corpus", tmp_path / "b.pt", tmp_path / "ckpt-b")
    assert [h["step"] for h in resumed] == [h["step"] for h in history]
    a, b = encoders.load(tmp_path / "a.pt").state_dict(), encoders.load(tmp_path / "b.pt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.load(tmp_path / "a.pt", weights_only=True)["pretrain"]["objective"] == "arniqa"


def test_contrique_runs_keep_their_recorded_config():
    # Checkpoint hashes and encoder metadata of CONTRIQUE runs must not see the ARNIQA keys,
    # or every existing checkpoint would stop resuming and every encoder file would change.
    recorded = run_config(PretrainConfig())
    assert not {"objective", "max_distortions", "level_std", "photos"} & set(recorded)
    assert run_config(_cfg())["objective"] == "arniqa"


@pytest.mark.parametrize("change, message", [
    (dict(source="corpus"), "pretrain.source must be one of"),
    (dict(crop=32), "raise pretrain.crop"),
    (dict(photos=["astronaut", "nope"]), "unknown embedded photo"),
    (dict(authentic="somewhere"), "leave pretrain.authentic empty"),
    (dict(objective="moco"), "pretrain.objective must be one of"),
])
def test_bad_settings_name_the_parameter(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        train(_cfg(**change), tmp_path / "no-corpus", tmp_path / "e.pt", tmp_path / "c")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pairs_are_cropped_in_workers_and_distorted_on_the_gpu(tmp_path):
    gpu = arniqa.PairSource(_cfg(batch_size=4, workers=1), rank=0, world=1, device="cuda")
    raw = next(iter(gpu.batches(0, 1)))
    assert raw.pending and raw.images.dtype == torch.uint8 and raw.images.is_pinned()
    images, compositions = gpu.to_device(raw)
    assert images.device.type == "cuda" and images.shape == (4, 4, 3, 48, 48)
    assert torch.equal(images, gpu.to_device(raw)[0])  # deterministic on the device
    cpu = arniqa.PairSource(_cfg(batch_size=4), rank=0, world=1)
    assert torch.equal(compositions, next(iter(cpu.batches(0, 1))).labels)  # the same draws as on the CPU
    history = train(_cfg(device="cuda", steps=2, checkpoint_every=2), tmp_path / "c", tmp_path / "e.pt", tmp_path / "k")
    assert len(history) == 2 and all(h["loss"] == h["loss"] for h in history)
