"""Where pretraining images come from: the embedded corpus, or image files read on the fly.

``corpus`` is the synthesize stage's sharded tensor (the CPU default). For the
paper profile, images are files (KADIS-700k's pristine images, or any folder):
a DataLoader worker reads a file, decodes it, takes a random ``region`` x
``region`` window as 8-bit RGB and draws the window's class (0 = pristine,
1..125 = type x level); the synthetic half of the batch is then distorted as a
whole (:func:`synthesise`: batched engine calls grouped by type, per-image
levels) where ``synthesis`` says: on the training device (the default on CUDA:
a GPU distorts a batch far faster than CPU workers can, see issue 13), or in
the loader workers (the default on the CPU, where the training device *is* the
CPU and a worker overlaps the distortion with the training step). An optional
authentic source (a folder or a manifest of user-generated images) is read the
same way, undistorted, and each of its images is its own class:
``N_CLASSES + index``.

Randomness: each sample's window and class come from a generator seeded by
(run seed, source, epoch, index), and the distortions' own noise from one
generator per batch seeded by (run seed, step, first global slot) on the device
that distorts. So a batch is the same whatever the number of DataLoader
workers, a resumed run draws exactly what an uninterrupted one would, and on the
CPU both placements give identical bits. The batch sampler follows
:func:`batch_indices` (DistributedSampler's shuffle and drop_last, derived from
the step), so every rank reads its own share.

An image smaller than ``region`` is distorted at its size and then zero-padded
to the region, centred, as CONTRIQUE's ``CenterCrop`` pads small images
(:func:`synthesise` distorts such windows in groups of equal size).
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import images, manifest
from ..distortions import DistortionTransform, apply_plans, class_index, class_name
from . import corpus
from .corpus import N_CLASSES

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
PLACEMENTS = ("auto", "device", "workers")


def batch_indices(step: int, n: int, batch: int, rank: int, world: int, seed: int) -> torch.Tensor:
    """What DistributedSampler(shuffle, drop_last) yields, derived from the step so resume is exact."""
    per_step = batch * world
    steps_per_epoch = n // per_step
    if steps_per_epoch == 0:
        raise ValueError(f"a source of {n} images is smaller than one global batch of {per_step}; "
                         "lower pretrain.batch_size or add images")
    epoch, pos = divmod(step, steps_per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7_919 + epoch))
    start = (pos * world + rank) * batch
    return perm[start:start + batch]


def steps_per_epoch(n: int, batch: int, world: int) -> int:
    return n // (batch * world)


def list_folder(folder: str | Path, what: str) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: folder {folder} does not exist; put the images there or change the path")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{what}: no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    return paths


def synthetic_paths(source: str, source_dir: str) -> list[Path]:
    """Pristine images for on-the-fly synthesis: ``kadis700k`` or ``folder``."""
    if source == "kadis700k":
        from ..datasets.build import list_images
        from ..datasets.local import KADIS_ROOT
        return list_images("kadis700k", Path(source_dir or KADIS_ROOT))
    if source == "folder":
        if not source_dir:
            raise ValueError("pretrain.source 'folder' needs pretrain.source_dir, the folder of pristine images")
        return list_folder(source_dir, "pretrain.source_dir")
    raise ValueError(f"pretrain.source must be 'corpus', 'kadis700k' or 'folder', got {source!r}")


def authentic_paths(spec: str) -> list[Path]:
    """User-generated images from a folder or from an iqabench manifest (its ``image`` column)."""
    path = Path(spec)
    if path.suffix.lower() == ".csv":
        return [Path(p) for p in manifest.read(path)["image"]]
    return list_folder(path, "pretrain.authentic")


def sample_seed(seed: int, source: str, epoch: int, index: int) -> int:
    key = f"{seed}:{source}:{epoch}:{index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def min_crop() -> int:
    """The smallest image every distortion type accepts."""
    from ..distortions import spatial
    return max(spatial._ECC_PATCH + 2 * spatial._ECC_RADIUS, spatial._BLOCK)


def chw_uint8(array: np.ndarray) -> torch.Tensor:
    """H x W x 3 (or H x W gray) uint8 array -> 3 x H x W uint8 tensor: crops stay 8-bit until synthesis."""
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.array(array[..., :3])).permute(2, 0, 1)  # a copy: decoded arrays are read-only


def read_uint8(path: Path) -> torch.Tensor:
    """A file as a 3 x H x W uint8 tensor (decoding is all a worker does to a whole image)."""
    try:
        return chw_uint8(np.asarray(images.load_rgb(path)))
    except OSError as exc:
        raise images.ImageError(f"{path}: not a readable image ({exc}); remove it from the pretraining source") from exc


def random_window(image: torch.Tensor, region: int, gen: torch.Generator) -> torch.Tensor:
    _, h, w = image.shape
    hh, ww = min(region, h), min(region, w)
    top = int(torch.randint(h - hh + 1, (1,), generator=gen))
    left = int(torch.randint(w - ww + 1, (1,), generator=gen))
    return image[:, top:top + hh, left:left + ww]


def pad_offsets(h: int, w: int, region: int) -> tuple[int, int]:
    return (region - h) // 2, (region - w) // 2


def pad_to(image: torch.Tensor, region: int) -> torch.Tensor:
    _, h, w = image.shape
    if h == region and w == region:
        return image
    top, left = pad_offsets(h, w, region)
    return F.pad(image, (left, region - w - left, top, region - h - top))


def placement(synthesis: str, device: torch.device) -> str:
    """Where synthetic images are distorted: ``device`` (the training process) or ``workers``."""
    if synthesis not in PLACEMENTS:
        raise ValueError(f"pretrain.synthesis must be one of {list(PLACEMENTS)}, got {synthesis!r}")
    if synthesis == "auto":
        return "device" if device.type == "cuda" else "workers"
    return synthesis


def quantise(batch: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits in place, as a stored distorted image is (and as the images the encoder scores are)."""
    return batch.mul_(255).round_().div_(255)


