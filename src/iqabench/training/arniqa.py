"""ARNIQA's pretraining batches (Agnolucci et al., WACV 2024; github.com/miccunifi/ARNIQA).

ARNIQA learns a distortion manifold: two *different* pristine images A and B
get the *same* random composition of distortions (1..``max_distortions``
types from distinct groups, random order, levels drawn from a half-Gaussian
that favours mild levels), and each is seen as a crop at full scale and a crop
of its half-size copy. As in ARNIQA's ``KADIS700Dataset`` and SimCLR loss:

- the crops are cut first (at each scale, at independent random positions,
  zero-padded when the image is smaller) and then distorted, each crop on its
  own, so noise realisations differ while types and levels are shared;
- the positive of A's full-scale crop is B's full-scale crop, and of A's
  half-scale crop B's half-scale crop; everything else in the batch, A's own
  other scale included, is a negative (the downscaling changes the perceived
  quality);
- with ``pristine_prob`` (ARNIQA: 0.05) a pair stays undistorted;
- the encoder sees two batches per step, A's crops of both scales and B's
  (``train.py``'s ``inputs_A`` and ``inputs_B``), so batch-norm statistics mix
  the scales as ARNIQA's do.

Departures: the distorted crops are rounded to 8 bits (as a stored image would
be; ARNIQA keeps them float after clipping), and batch norm and biases get no
weight decay (ARNIQA's SGD decays every parameter).

Every pair draws its images, crops and composition from its own generator
seeded by (run seed, step, global pair slot); loader workers only read and
crop (8-bit, as PIL's resize gives ARNIQA its half-size image). The
distortions of a whole step are then applied together (:func:`distort_pairs`,
one engine call per type and position instead of one per pair) from a
generator seeded by (run seed, step, first slot), where ``synthesis`` says: on
the training device, or in the loader workers (the default on the CPU; see
:mod:`.sources`). So a batch does not depend on the number of DataLoader
workers, and a resumed run draws exactly what an uninterrupted one would.

The pristine pool is the embedded photographs (``source: embedded``, the CPU
default) or image files (``folder`` / ``kadis700k``) read whole on demand.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..distortions import DISTORTION_GROUPS, NUM_LEVELS, class_index, class_name, sample_composition
from .sources import (Batch, _seed_worker, batch_indices, chw_uint8, min_crop, placement, read_uint8,
                      sample_seed, steps_per_epoch, synthesise, synthetic_paths)

# The four crops of a pair, in the order they are stacked.
A_FULL, A_HALF, B_FULL, B_HALF = range(4)
VIEW_SCALE = (0, 1, 0, 1)   # 0 = full scale, 1 = half scale
SOURCES = ("embedded", "folder", "kadis700k")


def level_probs(std: float) -> torch.Tensor:
    """ARNIQA's level distribution: a half-Gaussian (mean 0) over levels 1..5; std <= 0 gives uniform."""
    if std <= 0:
        return torch.full((NUM_LEVELS,), 1.0 / NUM_LEVELS, dtype=torch.float64)
    x = torch.arange(NUM_LEVELS, dtype=torch.float64)
    weights = torch.exp(-x ** 2 / (2 * std ** 2))
    return weights / weights.sum()


