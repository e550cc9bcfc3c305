"""Frozen features for every image of a manifest, with an encoder's readout.

A feature function sees only the images, except a full-reference one: it has
the attribute ``needs_reference = True`` and is called as ``fn(images,
references)``, the references read from the manifest's ``reference`` column.
It returns a torch.Tensor of N x D features, one row per image, D the same for
every batch; any other answer (a row of the user's own, say) is a ValueError
naming the row, never stored.

Contract for images on which a row is undefined (BRISQUE on a constant grey
image: its statistics do not exist): the function returns NaN in that image's
row instead of raising, so one image cannot end a benchmark. :func:`extract`
keeps the NaN rows (the features file records which images they are) and
:func:`undefined_images` names them; the protocol drops them per model and
counts them (``n_missing`` in the tables). A row undefined on every image of a
dataset is an error. A row undefined on a whole batch by its shape alone (NIQE on
images smaller than one of its patches) may instead raise
:class:`UndefinedImagesError`: those images get NaN rows the same way.
"""
from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from . import images, io
from .images import UndefinedImagesError

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # N x 3 x H x W in [0, 1] -> N x D
# Distorted versions of one reference are usually listed together; a few dozen
# decoded references avoid re-reading each one per image.
REFERENCE_CACHE = 32


class FeaturesFileError(ValueError):
    """A features file (``data/features/DATASET.npz``) that is missing or cannot be read; says how to get it back."""