def synthesise(images_u8: torch.Tensor, plans: list[list[tuple[str, int]]], noise_seed: int,
               device: torch.device | str = "cpu", sizes: torch.Tensor | None = None) -> torch.Tensor:
    """Float N x 3 x H x W in [0, 1] on ``device``: row i distorted by ``plans[i]`` ([] = pristine).

    Rows sharing a type (and a position in their plan) go through the engine in
    one call, with per-row levels. ``sizes`` (N x 2) are the windows' sizes
    before centred zero padding: a padded window is distorted at its own size,
    in a group of windows of that size. The noise of random types comes from
    one generator seeded by ``noise_seed`` on ``device``: given the plans, the
    result is deterministic on a device.
    """
    batch = images_u8.to(device, non_blocking=True).float().div_(255)
    if not any(plans):
        return batch
    gen = torch.Generator(device=batch.device).manual_seed(noise_seed)
    full = (batch.shape[2], batch.shape[3])
    groups: dict[tuple[int, int], list[int]] = {}
    for row, size in enumerate(sizes.tolist() if sizes is not None else [full] * len(plans)):
        if plans[row]:
            groups.setdefault(tuple(size), []).append(row)
    for (h, w), rows in sorted(groups.items()):
        if (h, w) == full:  # in place of a gather: rows left out get no steps
            keep = set(rows)
            batch = apply_plans(batch, [p if r in keep else [] for r, p in enumerate(plans)], gen)
            continue
        index = torch.tensor(rows, device=batch.device)
        top, left = pad_offsets(h, w, full[0])
        window = batch[index][:, :, top:top + h, left:left + w]
        batch[index, :, top:top + h, left:left + w] = apply_plans(window, [plans[r] for r in rows], gen)
    return quantise(batch)


def plans_of_labels(labels: torch.Tensor) -> list[list[tuple[str, int]]]:
    """A synthetic window's one (type, level) step from its class (0: pristine, no step)."""
    return [[class_name(c)] if c else [] for c in labels.tolist()]


class Batch(NamedTuple):
    """One source's share of a step, as a loader yields it (pinned when training on CUDA)."""
    images: torch.Tensor          # uint8 N x 3 x R x R
    labels: torch.Tensor          # int64 N: class, or N_CLASSES + index for authentic images
    sizes: torch.Tensor | None    # int64 N x 2: window sizes before padding (None: all R x R)
    noise_seed: int               # seeds the batch's distortion noise
    pending: bool                 # synthetic windows not yet distorted: the training process does it


