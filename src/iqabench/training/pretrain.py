"""Contrastive pretraining loop (CONTRIQUE, or ARNIQA): one code path for CPU, GPU and torchrun.

Two views of each image (a random crop at full resolution and one of the
half-resolution image, see :mod:`.views`) go through the encoder; the feature
maps are pooled into a grid of patch vectors, projected, and trained with the
multi-positive NT-Xent where the same class = positive: the distortion class
for synthetic images, the image itself for authentic ones (:mod:`.sources`).

The defaults are the CPU-sized recipe; ``profiles/paper.yaml`` sets the
paper's (ResNet-50, 256 px, SGD lr 0.6 per 512 images, 25 epochs, 256
synthetic + 256 authentic images per step). On CUDA the forward pass runs
under bf16 autocast, which needs no gradient scaler, so checkpoints hold none.

The host never waits for the device inside a step: the loss is summed on the
device and read every ``log_every`` steps (and before every checkpoint), where
a NaN or infinite loss stops the run at most ``log_every`` steps late with the
last good checkpoint kept (checkpoints are only written after a check).

``objective: arniqa`` swaps the batches, targets and projector for ARNIQA's
(:mod:`.arniqa`, ``docs/arniqa.md``); optimiser, schedule, checkpoints and
resume are shared.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from rich.progress import Progress

from .. import io, runtime
from ..models.encoders import Encoder, ProjectionHead, grid_patches, save as save_encoder
from . import arniqa, checkpoint, corpus
from .contrastive import multi_positive_nt_xent
from .sources import Sources, batch_indices  # noqa: F401  (batch_indices: public API of this module)
from .views import check_colour_spaces, make_views


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class PretrainConfig:
    arch: str = "small_cnn"
    width: int = 16
    crop: int = 64
    batch_size: int = 128          # synthetic images per process and step
    steps: int = 300               # ignored when epochs > 0
    epochs: int = 0                # > 0: steps = epochs x steps per epoch of the sources
    optimizer: str = "adamw"       # "sgd" is the paper's (momentum 0.9)
    lr: float = 2e-3
    lr_base_batch: int = 0         # > 0: lr is for this many images per step, scaled linearly to the real one
    momentum: float = 0.9
    weight_decay: float = 1e-4     # never applied to BN and bias parameters
    warmup_frac: float = 0.1
    temperature: float = 0.1
    proj_hidden: int = 128
    proj_dim: int = 64
    grid: int = 2
    colour_spaces: list[str] = field(default_factory=lambda: ["rgb"])
    source: str = "corpus"         # "corpus" (data/corpus), "kadis700k" or "folder": synthesised on the fly
    source_dir: str = ""           # folder for kadis700k (default data/raw/kadis700k) or folder
    region: int = 512              # on-the-fly: window read from each image before distortion and views
    pristine_prob: float = 1 / corpus.N_CLASSES
    authentic: str = ""            # folder or manifest CSV of user-generated images, each its own class
    authentic_batch_size: int = 0  # per process; 0 = batch_size
    workers: int = 0               # DataLoader workers for on-the-fly sources
    synthesis: str = "auto"        # where on-the-fly images are distorted: "device" (the training process),
                                   #   "workers" (the loader's), "auto" = device on CUDA, workers on the CPU
    all_gather: bool = False       # under DDP, contrast against every rank's projections (CONTRIQUE's GatherLayer)
    compile: bool = False          # torch.compile the model
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    # ARNIQA (objective "arniqa"): batch_size counts image pairs; source "embedded" (the photos below), "folder"
    # or "kadis700k"; pristine_prob is the chance a pair stays undistorted (ARNIQA: 0.05).
    objective: str = "contrique"   # "contrique" or "arniqa"
    max_distortions: int = 4       # ARNIQA: 1..this many distortions from distinct groups
    level_std: float = 2.5         # ARNIQA: std of the half-Gaussian over levels 1..5 (<= 0: uniform)
    photos: list[str] = field(default_factory=list)  # source "embedded": photo names (empty = all)

    def images_per_step(self, world: int = 1) -> int:
        authentic = (self.authentic_batch_size or self.batch_size) if self.authentic else 0
        return (self.batch_size + authentic) * world

    def effective_lr(self, world: int = 1) -> float:
        if self.lr_base_batch <= 0:
            return self.lr
        return self.lr * self.images_per_step(world) / self.lr_base_batch


OBJECTIVES = ("contrique", "arniqa")
# Keys added with ARNIQA: left out of a run's hash and metadata at their defaults, so that CONTRIQUE runs
# keep the hash (and resume from checkpoints) and the encoder metadata they had before.
_LATER_KEYS = {"objective": "contrique", "max_distortions": 4, "level_std": 2.5, "photos": [],
               "synthesis": "auto"}
# Settings that change how a run is watched and fed, not what it computes (every worker count reads the same
# samples): a resume across them is the same run. The device enters the hash as resolved ("auto" = "cpu" here).
_RESUME_NEUTRAL = ("checkpoint_every", "log_every", "workers", "device")


def run_config(cfg: PretrainConfig) -> dict:
    """The config as recorded in checkpoints and encoder files."""
    return {k: v for k, v in asdict(cfg).items() if k not in _LATER_KEYS or v != _LATER_KEYS[k]}


class ContrastiveModel(nn.Module):
    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        self.encoder = Encoder(cfg.arch, cfg.width)
        head = arniqa.ArniqaHead if cfg.objective == "arniqa" else ProjectionHead
        self.head = head(self.encoder.out_dim, cfg.proj_hidden, cfg.proj_dim)
        self.grid = cfg.grid

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.head(grid_patches(self.encoder.feature_map(v), self.grid)) for v in views])


def _optimizer(model: nn.Module, cfg: PretrainConfig, lr: float) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"pretrain.optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")


def _schedule(total_steps: int, warmup_frac: float) -> Callable[[int], float]:
    warmup = max(1, int(warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warmup:  # CONTRIQUE's LinearWarmupAndCosineAnneal: (step + 1) / (warmup + 1), 1 at step warmup
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
    return factor


def _gather(z: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's projections (gradients flow back to their owners) and labels."""
    import torch.distributed.nn.functional as dist_fn
    targets = [torch.empty_like(target) for _ in range(dist.get_world_size())]
    dist.all_gather(targets, target)
    return torch.cat(dist_fn.all_gather(z)), torch.cat(targets)


