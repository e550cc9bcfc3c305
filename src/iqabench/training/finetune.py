"""End-to-end fine-tuning of the pretrained encoder on each protocol split.

The frozen protocol (:mod:`iqabench.evaluation`) fits a ridge on fixed
CONTRIQUE features; here the encoder itself is unfrozen. A linear head reads
CONTRIQUE's two-scale feature (``head: two_scale``: L2-normalised pooled features of the
image and of its half-size copy, as :func:`~iqabench.models.preprocessing.pooled_features`
but with gradients) or the pooled feature alone (``head: pooled``) and
predicts the manifest's ``score``. AdamW trains both, the encoder at a lower
learning rate than the head, on random crops with horizontal flips of the
split's train images; the test images are scored whole and judged with
:func:`~iqabench.evaluation.compute_metrics`. The splits are
:func:`~iqabench.evaluation.random_splits` with the protocol's seed and
test fraction, so split ``k`` here holds the same images as split ``k`` of
``reports/within.csv``'s frozen-ridge rows.

The head starts at the frozen ridge fit (linear probe, then fine-tune) and BN
layers keep the pretrained statistics (``bn_stats: frozen``), so with zero
learning rates a split reproduces the frozen-ridge protocol's number exactly.

Everything random (batch rows, crop offsets, flips) is drawn from
generators seeded by (seed, split, step), so a run is a function of its config,
and a resumed run needs only model, optimiser and scheduler to continue
bit-for-bit on the CPU. Each split checkpoints into ``<ckpt_root>/<dataset>/
split-<k>/`` via :mod:`.checkpoint`; the last checkpoint of a finished split
carries its result, so a killed run skips finished splits and resumes the
unfinished one. The checkpoint is guarded by a hash of the config, the
manifest's and the encoder file's SHA-256, the split index and the code
(:func:`code_fingerprint`), so a fixed fine-tune never returns a result cached
by the old code.

Defaults are CPU-sized (3 splits x 40 steps x 32 crops of 96 px with the
small_cnn encoder: about 6 s per split on one CPU thread, plus loading). A GPU run closer to the
literature's end-to-end fine-tuning sets, through params: an encoder trained
with ``profiles/paper.yaml`` (ResNet-50), ``n_splits: 10``, ``crop: 224``,
``batch_size: 32..64``, ``steps`` for ~10-20 epochs of the train part,
``lr_encoder: 1e-5``, ``lr_head: 1e-3``, ``device: cuda`` (bf16 autocast) and
``max_short_side: 512``. Train and test images are kept in memory as uint8
after the short-side cap (KonIQ-10k at 512 px: about 10 GB).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.progress import Progress
from sklearn.linear_model import Ridge
from torch import nn

from .. import images, io, runtime
from ..evaluation import compute_metrics, random_splits
from ..models.encoders import Encoder, load as load_encoder
from ..models.preprocessing import CONTRIQUE, half_size
from . import checkpoint
from .corpus import config_hash

HEADS = ("two_scale", "pooled")
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
RESULT_COLUMNS = ["dataset", "split", "seed", "srcc", "plcc", "krcc", "rmse", "plcc_raw", "n_train", "n_test",
                  "loss_first", "loss_last", "seconds"]


@dataclass
class FinetuneConfig:
    n_splits: int = 3
    test_frac: float = 0.2          # of contents, as the protocol's evaluate.test_frac
    steps: int = 40                 # optimiser steps per split
    batch_size: int = 32
    crop: int = 96                  # training crop; test images are scored whole
    lr_head: float = 3e-3
    lr_encoder: float = 3e-5
    weight_decay: float = 1e-4      # AdamW, on weights only (not BN or biases)
    loss: str = "l1"                # "l1" or "mse" on the [0, 1] score
    head: str = "two_scale"         # "two_scale" (CONTRIQUE's 2 x D) or "pooled" (D)
    bn_stats: str = "frozen"        # "frozen": BN keeps the pretrained statistics; "train": batch statistics
    probe_alpha: float = 0.1        # head starts at the ridge fit with this alpha (CONTRIQUE's); <= 0: at zero
    max_short_side: int = 512       # larger images are downscaled on load, as the extract stage does
    logistic: str = "5pl"           # PLCC / RMSE mapping, as evaluate.logistic
    checkpoint_every: int = 20
    seed: int = 0                   # split seeds are seed + k, as the protocol's
    device: str = "auto"

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"finetune.loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.bn_stats not in ("frozen", "train"):
            raise ValueError(f"finetune.bn_stats must be 'frozen' or 'train', got {self.bn_stats!r}")
        if self.head not in HEADS:
            raise ValueError(f"finetune.head must be one of {list(HEADS)}, got {self.head!r}")
        for name in ("n_splits", "steps", "batch_size", "crop", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"finetune.{name} must be a positive integer, got {getattr(self, name)!r}")


class QualityRegressor(nn.Module):
    """Encoder + linear head; ``forward`` is the frozen protocol's feature, with gradients, then the head."""

    def __init__(self, encoder: Encoder, head: str = "two_scale"):
        super().__init__()
        self.encoder, self.head_kind = encoder, head
        self.head = nn.Linear(encoder.out_dim * (2 if head == "two_scale" else 1), 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_kind == "pooled":
            return self.encoder(x)
        half = half_size(x)  # the same half-size copy as preprocessing.pooled_features (PIL's resize to h // 2, w // 2)
        return torch.cat([F.normalize(self.encoder(x), dim=1), F.normalize(self.encoder(half), dim=1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)


class ImageStore:
    """A manifest's images as uint8 tensors, loaded once (after a short-side cap) and kept in memory."""

    def __init__(self, paths, max_short_side: int, where: str):
        self.paths = [str(p) for p in paths]
        missing = [p for p in self.paths if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"{where}: {len(missing)} image(s) listed but not on disk, first {missing[0]}; "
                                    "rebuild the dataset (`dvc repro prepare`) or fix the manifest's paths")
        self.max_short_side = max_short_side
        self._cache: dict[int, torch.Tensor] = {}

    def get(self, row: int) -> torch.Tensor:
        if row not in self._cache:
            image = images.load(self.paths[row])
            if self.max_short_side and min(image.shape[1:]) > self.max_short_side:
                image = images.resize_short_side(image, self.max_short_side)
            self._cache[row] = image.mul(255).round().to(torch.uint8)
        return self._cache[row]


def _generator(*keys: int) -> torch.Generator:
    # One stream per (seed, split, step): a resumed step draws exactly what the uninterrupted one drew.
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def train_batch(store: ImageStore, rows: np.ndarray, cfg: FinetuneConfig, gen: torch.Generator) -> tuple[
        torch.Tensor, np.ndarray]:
    """A batch of random crops (each flipped with p = 0.5) of train rows drawn with replacement-free sampling."""
    pick = torch.randperm(len(rows), generator=gen)[:cfg.batch_size]
    pick = torch.cat([pick, torch.randint(len(rows), (cfg.batch_size - len(pick),), generator=gen)])
    chosen = rows[pick.numpy()]
    crops = []
    for row in chosen:
        image = store.get(int(row))
        if min(image.shape[1:]) < cfg.crop:  # too small to crop: upscale so the crop fits
            image = images.resize_short_side(image.float().div(255), cfg.crop).mul(255).round().to(torch.uint8)
        h, w = image.shape[1:]
        top = int(torch.randint(h - cfg.crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - cfg.crop + 1, (1,), generator=gen))
        crop = image[:, top:top + cfg.crop, left:left + cfg.crop]
        if bool(torch.rand(1, generator=gen) < 0.5):
            crop = crop.flip(2)
        crops.append(crop)
    return torch.stack(crops).float().div_(255), chosen


@torch.no_grad()
def predict(model: QualityRegressor, store: ImageStore, rows: np.ndarray, device: torch.device,
            autocast, batch_size: int = 32, features: bool = False) -> np.ndarray:
    """Scores (or with ``features`` the head's input features) of whole images; equal sizes share a batch."""
    model.eval()
    out = np.empty((len(rows), model.head.in_features) if features else len(rows), dtype=np.float64)
    by_shape: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        by_shape.setdefault(tuple(store.get(int(row)).shape), []).append(i)
    for positions in by_shape.values():
        for start in range(0, len(positions), batch_size):
            part = positions[start:start + batch_size]
            batch = torch.stack([store.get(int(rows[i])) for i in part]).to(device).float().div_(255)
            with autocast():
                out[part] = (model.features(batch) if features else model(batch)).float().cpu().numpy()
    return out


def init_head(model: QualityRegressor, store: ImageStore, train_rows: np.ndarray, scores: np.ndarray,
              cfg: FinetuneConfig, rt: runtime.Runtime) -> None:
    """Linear probe, then fine-tune (LP-FT, Kumar et al. 2022): the head starts at the frozen ridge fit.

    A head that starts at zero sends near-random gradients into the encoder for
    its first steps and distorts the pretrained features; starting at the
    protocol's own ridge solution (alpha ``probe_alpha``, whole train images)
    means fine-tuning begins where the frozen baseline ends. ``probe_alpha <= 0``
    starts at zero weights and the mean train score instead.
    """
    target = scores[train_rows]
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(float(target.mean()))
        if cfg.probe_alpha <= 0:
            return
        feats = predict(model, store, train_rows, rt.device, rt.autocast, cfg.batch_size, features=True)
        ridge = Ridge(alpha=cfg.probe_alpha).fit(feats, target)
        model.head.weight.copy_(torch.as_tensor(ridge.coef_[None], dtype=torch.float32))
        model.head.bias.fill_(float(ridge.intercept_))


def _optimizer(model: QualityRegressor, cfg: FinetuneConfig) -> torch.optim.AdamW:
    groups = []
    for module, lr in ((model.encoder, cfg.lr_encoder), (model.head, cfg.lr_head)):
        params = list(module.parameters())
        groups += [{"params": [p for p in params if p.ndim > 1], "lr": lr, "weight_decay": cfg.weight_decay},
                   {"params": [p for p in params if p.ndim <= 1], "lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups)


def finetune_split(cfg: FinetuneConfig, store: ImageStore, scores: np.ndarray, train_rows: np.ndarray,
                   test_rows: np.ndarray, encoder_path: str | Path, ckpt_dir: str | Path, digest: str,
                   split_index: int, rt: runtime.Runtime, progress: Progress | None = None) -> dict:
    """Fine-tune on ``train_rows``, score ``test_rows``; resumes from / finishes into ``ckpt_dir``."""
    state = checkpoint.latest(ckpt_dir, digest)
    if state is not None and "result" in state:
        return state["result"]
    model = QualityRegressor(load_encoder(encoder_path, read_as=CONTRIQUE), cfg.head).to(rt.device)
    if state is None:
        init_head(model, store, train_rows, scores, cfg, rt)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    step, history, seconds = 0, [], 0.0
    if state is not None:
        model.load_state_dict(state["model"]), opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, history, seconds = state["step"], state["history"], state["seconds"]
    loss_fn = LOSSES[cfg.loss]
    target_all = torch.tensor(scores, dtype=torch.float32)
    task = progress.add_task(f"fine-tuning split {split_index}", total=cfg.steps, completed=step) if progress else None
    tic = time.perf_counter()
    while step < cfg.steps:
        model.train()
        if cfg.bn_stats == "frozen":
            # Small fine-tuning batches give noisy statistics that shift every feature the head was fitted on.
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        batch, chosen = train_batch(store, train_rows, cfg, _generator(cfg.seed, split_index, step))
        target = target_all[chosen].to(rt.device)
        with rt.autocast():
            pred = model(batch.to(rt.device))
        loss = loss_fn(pred.float(), target)
        if not torch.isfinite(loss):
            # No resume advice: a lower lr changes the checkpoint key, so the next run starts the split afresh.
            raise FloatingPointError(f"fine-tuning loss became {loss.item()} at step {step} of split {split_index}; "
                                     "lower finetune.lr_head / finetune.lr_encoder and run again")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        history.append(float(loss.item()))
        if progress:
            progress.update(task, completed=step, description=f"split {split_index} loss {history[-1]:.3f}")
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            seconds += time.perf_counter() - tic
            tic = time.perf_counter()
            _save(ckpt_dir, step, model, opt, sched, history, seconds, digest)
    pred = predict(model, store, test_rows, rt.device, rt.autocast, cfg.batch_size)
    seconds += time.perf_counter() - tic
    metrics = compute_metrics(pred, scores[test_rows], logistic=cfg.logistic)
    result = {"split": split_index, "seed": cfg.seed + split_index, **{k: metrics[k] for k in
              ("srcc", "plcc", "krcc", "rmse", "plcc_raw")}, "n_train": len(train_rows), "n_test": len(test_rows),
              "loss_first": history[0], "loss_last": history[-1], "seconds": round(seconds, 2)}
    _save(ckpt_dir, step, model, opt, sched, history, seconds, digest, result=result)
    return result


def _save(ckpt_dir, step, model, opt, sched, history, seconds, digest, result=None) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "step": step, "history": history, "seconds": seconds, "config_hash": digest}
    if result is not None:
        state["result"] = result
    checkpoint.save(ckpt_dir, step, state)


def finetune_dataset(cfg: FinetuneConfig, manifest: pd.DataFrame, encoder_path: str | Path,
                     ckpt_root: str | Path, dataset: str | None = None, manifest_path: str | Path | None = None,
                     show_progress: bool = True) -> pd.DataFrame:
    """One row per split (``RESULT_COLUMNS``); finished splits found in ``ckpt_root`` are not re-run."""
    cfg.check()
    dataset = dataset or str(manifest["dataset"].iloc[0])
    where = f"manifest {manifest_path}" if manifest_path else f"dataset {dataset}"
    encoder_path = Path(encoder_path)
    if not encoder_path.is_file():
        raise FileNotFoundError(f"{encoder_path}: no pretrained encoder; run `dvc repro pretrain` first")
    store = ImageStore(manifest["image"], cfg.max_short_side, where)
    scores = pd.to_numeric(manifest["score"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        row = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"{where}: 'score' is not a finite number in row {row} ({manifest['image'].iloc[row]})")
    splits = random_splits(manifest["content_id"].to_numpy(), n_splits=cfg.n_splits, test_frac=cfg.test_frac,
                           seed=cfg.seed)
    rt = runtime.setup(cfg.device)
    # The run's identity: config, the exact images and scores, and the exact starting weights.
    data_id = io.sha256_file(manifest_path) if manifest_path else hashlib.sha256(
        pd.util.hash_pandas_object(manifest[["image", "score", "content_id"]], index=False).values.tobytes()
    ).hexdigest()
    base = {k: v for k, v in asdict(cfg).items() if k not in ("device", "checkpoint_every")}
    base |= {"dataset": dataset, "data": data_id, "encoder": io.sha256_file(encoder_path), "code": code_fingerprint()}
    rows = []
    with Progress(disable=not show_progress, transient=True) as progress:
        for k, split in enumerate(splits):
            digest = config_hash(base | {"split": k})
            ckpt_dir = Path(ckpt_root) / dataset / f"split-{k}"
            try:
                result = finetune_split(cfg, store, scores, split.train, split.test, encoder_path, ckpt_dir, digest,
                                        k, rt, progress if show_progress else None)
            except FloatingPointError as err:  # the split does not know its dataset: name it for the stage's line
                raise FloatingPointError(f"dataset {dataset}: {err}") from None
            rows.append({"dataset": dataset, **result})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def code_fingerprint() -> str:
    """The source a split's result depends on: this loop, its checkpoints, the encoder, the protocol's splits
    and metrics, image loading and the runtime (device, autocast)."""
    package = Path(__file__).resolve().parents[1]
    return io.source_fingerprint(package / "training" / "finetune.py", package / "training" / "checkpoint.py",
                                 package / "models" / "encoders.py", package / "evaluation",
                                 package / "images.py", package / "runtime.py")