class ImageFiles(Dataset):
    """Random 8-bit windows of image files, with the class each synthetic window is to be distorted to.

    Keys are ``(epoch, index, step, first_slot)`` from
    :class:`StepBatchSampler`; items are ``(uint8 3 x region x region, class,
    (h, w), (step, first_slot))``. :meth:`collate` makes a :class:`Batch`, distorting it when
    ``distort_in_workers`` (else the training process does, on its device).
    """

    def __init__(self, paths: list[Path], region: int, seed: int, *, distort: bool,
                 pristine_prob: float = 1 / N_CLASSES, label_offset: int = N_CLASSES,
                 distort_in_workers: bool = True):
        self.paths, self.region, self.seed, self.distort = list(paths), region, seed, distort
        self.label_offset, self.distort_in_workers = label_offset, distort_in_workers
        self.tag = "synthetic" if distort else "authentic"
        self.transform = DistortionTransform(mode="single", pristine_prob=pristine_prob) if distort else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple:
        epoch, index = key[0], key[1]
        gen = torch.Generator().manual_seed(sample_seed(self.seed, self.tag, epoch, index))
        window = random_window(read_uint8(self.paths[index]), self.region, gen)
        if self.transform is not None:
            if min(window.shape[1:]) < min_crop():
                raise images.ImageError(f"{self.paths[index]}: {window.shape[1]} x {window.shape[2]} px is smaller "
                                        f"than the {min_crop()} px every distortion type needs; remove it from the "
                                        "pretraining source")
            # The same draws, in the same order, as the transform makes before it distorts.
            label = class_index(*(self.transform.plan(gen) or [("pristine", 0)])[0])
        else:
            label = self.label_offset + index
        return pad_to(window, self.region).contiguous(), label, tuple(window.shape[1:]), key[2:]

    def collate(self, items: list) -> Batch:
        step, first_slot = items[0][3]
        images_u8 = torch.stack([item[0] for item in items])
        labels = torch.tensor([item[1] for item in items], dtype=torch.int64)
        sizes = torch.tensor([item[2] for item in items], dtype=torch.int64)
        seed = sample_seed(self.seed, f"{self.tag}-distort", step, first_slot)
        if self.transform is None or not self.distort_in_workers:
            return Batch(images_u8, labels, sizes, seed, self.transform is not None)
        distorted = synthesise(images_u8, plans_of_labels(labels), seed, "cpu", sizes)
        return Batch(distorted.mul_(255).round_().to(torch.uint8), labels, sizes, seed, False)


class StepBatchSampler(Sampler):
    """Yields, for steps ``start..total-1``, this rank's ``(epoch, index, step, first_slot)`` keys of each batch."""

    def __init__(self, n: int, batch: int, rank: int, world: int, seed: int, start: int, total: int):
        self.n, self.batch, self.rank, self.world, self.seed = n, batch, rank, world, seed
        self.start, self.total = start, total
        self.per_epoch = steps_per_epoch(n, batch, world)

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self):
        for step in range(self.start, self.total):
            epoch = step // max(1, self.per_epoch)
            idx = batch_indices(step, self.n, self.batch, self.rank, self.world, self.seed)
            first_slot = (step * self.world + self.rank) * self.batch
            yield [(epoch, int(i), step, first_slot) for i in idx]


def _seed_worker(worker_id: int) -> None:
    # Libraries that use the global RNGs (none of ours do) still get distinct, reproducible streams.
    info = torch.utils.data.get_worker_info()
    random.seed(info.seed % 2 ** 32)
    np.random.seed(info.seed % 2 ** 32)


def file_loader(dataset: ImageFiles, batch: int, rank: int, world: int, seed: int, start: int, total: int,
                workers: int, pin_memory: bool) -> DataLoader:
    """A :class:`Batch` of ``dataset`` per step ``start..total-1`` on this rank."""
    sampler = StepBatchSampler(len(dataset), batch, rank, world, seed, start, total)
    gen = torch.Generator().manual_seed(seed * 1_009 + rank * 101 + start)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=dataset.collate, num_workers=workers,
                      pin_memory=pin_memory, worker_init_fn=_seed_worker if workers else None, generator=gen,
                      prefetch_factor=4 if workers else None)