def save_file(path: str | Path, image_names: Sequence[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Write a dataset's features: ``images`` (the file names, in manifest order) and one N x D array per model.

    The names are a fixed-width unicode array, not numpy's default object array, which is pickled and
    so could only be read back with ``allow_pickle=True`` (pickles can run code). Atomic: a reader never
    sees half a file.
    """
    with io.atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=np.asarray(image_names, dtype=str), **arrays)


def load_file(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the features file at ``path`` (see :func:`save_file`), read without unpickling anything.

    Raises :class:`FeaturesFileError` naming the file and the commands that restore it when it is missing,
    truncated, not a zip of arrays, or holds a pickled array.
    """
    path = Path(path)
    dataset = path.stem
    if not path.is_file():
        raise FeaturesFileError(f"{path} does not exist: no features for dataset {dataset!r}; "
                                f"run `dvc repro extract@{dataset}`")
    try:
        return io.read_npz(path)
    except io.NpzError as err:
        raise FeaturesFileError(f"{path} is unreadable ({err}): `dvc checkout {path}` "
                                f"or `dvc repro -f extract@{dataset}`") from None


def image_names(frame: pd.DataFrame) -> list[str]:
    """The names a features file records for a manifest's images (file names, in manifest order)."""
    return [Path(p).name for p in frame["image"]]


def load_for(path: str | Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The feature arrays of ``path`` for the manifest ``frame``, checked to be its images in its order.

    A features file left from an older manifest (a re-prepared or re-registered dataset) would pair
    one image's features with another's score, silently; so would a row count that differs. A
    column with no value on any image would make every image "undefined" and drop them all.
    Each is a :class:`FeaturesFileError` naming the file and how to rebuild it.
    """
    path = Path(path)
    stored = load_file(path)
    rebuild = f"run `dvc repro extract@{path.stem}`"
    if "images" not in stored:
        raise FeaturesFileError(f"{path} records no image names (no 'images' array): it was not written by "
                                f"extract; {rebuild}")
    names, expected = [str(n) for n in np.ravel(stored.pop("images"))], image_names(frame)
    if names != expected:
        where = next((i for i, (a, b) in enumerate(zip(names, expected)) if a != b), min(len(names), len(expected)))
        got = repr(names[where]) if where < len(names) else "nothing"
        want = repr(expected[where]) if where < len(expected) else "nothing"
        raise FeaturesFileError(f"{path} lists {len(names)} images but the manifest {len(expected)}, and at "
                                f"position {where + 1} it has {got} where the manifest has {want}: the features "
                                f"are from another version of the dataset; {rebuild}")
    for model, array in stored.items():
        real = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
        if array.ndim != 2 or len(array) != len(frame) or not real:
            raise FeaturesFileError(f"{path}: '{model}' is a {array.dtype} array of shape {array.shape}, not "
                                    f"{len(frame)} x D real numbers (one row per image); {rebuild}")
        dead = undefined_columns(array)
        if dead.any() and not dead.all():
            raise FeaturesFileError(f"{path}: '{model}' has no value (NaN) on any image in column(s) "
                                    f"{np.flatnonzero(dead)[:10].tolist()} of {array.shape[1]}; {rebuild}")
    return stored


class MissingReferenceError(ValueError):
    """A full-reference model on a dataset without (all) reference images; the stage may skip it."""


def needs_reference(feature_fn) -> bool:
    return bool(getattr(feature_fn, "needs_reference", False))


def check_references(feature_fn, frame: pd.DataFrame) -> None:
    """Raise :class:`MissingReferenceError` naming model and dataset unless every row has a reference and
    every reference file exists (a copy of a dataset without some of them), before any image is read."""
    missing = frame["reference"].fillna("").astype(str).str.strip() == ""
    model = getattr(feature_fn, "name", "this full-reference model")
    dataset = ", ".join(sorted(frame["dataset"].astype(str).unique())) if "dataset" in frame else "the dataset"
    if not missing.any():
        return _check_reference_files(model, dataset, frame)
    if missing.all():
        raise MissingReferenceError(f"{model} needs reference images; {dataset} has none "
                                    "(authentic distortions have no pristine original)")
    raise MissingReferenceError(f"{model} needs reference images; {dataset} has none for {int(missing.sum())} "
                                f"of {len(frame)} images (e.g. {frame['image'][missing].iloc[0]})")


def _check_reference_files(model: str, dataset: str, frame: pd.DataFrame) -> None:
    references = frame["reference"].astype(str)
    named = references.unique()  # a reference serves many images: each file is looked at once
    absent = [p for p in named if _absent(p)]
    if absent:
        short = references.isin(absent)
        raise MissingReferenceError(f"{model} needs each image's reference; {len(absent)} of {len(named)} reference "
                                    f"file(s) that {dataset}'s manifest names do not exist (e.g. {absent[0]}), for "
                                    f"{int(short.sum())} of {len(frame)} images; the other rows run; put the "
                                    "reference images back to have this one")


def _absent(path: str) -> bool:
    """No such file (another fault, a folder say, is left for ``images.load`` to name)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


@torch.no_grad()
def extract(feature_fn: FeatureFn, frame: pd.DataFrame, *, batch_size: int = 64, device: str | torch.device = "cpu",
            bf16: bool = False, max_short_side: int | None = None, description: str = "extracting",
            show_progress: bool = True, load: Callable[[str], torch.Tensor] = images.load) -> np.ndarray:
    """``feature_fn`` (e.g. an encoder's CONTRIQUE readout) for each manifest row, float32 N x D.

    Images are batched with others of the same size, so datasets of mixed sizes
    (CLIVE, SPAQ) are read at their own resolution, except that an image whose
    shorter side exceeds ``max_short_side`` is downscaled to it first (its
    reference too), as ARNIQA's loader does with SPAQ's full-size phone photos.
    ``bf16`` turns on bfloat16 autocast, about 3x faster at inference on CPUs
    with bfloat16 support.
    A ``needs_reference`` function also gets each image's reference (same size).
    ``load`` reads an image (``iqabench score`` passes one that applies the EXIF orientation).
    """
    device = torch.device(device)
    with_reference = needs_reference(feature_fn)
    if with_reference:
        check_references(feature_fn, frame)
        load_reference = functools.lru_cache(maxsize=REFERENCE_CACHE)(images.load)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out: np.ndarray | None = None
    pending: dict[tuple, list[tuple]] = {}  # shape -> (row, image[, reference])
    undefined_rows: list[int] = []  # images on which the function raised UndefinedImagesError
    why_undefined: list[str] = []

    def flush(shape: tuple) -> None:
        run(pending.pop(shape))

    def run(items: list[tuple]) -> None:
        nonlocal out
        rows, *columns = zip(*items)
        inputs = [torch.stack(column).to(device).contiguous(memory_format=torch.channels_last) for column in columns]
        try:
            with autocast:
                feats = feature_fn(*inputs)
        except UndefinedImagesError as exc:
            if len(items) > 1:  # which of them: each on its own
                for item in items:
                    run([item])
                return
            undefined_rows.append(rows[0])
            if not why_undefined:  # the first reason, for the message if every image is undefined
                why_undefined.append(str(exc))
            progress.advance(task, 1)
            return
        except ValueError as exc:
            # The function only knows batch positions; name the files that fail on their own.
            failing = [str(frame["image"].iloc[row]) for k, row in enumerate(rows)
                       if not _succeeds(feature_fn, [x[k:k + 1] for x in inputs])]
            listed = ", ".join(failing[:10]) + (f" ... ({len(failing)} in all)" if len(failing) > 10 else "")
            raise ValueError(f"{description}: {exc}\nfailing image(s): {listed or 'none alone'}") from exc
        feats = _checked(feature_fn, feats, len(rows), None if out is None else out.shape[1])
        if out is None:
            out = np.zeros((len(frame), feats.shape[1]), dtype=np.float32)
        out[list(rows)] = feats
        progress.advance(task, len(rows))

    def fit(image: torch.Tensor) -> torch.Tensor:
        if max_short_side and min(image.shape[1:]) > max_short_side:
            return images.resize_short_side(image, max_short_side)
        return image

    with Progress(disable=not show_progress) as progress:
        task = progress.add_task(description, total=len(frame))
        for i, path in enumerate(frame["image"]):
            img = fit(load(path))
            item = (i, img)
            if with_reference:
                ref_path = frame["reference"].iloc[i]
                ref = fit(load_reference(ref_path))
                if ref.shape != img.shape:
                    raise ValueError(f"{path} is {tuple(img.shape[1:])} but its reference {ref_path} is "
                                     f"{tuple(ref.shape[1:])} (HxW); full-reference metrics need equal sizes")
                item = (i, img, ref)
            pending.setdefault(tuple(img.shape), []).append(item)
            if len(pending[tuple(img.shape)]) == batch_size:
                flush(tuple(img.shape))
        for shape in list(pending):
            flush(shape)
    if undefined_rows and out is None:
        raise ValueError(f"{description}: the features are undefined (NaN) on every one of the {len(frame)} "
                         f"images (e.g. {frame['image'].iloc[0]}): {why_undefined[0]}; choose another row for them")
    if undefined_rows:
        out[undefined_rows] = np.nan  # kept and counted as missing, as a NaN row
    dead = undefined_columns(out)
    if dead.any() and not dead.all():  # else every image would count as undefined, and the advice be wrong
        raise ValueError(f"{description}: feature column(s) {np.flatnonzero(dead)[:10].tolist()} of {out.shape[1]} "
                         f"are NaN or infinite on every one of the {len(frame)} images: the feature function "
                         "returns a dimension with no value; fix it (or leave that column out)")
    undefined = undefined_images(out)
    if undefined.all():
        raise ValueError(f"{description}: the features are undefined (NaN) on every one of the {len(frame)} "
                         f"images (e.g. {frame['image'].iloc[0]}): this row has no value on them (e.g. BRISQUE on "
                         "images without luminance variation); choose another row for them")
    return out


def _name(feature_fn) -> str:
    return f"row {feature_fn.name!r}" if hasattr(feature_fn, "name") else "the feature function"


def _checked(feature_fn, feats, n: int, dim: int | None) -> np.ndarray:
    """The batch's features as float32 numpy, or a ValueError saying what the function returned instead.

    Checked because numpy would broadcast a 1 x D answer over the whole batch, silently."""
    if not isinstance(feats, torch.Tensor):
        raise ValueError(f"{_name(feature_fn)} returned a {type(feats).__name__}; a feature function returns "
                         "a torch.Tensor of N x D features, one row per image")
    if feats.ndim != 2 or feats.shape[0] != n or feats.shape[1] == 0:
        raise ValueError(f"{_name(feature_fn)} returned features of shape {tuple(feats.shape)} for a batch of "
                         f"{n} images; a feature function returns N x D (here {n} x D, D > 0), one row per image")
    if dim is not None and feats.shape[1] != dim:
        raise ValueError(f"{_name(feature_fn)} returned {feats.shape[1]} features per image for one batch and "
                         f"{dim} for another; D must not depend on the image size or the batch")
    return feats.float().cpu().numpy()


def undefined_images(features: np.ndarray) -> np.ndarray:
    """Boolean mask of the images whose features hold a NaN or an infinity (the model is undefined there)."""
    return ~np.isfinite(np.asarray(features, dtype=np.float64)).all(axis=1)


def undefined_columns(features: np.ndarray) -> np.ndarray:
    """Boolean mask of the feature columns that are NaN or infinite on every image."""
    return ~np.isfinite(np.asarray(features, dtype=np.float64)).any(axis=0)


def _succeeds(feature_fn, inputs: list[torch.Tensor]) -> bool:
    try:
        feature_fn(*inputs)
    except UndefinedImagesError:  # no value there, which extract keeps: not the failure
        return True
    except ValueError:
        return False
    return True