def half_scale(image: torch.Tensor) -> torch.Tensor:
    """Half-size copy as PIL's default ``resize`` (bicubic, antialiased) gives it, which ARNIQA uses."""
    h, w = image.shape[-2:]
    if min(h, w) < 2:
        raise ValueError(f"an image of {h}x{w} px is too small to halve; remove it from the pretraining source")
    return F.interpolate(image[None], size=(h // 2, w // 2), mode="bicubic", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def scales_uint8(image_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(full, half) 8-bit images: the half-size copy is rounded to 8 bits as PIL stores it."""
    half = half_scale(image_u8.float().div(255)).mul_(255).round_().to(torch.uint8)
    return image_u8, half


class PristinePool:
    """Pristine images by index: embedded photographs kept in memory, or files read on demand."""

    def __init__(self, photos: dict[str, torch.Tensor] | None = None, paths: list[Path] | None = None):
        if (photos is None) == (paths is None):
            raise ValueError("give either embedded photos or image paths")
        self.photos = {name: scales_uint8(img) for name, img in photos.items()} if photos else None
        self.names = list(photos) if photos else [str(p) for p in paths]
        self.paths = list(paths) if paths else None
        if not self.names:
            raise ValueError("the pristine pool is empty; give at least two images")

    def __len__(self) -> int:
        return len(self.names)

    def scales(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(full, half) uint8 3 x H x W images."""
        if self.photos is not None:
            return self.photos[self.names[index]]
        return scales_uint8(read_uint8(self.paths[index]))


def pool_for(cfg) -> PristinePool:
    """The pristine pool a :class:`~iqabench.training.pretrain.PretrainConfig` names."""
    if cfg.source == "embedded":
        from ..datasets.embedded import PHOTOS  # imports the metrics stack; file sources never need it
        names = list(cfg.photos) or sorted(PHOTOS)
        unknown = [n for n in names if n not in PHOTOS]
        if unknown:
            raise ValueError(f"pretrain.photos: unknown embedded photo(s) {unknown}; choose from {sorted(PHOTOS)}")
        return PristinePool(photos={n: chw_uint8(PHOTOS[n]()) for n in names})
    if cfg.source in ("folder", "kadis700k"):
        return PristinePool(paths=synthetic_paths(cfg.source, cfg.source_dir))
    raise ValueError(f"pretrain.objective 'arniqa' distorts pristine images on the fly: pretrain.source must be "
                     f"one of {list(SOURCES)}, got {cfg.source!r} (the corpus holds already-distorted crops)")


def random_crop(image: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """A size x size crop at a random position, zero-padded (bottom, right) where the image is smaller."""
    _, h, w = image.shape
    top = int(torch.randint(max(1, h - size + 1), (1,), generator=gen))
    left = int(torch.randint(max(1, w - size + 1), (1,), generator=gen))
    crop = image[:, top:top + size, left:left + size]
    return F.pad(crop, (0, size - crop.shape[2], 0, size - crop.shape[1]))


@dataclass(frozen=True)
class PairDraw:
    a: int
    b: int
    plan: list[tuple[str, int]]   # (type, level) steps shared by all four crops; [] = pristine


class PairViews(Dataset):
    """Items are ``(uint8 4 x 3 x crop x crop pristine crops, int64 max_k composition, key)`` for keys
    ``(step, slot, a)``; :meth:`collate` turns a step's items into a :class:`~.sources.Batch`.

    ``a`` is the index of image A, or -1 to draw it (a pool smaller than a
    global batch); B is drawn among the other images. The composition row holds
    :func:`~iqabench.distortions.class_index` of each step, padded with 0.
    """

    def __init__(self, pool: PristinePool, crop: int, seed: int, *, max_k: int = 4, level_std: float = 2.5,
                 pristine_prob: float = 0.05, distort_in_workers: bool = True):
        if len(pool) < 2:
            raise ValueError(f"ARNIQA pairs two different images; the pristine pool has {len(pool)}")
        if not 1 <= max_k <= len(DISTORTION_GROUPS):
            raise ValueError(f"pretrain.max_distortions must be in 1..{len(DISTORTION_GROUPS)} (one type per "
                             f"group), got {max_k}")
        smallest = min_crop()
        if crop < smallest:
            raise ValueError(f"pretrain.crop is {crop} px; ARNIQA distorts the crops and the spatial distortions "
                             f"need at least {smallest} px: raise pretrain.crop")
        if not 0.0 <= pristine_prob <= 1.0:
            raise ValueError(f"pretrain.pristine_prob must be in [0, 1], got {pristine_prob}")
        self.pool, self.crop, self.seed, self.max_k = pool, crop, seed, max_k
        self.level_probs, self.pristine_prob = level_probs(level_std), pristine_prob
        self.distort_in_workers = distort_in_workers

    def __len__(self) -> int:
        return len(self.pool)

    def _generator(self, step: int, slot: int) -> torch.Generator:
        return torch.Generator().manual_seed(sample_seed(self.seed, "arniqa", step, slot))

    def _draw(self, a: int, gen: torch.Generator) -> PairDraw:
        n = len(self.pool)
        if a < 0:
            a = int(torch.randint(n, (1,), generator=gen))
        b = int(torch.randint(n - 1, (1,), generator=gen))
        b += b >= a  # uniform over the other images
        pristine = float(torch.rand(1, generator=gen)) < self.pristine_prob
        plan = [] if pristine else sample_composition(gen, self.max_k, 1, self.level_probs)
        return PairDraw(a, b, plan)

    def draw(self, key: tuple[int, int, int]) -> PairDraw:
        """What the item of ``key`` is made of (the same draws as ``self[key]``)."""
        step, slot, a = key
        return self._draw(a, self._generator(step, slot))

    def pristine_crops(self, pair: PairDraw, gen: torch.Generator) -> torch.Tensor:
        crops = []
        for index in (pair.a, pair.b):
            full, half = self.pool.scales(index)
            crops += [random_crop(full, self.crop, gen), random_crop(half, self.crop, gen)]
        return torch.stack(crops)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        step, slot, a = key
        gen = self._generator(step, slot)
        pair = self._draw(a, gen)
        composition = torch.zeros(self.max_k, dtype=torch.int64)
        for k, (dist, level) in enumerate(pair.plan):
            composition[k] = class_index(dist, level)
        return self.pristine_crops(pair, gen), composition, key

    def collate(self, items: list) -> Batch:
        """A step's items as a :class:`~.sources.Batch` of uint8 N x 4 x 3 x crop x crop crops and their
        N x max_k compositions, distorted here when ``distort_in_workers``."""
        crops = torch.stack([item[0] for item in items])
        compositions = torch.stack([item[1] for item in items])
        step, first_slot, _ = items[0][2]
        batch = Batch(crops, compositions, None, sample_seed(self.seed, "arniqa-distort", step, first_slot), True)
        if not self.distort_in_workers:
            return batch
        distorted = distort_pairs(batch, "cpu").mul_(255).round_().to(torch.uint8)
        return batch._replace(images=distorted, pending=False)


def distort_pairs(batch: Batch, device: torch.device | str) -> torch.Tensor:
    """Float N x 4 x 3 x crop x crop on ``device``: each pair's four crops distorted by its composition.

    Rows of one pair share its plan: each type runs once per position over the whole step.
    """
    plans = [[class_name(c) for c in row.tolist() if c] for row in batch.labels]
    flat = synthesise(batch.images.flatten(0, 1), [plan for plan in plans for _ in range(4)], batch.noise_seed,
                      device)
    return flat.view(batch.images.shape[:2] + flat.shape[1:])


def step_keys(step: int, n: int, batch: int, rank: int, world: int, seed: int) -> list[tuple[int, int, int]]:
    """This rank's keys for a step: A follows the epoch permutation when the pool holds a global batch."""
    first = (step * world + rank) * batch
    if n >= batch * world:
        anchors = batch_indices(step, n, batch, rank, world, seed).tolist()
    else:
        anchors = [-1] * batch
    return [(step, first + i, a) for i, a in enumerate(anchors)]


class StepKeys:
    def __init__(self, n: int, batch: int, rank: int, world: int, seed: int, start: int, total: int):
        self.n, self.batch, self.rank, self.world, self.seed = n, batch, rank, world, seed
        self.start, self.total = start, total

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self):
        for step in range(self.start, self.total):
            yield step_keys(step, self.n, self.batch, self.rank, self.world, self.seed)


class PairSource:
    """ARNIQA's counterpart of :class:`~iqabench.training.sources.Sources` for the training loop.

    ``batches`` yields one :class:`~.sources.Batch` of N = ``batch_size`` pairs
    per process and step; ``to_device`` makes one the float N x 4 x 3 x crop x crop
    training batch (and N x max_k compositions).
    """

    def __init__(self, cfg, rank: int, world: int, device: torch.device | str = "cpu"):
        if cfg.authentic:
            raise ValueError("pretrain.authentic is a CONTRIQUE source; ARNIQA pretrains on synthetic "
                             "distortions only: leave pretrain.authentic empty with objective 'arniqa'")
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, torch.device(device)
        self.pin_memory = self.device.type == "cuda"
        self.dataset = PairViews(pool_for(cfg), cfg.crop, cfg.seed, max_k=cfg.max_distortions,
                                 level_std=cfg.level_std, pristine_prob=cfg.pristine_prob,
                                 distort_in_workers=placement(cfg.synthesis, self.device) == "workers")
        self.steps_per_epoch = steps_per_epoch(len(self.dataset), cfg.batch_size, world)
        if cfg.epochs > 0 and self.steps_per_epoch == 0:
            raise ValueError(f"pretrain.epochs needs a pool of at least one global batch ({cfg.batch_size} x "
                             f"{world} images), it has {len(self.dataset)}; set pretrain.steps and epochs: 0")

    def batches(self, start: int, total: int):
        cfg = self.cfg
        sampler = StepKeys(len(self.dataset), cfg.batch_size, self.rank, self.world, cfg.seed, start, total)
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.dataset.collate,
                            num_workers=cfg.workers,
                            pin_memory=self.pin_memory, worker_init_fn=_seed_worker if cfg.workers else None,
                            prefetch_factor=4 if cfg.workers else None)
        yield from loader

    def to_device(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.pending:
            return distort_pairs(batch, self.device), batch.labels
        return batch.images.to(self.device, non_blocking=True).float().div_(255), batch.labels


def views_and_targets(batch: torch.Tensor, grid: int, rank: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The four views of a float N x 4 x 3 x H x W batch and the NT-Xent targets of their patch vectors.

    A pair's full-scale crops share one target and its half-scale crops
    another; targets are unique to this rank so that gathered batches never
    pair one rank's image with another's.
    """
    n = batch.shape[0]
    pair = torch.arange(n, device=batch.device) + rank * 2 * n
    views = [batch[:, v] for v in range(4)]
    target = torch.cat([(pair + VIEW_SCALE[v] * n).repeat_interleave(grid ** 2) for v in range(4)])
    return views, target


class ArniqaHead(nn.Module):
    """ARNIQA's projector: linear, ReLU, linear (with biases, no batch norm)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

