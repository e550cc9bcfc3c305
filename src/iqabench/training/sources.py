"""Where pretraining images come from: the embedded corpus, or image files read on the fly.

``corpus`` is the synthesize stage's sharded tensor (the CPU default). For the
paper profile, images are files (KADIS-700k's pristine images, or any folder):
a worker reads a file, takes a random ``region`` x ``region`` window, applies a
synthetic distortion drawn by the engine, and returns it with its class
(0 = pristine, 1..125 = type x level). An optional authentic source (a folder
or a manifest of user-generated images) is read the same way, undistorted, and
each of its images is its own class: ``N_CLASSES + index``.

Randomness is drawn per sample from a generator seeded by (run seed, source,
epoch, index), so a batch is the same whatever the number of DataLoader
workers, and a resumed run draws exactly what an uninterrupted one would. The
batch sampler follows :func:`batch_indices` (DistributedSampler's shuffle and
drop_last, derived from the step), so every rank reads its own share.

An image smaller than ``region`` is distorted at its size and then zero-padded
to the region, centred, as CONTRIQUE's ``CenterCrop`` pads small images.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import images, manifest
from ..distortions import DistortionTransform
from . import corpus
from .corpus import N_CLASSES

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")


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
        return list_images("kadis700k", Path(source_dir or "data/raw/kadis700k"))
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


def random_window(image: torch.Tensor, region: int, gen: torch.Generator) -> torch.Tensor:
    _, h, w = image.shape
    hh, ww = min(region, h), min(region, w)
    top = int(torch.randint(h - hh + 1, (1,), generator=gen))
    left = int(torch.randint(w - ww + 1, (1,), generator=gen))
    return image[:, top:top + hh, left:left + ww]


def pad_to(image: torch.Tensor, region: int) -> torch.Tensor:
    _, h, w = image.shape
    if h == region and w == region:
        return image
    top, left = (region - h) // 2, (region - w) // 2
    return F.pad(image, (left, region - w - left, top, region - h - top))


class ImageFiles(Dataset):
    """Random windows of image files, distorted on the fly (synthetic) or not (authentic).

    Keys are ``(epoch, index)`` pairs from :class:`StepBatchSampler`; items are
    ``(uint8 3 x region x region, class)``.
    """

    def __init__(self, paths: list[Path], region: int, seed: int, *, distort: bool,
                 pristine_prob: float = 1 / N_CLASSES, label_offset: int = N_CLASSES):
        self.paths, self.region, self.seed, self.distort = list(paths), region, seed, distort
        self.label_offset = label_offset
        self.tag = "synthetic" if distort else "authentic"
        self.transform = DistortionTransform(mode="single", pristine_prob=pristine_prob) if distort else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        gen = torch.Generator().manual_seed(sample_seed(self.seed, self.tag, epoch, index))
        try:
            image = images.from_uint8(np.asarray(images.load_rgb(self.paths[index])))
        except OSError as exc:
            raise images.ImageError(f"{self.paths[index]}: not a readable image ({exc}); "
                                    "remove it from the pretraining source") from exc
        window = random_window(image, self.region, gen)
        if self.transform is not None:
            window, label = self.transform(window, generator=gen)
            label = int(label)
        else:
            label = self.label_offset + index
        return pad_to(window, self.region).mul(255).round().to(torch.uint8), label


class StepBatchSampler(Sampler):
    """Yields, for steps ``start..total-1``, this rank's ``(epoch, index)`` keys of each batch."""

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
            yield [(epoch, int(i)) for i in idx]


def _seed_worker(worker_id: int) -> None:
    # Libraries that use the global RNGs (none of ours do) still get distinct, reproducible streams.
    info = torch.utils.data.get_worker_info()
    random.seed(info.seed % 2 ** 32)
    np.random.seed(info.seed % 2 ** 32)


def file_loader(dataset: ImageFiles, batch: int, rank: int, world: int, seed: int, start: int, total: int,
                workers: int, pin_memory: bool) -> DataLoader:
    sampler = StepBatchSampler(len(dataset), batch, rank, world, seed, start, total)
    gen = torch.Generator().manual_seed(seed * 1_009 + rank * 101 + start)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      worker_init_fn=_seed_worker if workers else None, generator=gen,
                      prefetch_factor=4 if workers else None)


class CorpusBatches:
    """The embedded corpus, batched in memory as :func:`batch_indices` says."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, batch: int, rank: int, world: int,
                 seed: int, start: int, total: int):
        self.images, self.labels = images_u8, labels
        self.batch, self.rank, self.world, self.seed, self.start, self.total = batch, rank, world, seed, start, total

    def __iter__(self):
        for step in range(self.start, self.total):
            idx = batch_indices(step, len(self.images), self.batch, self.rank, self.world, self.seed)
            yield self.images[idx], self.labels[idx]


class Sources:
    """A run's synthetic source and optional authentic source, batched step by step in lockstep.

    ``cfg`` is a :class:`~iqabench.training.pretrain.PretrainConfig`. An epoch
    ends when the smaller source is used up, as CONTRIQUE zips its two loaders.
    """

    def __init__(self, cfg, corpus_dir: str | Path, rank: int, world: int, pin_memory: bool = False):
        self.cfg, self.rank, self.world, self.pin_memory = cfg, rank, world, pin_memory
        if cfg.source == "corpus":
            self.corpus = corpus.load(corpus_dir)
            self.synthetic, region = None, self.corpus[0].shape[-1]
            n_syn = len(self.corpus[0])
        else:
            self.corpus, region = None, cfg.region
            self.synthetic = ImageFiles(synthetic_paths(cfg.source, cfg.source_dir), region, cfg.seed,
                                        distort=True, pristine_prob=cfg.pristine_prob)
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
        """Iterator of (uint8 images, int64 labels) for steps ``start..total-1`` on this rank."""
        cfg, rank, world = self.cfg, self.rank, self.world
        if self.corpus is not None:
            synthetic = CorpusBatches(*self.corpus, cfg.batch_size, rank, world, cfg.seed, start, total)
        else:
            synthetic = file_loader(self.synthetic, cfg.batch_size, rank, world, cfg.seed, start, total,
                                    cfg.workers, self.pin_memory)
        if self.authentic is None:
            yield from synthetic
            return
        authentic = file_loader(self.authentic, self.authentic_batch, rank, world, cfg.seed + 1, start, total,
                                cfg.workers, self.pin_memory)
        for (syn, syn_labels), (ugc, ugc_labels) in zip(synthetic, authentic):
            yield torch.cat([syn, ugc]), torch.cat([syn_labels, ugc_labels])
