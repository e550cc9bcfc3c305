"""The embedded default: two labelled datasets built from scikit-image's photographs.

No network and no GPU are needed: scikit-image ships these photographs inside
its wheel. Each photograph is cut into non-overlapping content patches (the most
textured ones, so that near-empty sky or black space is skipped), and each patch
is distorted several times with the KADID-style engine:

* ``synthetic-single``: one distortion type at one of 5 levels per image;
* ``synthetic-mixed``: 2-3 types from distinct groups, composed (ARNIQA-style).

The two sets use disjoint photographs, so they share no content. Their scores
are pseudo-MOS from full-reference metrics (see :mod:`iqabench.fr_metrics`),
not human ratings: the manifest's ``score_source`` column says so.

No image is degenerate: a distortion that leaves a (nearly) flat patch (8-bit
luma with a standard deviation below ``FLAT_STD`` grey levels, e.g. colour
diffusion at level 5 on a dark patch) is re-drawn, deterministically, from a
generator of its own (seed, set, image index, attempt), so the main draw, and
every set without such an image, is unchanged. Rows undefined on an image of a
real dataset are handled by the protocol instead (:mod:`iqabench.features`).

Floats are written at fixed precision (:func:`iqabench.io.write_csv`) and the
pseudo-MOS is computed from the metric values rounded as they are stored, so a
manifest's bytes do not depend on last-bit noise of the machine.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import track
from skimage import data as skdata

from .. import fr_metrics, images, manifest
from ..distortions import DISTORTION_TYPES, NUM_CLASSES, apply_sequence, class_name, distort, sample_composition
from ..models.nss import luma
from .scorefiles import DatasetError

# An image whose 8-bit luma varies by less than this (standard deviation, grey levels) is flat: no
# statistic of BRISQUE/NIQE exists on it and no observer could rate its content. The default sets
# (seed 0) hold none; their flattest image (colour diffusion 5 on coffee) has 0.18 and 10 grey levels.
FLAT_STD = 0.125
MAX_REDRAWS = 100
FR_DECIMALS = 4  # metric values as stored in the manifest's fr_* columns; the pseudo-MOS is built from these
# Labels in float64: float32 SSIM/MS-SSIM/VIF differ between CPUs (MKL's AVX-512 and AVX2 paths) by up to 4.5e-5,
# enough to round 2 of the 1,740 labels the other way; float64's paths differ by ~1e-16 (fr_metrics.compute).
LABEL_DTYPE = torch.float64

PHOTOS = {
    "astronaut": skdata.astronaut,
    "coffee": skdata.coffee,
    "rocket": skdata.rocket,
    "motorcycle": lambda: skdata.stereo_motorcycle()[0],
    "chelsea": skdata.chelsea,
    "hubble": skdata.hubble_deep_field,
    "ihc": skdata.immunohistochemistry,
    "retina": skdata.retina,
}


@dataclass(frozen=True)
class EmbeddedSet:
    photos: tuple[str, ...]
    composed: bool
    description: str


SETS = {
    "synthetic-single": EmbeddedSet(("astronaut", "coffee", "rocket", "motorcycle"), False,
                                    "one KADID-style distortion at one of 5 levels"),
    "synthetic-mixed": EmbeddedSet(("chelsea", "hubble", "ihc", "retina"), True,
                                   "2-3 KADID-style distortions from distinct groups, composed"),
}


def is_embedded(name: str) -> bool:
    return name in SETS


def content_patches(photo: str, size: int, max_patches: int) -> list[tuple[str, torch.Tensor]]:
    """The ``max_patches`` most textured non-overlapping ``size`` px tiles, in raster order."""
    rgb = images.from_uint8(PHOTOS[photo]())
    _, h, w = rgb.shape
    tiles = []
    for top in range(0, h - size + 1, size):
        for left in range(0, w - size + 1, size):
            tile = rgb[:, top:top + size, left:left + size]
            tiles.append((f"{photo}-r{top}c{left}", tile, float(tile.double().mean(0).std())))
    keep = sorted(sorted(tiles, key=lambda t: -t[2])[:max_patches], key=lambda t: t[0])
    return [(cid, tile) for cid, tile, _ in keep]


def _generator(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def is_flat(batch: torch.Tensor) -> torch.Tensor:
    """Per image of ``N x 3 x H x W`` in [0, 1]: is its 8-bit luma (as stored, as BRISQUE reads it) flat?"""
    return luma(batch.clamp(0, 1)).flatten(1).std(dim=1) < FLAT_STD


def _single_plan(n_patches: int, versions: int, gen: torch.Generator):
    """For each patch, ``versions`` distinct (type, level) draws, and the rest of its permutation (spares)."""
    plan, spares = [], []
    for p in range(n_patches):
        # A permutation of the distorted classes 1..NUM_CLASSES - 1 (0 is pristine), as (type, level).
        order = [class_name(cls + 1) for cls in torch.randperm(NUM_CLASSES - 1, generator=gen).tolist()]
        plan += [(p, dist, level) for dist, level in order[:versions]]
        spares.append(iter(order[versions:]))
    return plan, spares


def distort_single(refs: torch.Tensor, versions: int, gen: torch.Generator, redraw_gen=None):
    """``redraw_gen(image_index, attempt)``: the generator that re-draws a flat image (default: seed 0)."""
    redraw_gen = redraw_gen or (lambda i, attempt: _generator(0, f"redraw/{i}/{attempt}"))
    plan, spares = _single_plan(len(refs), versions, gen)
    out = torch.empty((len(plan), *refs.shape[1:]), dtype=refs.dtype)
    for dist in track(DISTORTION_TYPES, description="distorting (single)"):
        rows = [i for i, (_, d, _) in enumerate(plan) if d == dist]
        if rows:
            src = refs[[plan[i][0] for i in rows]]
            levels = torch.tensor([plan[i][2] for i in rows])
            out[rows] = distort(src, dist, levels, generator=gen)
    for i in torch.nonzero(is_flat(out)).flatten().tolist():
        p = plan[i][0]
        # The patch's next unused (type, level) keeps its versions distinct.
        for attempt, (dist, level) in enumerate(spares[p]):
            image = distort(refs[p:p + 1], dist, torch.tensor([level]), generator=redraw_gen(i, attempt))
            if not is_flat(image).item():
                out[i], plan[i] = image[0], (p, dist, level)
                break
        else:
            raise RuntimeError(f"patch {p}: every distortion left it flat; choose more textured patches")
    return out, [p for p, _, _ in plan], [d for _, d, _ in plan], [str(lv) for _, _, lv in plan]


def distort_mixed(refs: torch.Tensor, versions: int, max_k: int, gen: torch.Generator, redraw_gen=None):
    redraw_gen = redraw_gen or (lambda i, attempt: _generator(0, f"redraw/{i}/{attempt}"))
    out, owners, dists, levels = [], [], [], []
    for p in track(range(len(refs)), description="distorting (mixed)"):
        for _ in range(versions):
            steps = sample_composition(gen, max_k=max_k, min_k=2)
            image = apply_sequence(refs[p:p + 1], steps, generator=gen)
            for attempt in range(MAX_REDRAWS):
                if not is_flat(image).item():
                    break
                side = redraw_gen(len(out), attempt)
                steps = sample_composition(side, max_k=max_k, min_k=2)
                image = apply_sequence(refs[p:p + 1], steps, generator=side)
            else:
                raise RuntimeError(f"patch {p}: {MAX_REDRAWS} compositions left it flat; choose more textured patches")
            out.append(image[0])
            owners.append(p)
            dists.append("+".join(d for d, _ in steps))
            levels.append("+".join(str(lv) for _, lv in steps))
    return torch.stack(out), owners, dists, levels


def build(name: str, out_dir: str | Path, *, patch_size: int, max_patches_per_photo: int,
          versions_per_patch: int, max_k: int, label_metrics: list[str], seed: int,
          deepwsd_weights: str | Path | None = None) -> pd.DataFrame:
    """Write ``out_dir/{reference,images}/*.png`` and return the manifest frame.

    ``deepwsd_weights``: a local torchvision VGG16 state dict, needed only when
    ``label_metrics`` names ``deepwsd`` (:func:`iqabench.fr_metrics.compute`).
    """
    if name not in SETS:
        raise ValueError(f"unknown embedded dataset {name!r}; embedded sets are {sorted(SETS)}")
    spec, out_dir, gen = SETS[name], Path(out_dir), _generator(seed, name)
    by_photo = {photo: content_patches(photo, patch_size, max_patches_per_photo) for photo in spec.photos}
    too_small = [photo for photo, tiles in by_photo.items() if not tiles]
    if too_small:  # a photo without a patch would silently drop its content from the set
        sides = {photo: min(PHOTOS[photo]().shape[:2]) for photo in spec.photos}
        raise DatasetError(f"{name}: prepare.patch_size = {patch_size} px is larger than photograph {too_small[0]} "
                           f"({sides[too_small[0]]} px on its shorter side); set prepare.patch_size to at most "
                           f"{min(sides.values())} (the smallest photograph of {name})")
    patches = [pc for photo in spec.photos for pc in by_photo[photo]]
    content_ids = [cid for cid, _ in patches]
    # float64: another CPU's float32 kernels round some 8-bit pixels the other way (docs/reproducibility.md).
    refs = torch.stack([tile for _, tile in patches]).double()
    def redraw_gen(index: int, attempt: int) -> torch.Generator:
        return _generator(seed, f"{name}/redraw/{index}/{attempt}")

    if spec.composed:
        dist, owners, types, levels = distort_mixed(refs, versions_per_patch, max_k, gen, redraw_gen)
    else:
        dist, owners, types, levels = distort_single(refs, versions_per_patch, gen, redraw_gen)

    ref_paths = [out_dir / "reference" / f"{cid}.png" for cid in content_ids]
    for path, ref in zip(ref_paths, refs):
        images.save_png(ref, path)
    img_paths = []
    for i, (owner, image) in enumerate(zip(owners, dist)):
        img_paths.append(out_dir / "images" / f"{content_ids[owner]}_{i:05d}.png")
        images.save_png(image, img_paths[-1])
    # Labels are computed on the 8-bit images as written, which is what every model will read.
    stored = torch.stack([images.from_uint8(images.to_uint8(d)) for d in dist])
    # Rounded as stored, before the consensus: the labels can be recomputed from the manifest's own columns.
    metric_values = {m: np.round(v, FR_DECIMALS) for m, v in fr_metrics.compute(
        stored, refs[owners], label_metrics, deepwsd_weights=deepwsd_weights or None, dtype=LABEL_DTYPE,
        description=f"labelling ({'+'.join(label_metrics)})").items()}
    raw = fr_metrics.pseudo_mos(metric_values)
    frame = manifest.make(
        name, img_paths, raw, score_type="pseudo-MOS", lo=0.0, hi=100.0, higher_is_better=True,
        content_id=[content_ids[o] for o in owners], reference=[str(ref_paths[o]) for o in owners],
        distortion=types, level=levels,
        score_source=f"pseudo-MOS (not human ratings): consensus of full-reference {'+'.join(label_metrics)} vs the pristine patch",
    )
    for metric, values in metric_values.items():
        frame[f"fr_{metric}"] = values
    return frame
