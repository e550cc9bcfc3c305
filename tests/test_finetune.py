"""End-to-end fine-tuning on a tiny generated set: it learns, is deterministic, resumes exactly, fails clearly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage import data, filters, transform

from iqabench import manifest
from iqabench.models import encoders
from iqabench.training import finetune
from iqabench.training.finetune import FinetuneConfig, QualityRegressor, finetune_dataset

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
SIGMAS = (0.0, 0.7, 1.4, 2.1, 2.8, 3.5)   # blur strength; quality falls as it grows
SIZE = 48


def _cfg(**overrides) -> FinetuneConfig:
    base = dict(n_splits=2, test_frac=0.25, steps=6, batch_size=8, crop=32, lr_head=1e-2, lr_encoder=1e-3,
                checkpoint_every=3, device="cpu")
    return FinetuneConfig(**(base | overrides))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Helpers share 2 cores: several threads per process oversubscribe them and run ~5x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """24 blurred photos (4 contents x 6 blur levels) with score = 1 - level / 5, and a small random encoder."""
    root = tmp_path_factory.mktemp("tiny")
    paths, raw, content = [], [], []
    for name in PHOTOS:
        photo = transform.resize(getattr(data, name)(), (SIZE, SIZE), anti_aliasing=True)
        for level, sigma in enumerate(SIGMAS):
            blurred = filters.gaussian(photo, sigma=sigma, channel_axis=-1) if sigma else photo
            path = root / "images" / f"{name}-{level}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray((np.clip(blurred, 0, 1) * 255).round().astype(np.uint8)).save(path)
            paths.append(path), raw.append(5 - level), content.append(name)
    frame = manifest.make("tiny-blur", paths, raw, score_type="MOS", lo=0, hi=5, higher_is_better=True,
                          score_source="blur level", content_id=content)
    manifest.write(frame, root / "manifest.csv")
    torch.manual_seed(0)
    encoder = encoders.Encoder("small_cnn", width=4)
    # A trained encoder's BN statistics fit its images; a fresh one's (0 mean, unit variance) do not.
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration pass
    with torch.no_grad():
        encoder.train()(torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1).float() / 255
                                     for p in paths]))
    encoder_path = root / "encoder.pt"
    encoders.save(encoder, encoder_path)
    return root / "manifest.csv", encoder_path


def _run(tiny, ckpt_root, cfg=None) -> pd.DataFrame:
    manifest_path, encoder_path = tiny
    return finetune_dataset(cfg or _cfg(), manifest.read(manifest_path), encoder_path, ckpt_root,
                            manifest_path=manifest_path, show_progress=False)


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["seconds"])


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> pd.DataFrame:
    return _run(tiny, tmp_path_factory.mktemp("ckpt-reference"))


def test_reports_every_split_on_the_protocol_split_sizes(reference):
    assert list(reference["split"]) == [0, 1]
    # 4 contents at test_frac 0.25: one whole photo (6 images) is held out.
    assert (reference["n_test"] == 6).all() and (reference["n_train"] == 18).all()
    assert reference[["srcc", "plcc", "krcc", "rmse"]].notna().all().all()


def _train_loss(tiny, ckpt_dir: Path, cfg: FinetuneConfig) -> float:
    """L1 loss of a split-0 checkpoint's model on centre crops of all of split 0's train images."""
    manifest_path, encoder_path = tiny
    frame = manifest.read(manifest_path)
    split = finetune.random_splits(frame["content_id"], n_splits=1, test_frac=cfg.test_frac, seed=cfg.seed)[0]
    store = finetune.ImageStore(frame["image"], 0, "tiny")
    crops = torch.stack([store.get(int(r))[:, 8:40, 8:40] for r in split.train]).float() / 255
    target = torch.tensor(frame["score"].to_numpy()[split.train], dtype=torch.float32)
    state = torch.load(max((ckpt_dir / "tiny-blur" / "split-0").glob("step-*.pt")), weights_only=True)
    model = QualityRegressor(encoders.load(encoder_path), cfg.head)
    model.load_state_dict(state["model"])
    with torch.no_grad():
        return (model.eval()(crops) - target).abs().mean().item()


def test_fine_tuning_lowers_the_training_loss(tiny, tmp_path):
    untrained = _cfg(n_splits=1, steps=1, lr_head=0.0, lr_encoder=0.0)
    trained = _cfg(n_splits=1, steps=25, checkpoint_every=25)
    _run(tiny, tmp_path / "untrained", untrained)
    _run(tiny, tmp_path / "trained", trained)
    before = _train_loss(tiny, tmp_path / "untrained", untrained)
    after = _train_loss(tiny, tmp_path / "trained", trained)
    assert after < 0.8 * before


def test_results_are_deterministic_under_a_seed(tiny, reference, tmp_path):
    again = _run(tiny, tmp_path)
    pd.testing.assert_frame_equal(_comparable(again), _comparable(reference))
    other_seed = _run(tiny, tmp_path / "other", _cfg(seed=1))
    assert not np.allclose(other_seed["loss_last"], reference["loss_last"])


def test_interrupted_run_resumes_to_identical_results(tiny, reference, tmp_path, monkeypatch):
    real_split, real_save = finetune.finetune_split, finetune._save
    saves = []

    def crash_mid_split(*args, **kwargs):
        real_save(*args, **kwargs)
        saves.append(args[1])
        if len(saves) == 1:
            raise KeyboardInterrupt("killed after the first checkpoint of split 0")

    monkeypatch.setattr(finetune, "_save", crash_mid_split)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path)
    assert saves == [3]  # killed at step 3 of 6, mid split 0

    finished = []

    def crash_after_first_split(*args, **kwargs):
        finished.append(real_split(*args, **kwargs))
        if len(finished) == 1:
            raise KeyboardInterrupt("killed after split 0 finished")
        return finished[-1]

    monkeypatch.setattr(finetune, "finetune_split", crash_after_first_split)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path)
    assert saves[1] == 6  # split 0 resumed at step 3 and wrote its final checkpoint at step 6

    resumed = _run(tiny, tmp_path)
    assert saves == [3, 6, 3, 6]  # the last run trained split 1 only: split 0's result came from its checkpoint
    assert finished[1] == finished[0]
    pd.testing.assert_frame_equal(_comparable(resumed), _comparable(reference))


def test_changed_config_does_not_resume_an_old_checkpoint(tiny, reference, tmp_path):
    _run(tiny, tmp_path, _cfg(lr_head=0.5))
    pd.testing.assert_frame_equal(_comparable(_run(tiny, tmp_path)), _comparable(reference))


def test_missing_image_is_named(tiny, tmp_path):
    manifest_path, encoder_path = tiny
    frame = manifest.read(manifest_path)
    frame.loc[3, "image"] = str(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        finetune_dataset(_cfg(), frame, encoder_path, tmp_path, show_progress=False)