def train(cfg: PretrainConfig, corpus_dir: str | Path, encoder_path: str | Path, ckpt_dir: str | Path) -> list[dict]:
    """Train (resuming from ``ckpt_dir`` when a matching checkpoint exists); rank 0 writes the encoder."""
    return fit(cfg, corpus_dir, encoder_path, ckpt_dir)[1]


def fit(cfg: PretrainConfig, corpus_dir: str | Path, encoder_path: str | Path | None,
        ckpt_dir: str | Path) -> tuple[ContrastiveModel, list[dict]]:
    """:func:`train`, also returning this rank's trained model (on the CPU)."""
    check_colour_spaces(cfg.colour_spaces)
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"pretrain.objective must be one of {list(OBJECTIVES)}, got {cfg.objective!r}")
    rt = runtime.setup(cfg.device)
    # A checkpoint is resumed only by the same config, corpus content and training/distortion code.
    code = io.source_fingerprint(Path(__file__).resolve().parent, Path(__file__).resolve().parents[1] / "distortions")
    computed = {k: v for k, v in run_config(cfg).items() if k not in _RESUME_NEUTRAL}
    digest = corpus.config_hash(computed | {"corpus": str(corpus_dir), "world": rt.world_size,
                                            "device": rt.device.type, "corpus_hash": corpus.fingerprint(corpus_dir),
                                            "code": code})
    if cfg.log_every < 1 or cfg.checkpoint_every < 1:
        raise ValueError(f"pretrain.log_every and pretrain.checkpoint_every must be >= 1, got {cfg.log_every} "
                         f"and {cfg.checkpoint_every}")
    if cfg.objective == "arniqa":
        sources = arniqa.PairSource(cfg, rt.rank, rt.world_size, rt.device)
    else:
        sources = Sources(cfg, corpus_dir, rt.rank, rt.world_size, rt.device)
    total = cfg.epochs * sources.steps_per_epoch if cfg.epochs > 0 else cfg.steps
    runtime.seed_everything(cfg.seed)  # identical initial weights on every rank
    model = ContrastiveModel(cfg).to(rt.device, memory_format=torch.channels_last)
    opt = _optimizer(model, cfg, cfg.effective_lr(rt.world_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, cfg.warmup_frac))
    gen = torch.Generator().manual_seed(cfg.seed * 31 + rt.rank)
    step, history, partial = 0, [], (0.0, 0)
    state = checkpoint.latest(ckpt_dir, digest)
    if state is not None:
        model.load_state_dict(state["model"]), opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"]), gen.set_state(state["generator"][rt.rank])
        runtime.set_rng_state(state["rng"])
        step, history = state["step"], state["history"]
        partial = state.get("loss_window", (0.0, 0))  # the log window a checkpoint fell inside, if any
        if rt.is_main:
            print(f"resuming pretraining from {state['path']} (step {step}/{total})")
    elif rt.is_main and (others := checkpoint.of_other_settings(ckpt_dir, digest)):
        print(f"pretraining starts at step 0: the {len(others)} checkpoint(s) in {ckpt_dir} (up to {others[-1].name}) "
              "were written with other settings, code or data; each is kept until this run saves a later step")
    model, net = rt.distribute(model, cfg.compile)
    model.train()
    per_step = cfg.images_per_step(rt.world_size)
    # This rank's summed losses since the last log line, resumed too, so a resumed history is the uninterrupted one.
    loss_sum, window = torch.tensor(partial[0], device=rt.device), partial[1]
    with Progress(disable=not rt.is_main) as progress:
        task = progress.add_task("pretraining", total=total, completed=step)
        tic = time.perf_counter()
        for raw in sources.batches(step, total):
            batch, labels = sources.to_device(raw)
            if cfg.objective == "arniqa":
                views, target = arniqa.views_and_targets(batch, cfg.grid, rt.rank)
                # ARNIQA's train.py encodes cat(A_full, A_half) and cat(B_full, B_half): two passes whose
                # batch-norm statistics mix both scales (the outputs keep the views' order).
                views = [torch.cat(views[:2]), torch.cat(views[2:])] if views[0].shape == views[1].shape else views
            else:
                views = make_views(batch, cfg.crop, gen, cfg.colour_spaces)
                target = labels.repeat_interleave(cfg.grid ** 2).repeat(len(views))
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
            with rt.autocast():
                z = net(*views)
            if cfg.all_gather and rt.distributed:
                z, target = _gather(z, target)
            loss = multi_positive_nt_xent(z, target, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            step, window = step + 1, window + 1
            log = step % cfg.log_every == 0 or step == total
            if log or step % cfg.checkpoint_every == 0:
                # The one read of the device per check; every rank checks at the same steps, so all stop together.
                window_sum = _mean_over_ranks(loss_sum, rt.distributed).item()
                mean_loss = window_sum / window
                if not math.isfinite(mean_loss):
                    raise NonFiniteLoss(
                        f"pretraining loss became {mean_loss} between steps {step - window + 1} and {step}; the "
                        f"last good checkpoint in {ckpt_dir} is kept. Lower pretrain.lr (a new run) or check the "
                        "images, then run again.")
                if log:
                    elapsed = time.perf_counter() - tic
                    history.append({"step": step, "loss": mean_loss, "lr": sched.get_last_lr()[0],
                                    "images_per_s": window * per_step / max(elapsed, 1e-9), "seconds": elapsed})
                    progress.update(task, description=f"pretraining loss {mean_loss:.3f}")
                    loss_sum, window_sum, window = torch.zeros((), device=rt.device), 0.0, 0
                    tic = time.perf_counter()
                if step % cfg.checkpoint_every == 0 or step == total:
                    # The window's mean over ranks: every rank resumes from it, so the logged mean stays the same.
                    _checkpoint(rt, ckpt_dir, step, model, opt, sched, gen, history, digest, (window_sum, window))
            progress.update(task, completed=step)
    if rt.distributed:
        _average_bn_statistics(model)
    model = model.cpu()
    if rt.is_main and encoder_path is not None:
        save_encoder(model.encoder, encoder_path, pretrain=run_config(cfg) | {"total_steps": total})
    runtime.teardown()
    return model, history


def _mean_over_ranks(value: torch.Tensor, distributed: bool) -> torch.Tensor:
    # Every rank must see a non-finite loss on any rank, or the others would go on (and hang) without it.
    if distributed:
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def _average_bn_statistics(model: nn.Module) -> None:
    """Without SyncBN (the CPU), each rank's running statistics saw only its own batches: keep their mean."""
    with torch.no_grad():
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= dist.get_world_size()


def _checkpoint(rt, ckpt_dir, step, model, opt, sched, gen, history, digest, loss_window) -> None:
    generators = [gen.get_state()]
    if rt.distributed:
        generators = [None] * rt.world_size
        dist.all_gather_object(generators, gen.get_state())
    if rt.is_main:
        checkpoint.save(ckpt_dir, step, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": generators, "rng": runtime.rng_state(), "step": step, "history": history,
            "loss_window": loss_window, "config_hash": digest})