class CorpusBatches:
    """The embedded corpus (already distorted), batched in memory as :func:`batch_indices` says."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, batch: int, rank: int, world: int,
                 seed: int, start: int, total: int, pin_memory: bool = False):
        self.images, self.labels, self.pin_memory = images_u8, labels, pin_memory
        self.batch, self.rank, self.world, self.seed, self.start, self.total = batch, rank, world, seed, start, total

    def __iter__(self):
        for step in range(self.start, self.total):
            idx = batch_indices(step, len(self.images), self.batch, self.rank, self.world, self.seed)
            images_u8 = self.images[idx]
            # Pinned host memory lets the copy to the GPU overlap the previous step.
            yield Batch(images_u8.pin_memory() if self.pin_memory else images_u8, self.labels[idx], None, 0, False)


def to_device(batch: Batch, device: torch.device) -> torch.Tensor:
    """A :class:`Batch` as float images in [0, 1] on ``device``, distorted there if still pending."""
    if batch.pending:
        return synthesise(batch.images, plans_of_labels(batch.labels), batch.noise_seed, device, batch.sizes)
    return batch.images.to(device, non_blocking=True).float().div_(255)


class Sources:
    """A run's synthetic source and optional authentic source, batched step by step in lockstep.

    ``cfg`` is a :class:`~iqabench.training.pretrain.PretrainConfig`. An epoch
    ends when the smaller source is used up, as CONTRIQUE zips its two loaders.
    ``batches`` yields what the loaders made (host memory); ``to_device`` turns
    one into the training batch on the device.
    """

    def __init__(self, cfg, corpus_dir: str | Path, rank: int, world: int, device: torch.device | str = "cpu"):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, torch.device(device)
        self.pin_memory = self.device.type == "cuda"
        in_workers = placement(cfg.synthesis, self.device) == "workers"
        if cfg.source == "corpus":
            self.corpus = corpus.load(corpus_dir)
            self.synthetic, region = None, self.corpus[0].shape[-1]
            n_syn = len(self.corpus[0])
        else:
            if cfg.region < min_crop():
                raise ValueError(f"pretrain.region is {cfg.region} px; the distortions need at least {min_crop()}")
            self.corpus, region = None, cfg.region
            self.synthetic = ImageFiles(synthetic_paths(cfg.source, cfg.source_dir), region, cfg.seed,
                                        distort=True, pristine_prob=cfg.pristine_prob,
                                        distort_in_workers=in_workers)
            n_syn = len(self.synthetic)
        self.authentic = None
        per_epoch = steps_per_epoch(n_syn, cfg.batch_size, world)
        if cfg.authentic:
            self.authentic = ImageFiles(authentic_paths(cfg.authentic), region, cfg.seed, distort=False)
            per_epoch = min(per_epoch, steps_per_epoch(len(self.authentic), self.authentic_batch, world))
        if per_epoch == 0:
            raise ValueError(f"a pretraining source is smaller than one global batch ({cfg.batch_size} x {world} "
                             "synthetic, plus authentic); lower pretrain.batch_size or add images")
        self.steps_per_epoch = per_epoch

    @property
    def authentic_batch(self) -> int:
        return self.cfg.authentic_batch_size or self.cfg.batch_size

    def batches(self, start: int, total: int):
        """Iterator of ``(synthetic Batch, authentic Batch or None)`` for steps ``start..total-1`` on this rank."""
        cfg, rank, world = self.cfg, self.rank, self.world
        if self.corpus is not None:
            synthetic = CorpusBatches(*self.corpus, cfg.batch_size, rank, world, cfg.seed, start, total,
                                      self.pin_memory)
        else:
            synthetic = file_loader(self.synthetic, cfg.batch_size, rank, world, cfg.seed, start, total,
                                    cfg.workers, self.pin_memory)
        if self.authentic is None:
            for batch in synthetic:
                yield batch, None
            return
        authentic = file_loader(self.authentic, self.authentic_batch, rank, world, cfg.seed + 1, start, total,
                                cfg.workers, self.pin_memory)
        yield from zip(synthetic, authentic)

    def to_device(self, raw: tuple[Batch, Batch | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """(float images in [0, 1], int64 labels) on the training device, synthetic rows first."""
        synthetic, authentic = raw
        parts = [b for b in (synthetic, authentic) if b is not None]
        images_ = torch.cat([to_device(b, self.device) for b in parts])
        labels = torch.cat([b.labels for b in parts]).to(self.device, non_blocking=True)
        return images_, labels
