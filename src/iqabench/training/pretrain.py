"""CONTRIQUE-style pretraining loop: one code path for CPU, GPU and torchrun.

Two views of each corpus image (a random crop at full resolution and one of the
half-resolution image, both randomly flipped) go through the encoder; the
feature maps are pooled into a 2x2 grid of patch vectors, projected, and
trained with the multi-positive NT-Xent where same distortion class = positive.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from rich.progress import Progress

from .. import runtime
from ..models.encoders import Encoder, ProjectionHead, grid_patches, save as save_encoder
from . import checkpoint, corpus
from .contrastive import multi_positive_nt_xent


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class PretrainConfig:
    arch: str = "small_cnn"
    width: int = 16
    crop: int = 64
    batch_size: int = 128          # per process
    steps: int = 300
    optimizer: str = "adamw"       # "sgd" is the paper's (momentum 0.9)
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4     # never applied to BN and bias parameters
    warmup_frac: float = 0.1
    temperature: float = 0.1
    proj_hidden: int = 128
    proj_dim: int = 64
    grid: int = 2
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    device: str = "auto"


class ContrastiveModel(nn.Module):
    def __init__(self, cfg: PretrainConfig):
        super().__init__()
        self.encoder = Encoder(cfg.arch, cfg.width)
        self.head = ProjectionHead(self.encoder.out_dim, cfg.proj_hidden, cfg.proj_dim)
        self.grid = cfg.grid

    def forward(self, *views: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.head(grid_patches(self.encoder.feature_map(v), self.grid)) for v in views])


def make_views(batch: torch.Tensor, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-resolution crop and half-resolution crop of each image, each randomly flipped."""
    half = F.interpolate(batch, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return _random_crop_flip(batch, crop, gen), _random_crop_flip(half, min(crop, *half.shape[2:]), gen)


def _random_crop_flip(batch: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = batch.shape
    if size > min(h, w):
        raise ValueError(f"crop {size} px is larger than the corpus images ({h}x{w}); lower pretrain.crop")
    tops = torch.randint(h - size + 1, (n,), generator=gen).tolist()
    lefts = torch.randint(w - size + 1, (n,), generator=gen).tolist()
    out = torch.stack([img[:, t:t + size, l:l + size] for img, t, l in zip(batch, tops, lefts)])
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def batch_indices(step: int, n: int, batch: int, rank: int, world: int, seed: int) -> torch.Tensor:
    """What DistributedSampler(shuffle, drop_last) yields, derived from the step so resume is exact."""
    per_step = batch * world
    steps_per_epoch = n // per_step
    if steps_per_epoch == 0:
        raise ValueError(f"corpus of {n} images is smaller than one global batch of {per_step}")
    epoch, pos = divmod(step, steps_per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7_919 + epoch))
    start = (pos * world + rank) * batch
    return perm[start:start + batch]


def _optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"pretrain.optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")


def _schedule(cfg: PretrainConfig) -> Callable[[int], float]:
    warmup = max(1, int(cfg.warmup_frac * cfg.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, cfg.steps - warmup)))
    return factor


def train(cfg: PretrainConfig, corpus_dir: str | Path, encoder_path: str | Path, ckpt_dir: str | Path) -> list[dict]:
    """Train (resuming from ``ckpt_dir`` when a matching checkpoint exists); rank 0 writes the encoder."""
    rt = runtime.setup(cfg.device)
    digest = corpus.config_hash(asdict(cfg) | {"corpus": str(corpus_dir), "world": rt.world_size})
    images_u8, labels = corpus.load(corpus_dir)
    runtime.seed_everything(cfg.seed)  # identical initial weights on every rank
    model = ContrastiveModel(cfg).to(rt.device, memory_format=torch.channels_last)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    gen = torch.Generator().manual_seed(cfg.seed * 31 + rt.rank)
    step, history = 0, []
    state = checkpoint.latest(ckpt_dir, digest)
    if state is not None:
        model.load_state_dict(state["model"]), opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"]), gen.set_state(state["generator"][rt.rank])
        runtime.set_rng_state(state["rng"])
        step, history = state["step"], state["history"]
        if rt.is_main:
            print(f"resuming pretraining from {state['path']} (step {step}/{cfg.steps})")
    net = model
    if rt.distributed:
        if rt.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DDP(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    model.train()
    with Progress(disable=not rt.is_main) as progress:
        task = progress.add_task("pretraining", total=cfg.steps, completed=step)
        tic = time.perf_counter()
        while step < cfg.steps:
            idx = batch_indices(step, len(images_u8), cfg.batch_size, rt.rank, rt.world_size, cfg.seed)
            batch = images_u8[idx].float().div_(255)
            views = [v.to(rt.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                     for v in make_views(batch, cfg.crop, gen)]
            target = labels[idx].to(rt.device).repeat_interleave(cfg.grid ** 2).repeat(len(views))
            with rt.autocast():
                z = net(*views)
            loss = multi_positive_nt_xent(z, target, cfg.temperature)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(
                    f"pretraining loss became {loss.item()} at step {step}; the last good checkpoint in "
                    f"{ckpt_dir} is kept. Lower pretrain.lr or check the corpus, then run again to resume.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                elapsed = time.perf_counter() - tic
                history.append({"step": step, "loss": loss.item(), "lr": sched.get_last_lr()[0],
                                "images_per_s": cfg.log_every * cfg.batch_size * rt.world_size / max(elapsed, 1e-9)})
                tic = time.perf_counter()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _checkpoint(rt, ckpt_dir, step, model, opt, sched, gen, history, digest)
            progress.update(task, completed=step, description=f"pretraining loss {loss.item():.3f}")
    if rt.is_main:
        save_encoder(model.encoder.cpu(), encoder_path, pretrain=asdict(cfg))
    runtime.teardown()
    return history


def _checkpoint(rt, ckpt_dir, step, model, opt, sched, gen, history, digest) -> None:
    generators = [gen.get_state()]
    if rt.distributed:
        generators = [None] * rt.world_size
        torch.distributed.all_gather_object(generators, gen.get_state())
    if rt.is_main:
        checkpoint.save(ckpt_dir, step, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "generator": generators, "rng": runtime.rng_state(), "step": step, "history": history,
            "config_hash": digest})
