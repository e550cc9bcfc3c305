"""Quality of a user's own images: any no-reference row of the study, then its fitted regressor."""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import features, images, io, params, regressor, rows

# A regressor file from before `evaluate` recorded extract.max_short_side: the default of params.yaml.
MAX_SHORT_SIDE = 512
# A user's photo is scored as it is displayed: a phone's portrait shot is stored sideways with an EXIF
# orientation tag. (Dataset images are read as stored, as the field's tools read them.)
load_displayed = functools.partial(images.load, exif_transpose=True)


KEEP_BYTES = 1 << 30  # decoded pixels held between the check of every file and the model (about 250 photos)


def _decoded(path: str | Path, max_short_side: int | None) -> tuple[tuple[int, int], torch.Tensor]:
    """(height, width as displayed, the image as the model will see it); a file too small is refused here.

    Downscaled as ``features.extract`` would (to ``max_short_side``, float32), and kept for the extraction that
    follows up to ``KEEP_BYTES`` (a second decode costs as much as the first); a 4:3 photo holds 4 MB at the
    default 512 px."""
    image = load_displayed(path)
    height, width = image.shape[1:]
    if min(height, width) < images.MIN_SIDE:
        raise images.ImageError(f"{path}: {width} x {height} px is too small to score; images need at least "
                                f"{images.MIN_SIDE} x {images.MIN_SIDE} px")
    if max_short_side and min(height, width) > max_short_side:  # features.extract's rule
        return (height, width), images.resize_short_side(image, max_short_side)
    return (height, width), image


def _repo_root() -> Path | None:
    """The repository (the folder with params.yaml, searched upwards from the cwd), or None outside one."""
    try:
        return params.repo_root()
    except FileNotFoundError:
        return None


def _rows_root(regressors: str | Path | None) -> Path | None:
    """The repository whose files a project row reads: the one that holds ``--regressors`` (they were fitted on
    that repository's encoders, and `score` may run from anywhere), else the cwd's; None outside any."""
    if regressors is not None:
        with contextlib.suppress(FileNotFoundError):
            return params.repo_root(regressors)
    return _repo_root()


@contextlib.contextmanager
def _inside(folder: Path | None):
    """Work in ``folder`` (None: stay) and come back (contextlib.chdir is Python 3.11+; iqabench supports 3.10)."""
    here = os.getcwd()
    if folder is not None:
        os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def regressor_folder(regressors: str | Path | None) -> Path:
    """The folder of fitted regressors: ``regressors`` as given (a folder), or the repository's
    ``data/models/regressors`` wherever in the repository score runs (it was looked up from the cwd)."""
    if regressors is None:
        root = _repo_root()
        if root is None:
            raise FileNotFoundError(params.outside_repository(
                f"the fitted regressors ({regressor.REGRESSORS}) cannot be found", "iqabench score",
                "--regressors FOLDER"))
        return root / regressor.REGRESSORS
    regressors = Path(regressors)
    if regressors.exists() and not regressors.is_dir():  # it said "contrique.npz/contrique.npz does not exist"
        raise FileNotFoundError(f"--regressors {regressors} is a file; give the folder that holds the fitted "
                                f"regressors (one .npz per model, e.g. {regressor.REGRESSORS}), not one of them")
    if not regressors.exists():
        raise FileNotFoundError(f"--regressors {regressors}: no such folder; give the folder of fitted regressors "
                                f"(by default the repository's {regressor.REGRESSORS}, which `dvc repro evaluate` "
                                "writes)")
    return regressors


def score_images(paths: list[str | Path], model: str = "contrique", regressors: str | Path | None = None,
                 max_short_side: int | None = None) -> pd.DataFrame:
    """One row per image: path, width, height (as displayed), predicted quality (0-100, higher is better).

    Each photo is downscaled to ``max_short_side`` (0: read whole); None: as the study read the images the
    regressor was fitted on (``extract.max_short_side``, recorded in it).

    ``model`` is any no-reference row (:mod:`iqabench.rows`) in the study; its regressor was fitted by
    the `evaluate` stage, read from ``regressors`` (None: the repository's ``data/models/regressors``, found
    from any folder in it). Raises :class:`iqabench.images.ImageError` naming
    every file that is not an image (or is smaller than ``images.MIN_SIDE``), one
    a line, and FileNotFoundError for a missing model file or regressor, before any
    model runs, so a typo in a long list costs nothing; no image is scored then.
    """
    row = rows.get(model)  # an unknown name fails here, listing the rows there are
    if row.kind == rows.FR:
        raise ValueError(f"{model} is a full-reference metric: it needs each image's pristine reference, "
                         "so it cannot score a photo on its own; choose a no-reference model")
    # A row of the project (and any row whose files a pipeline stage makes) reads them relative to the repository,
    # as the stages do; a path the user typed (file:PATH, a py: row's) is relative to where they are.
    root = _rows_root(regressors) if row.stage is not None or model in rows.ROWS else None
    located = [root / a if root is not None and not a.is_absolute() else a for a in row.artifacts]
    for artifact in located:
        if row.stage is None and artifact.is_dir():  # `file:` (an empty path is '.') or `file:DIR`
            raise FileNotFoundError(f"{model}: {artifact} is a folder, not a weights file; give the file's path, "
                                    "e.g. file:data/encoders/contrique.pt")
        if row.stage is None and io.is_special(artifact):  # file:/dev/null, a pipe
            raise FileNotFoundError(f"{model}: {artifact} is {io.NOT_REGULAR}; give the path of the weights file")
        if row.stage is None and not artifact.is_file():  # a file the user named (file:PATH)
            raise FileNotFoundError(f"{model}: no such file {artifact}; check the path")
    fitted_path = regressor.path_for(model, regressor_folder(regressors))
    if not fitted_path.is_file() and regressors is not None and not any(fitted_path.parent.glob("*.npz")):
        # Not a folder evaluate wrote: "run dvc repro evaluate" would fill another one.
        raise FileNotFoundError(f"--regressors {regressors} holds no fitted regressor (no .npz file, e.g. "
                                f"{fitted_path.name}): give the folder `dvc repro evaluate` writes them to (by "
                                f"default the repository's {regressor.REGRESSORS})")
    if not fitted_path.is_file():
        raise FileNotFoundError(f"{fitted_path} does not exist; run `dvc repro evaluate` with {model!r} in "
                                "params.yaml `models:` (add it there first if it is not listed): that stage fits "
                                "the regressor that turns its features into a score")
    fitted = regressor.load(fitted_path)  # a damaged file is named, with the way to fit it again
    if fitted.model is not None and fitted.model != model:
        raise ValueError(f"{fitted_path} was fitted for the row {fitted.model!r}, not {model!r} (both names map to "
                         f"that file); score with --model {fitted.model!r}, or list {model!r} in params.yaml "
                         "`models:` instead and run `dvc repro evaluate`")
    if max_short_side is None:
        max_short_side = MAX_SHORT_SIDE if fitted.max_short_side is None else fitted.max_short_side
    # Every file is read (and every bad one named) before any model runs, so a typo in a long list costs nothing.
    # The pixels are kept for the model up to KEEP_BYTES; beyond, an image is decoded again when its turn comes
    # (`score ~/Pictures/*.jpg` held every photo, ~4 MB each, and ran out of memory without a word).
    decoded, kept, refused = {}, 0, {}
    for p in paths:
        if str(p) not in decoded and str(p) not in refused:  # a file listed twice is read once
            try:
                shape, image = _decoded(p, max_short_side)
            except images.ImageError as exc:  # read on: every bad file is named at once, not one per run
                refused[str(p)] = exc
                continue
            size = image.element_size() * image.nelement()
            if kept + size > KEEP_BYTES:
                image = None  # decoded again when the model reaches it
            else:
                kept += size
            decoded[str(p)] = (shape, image)
    if refused:
        raise _refusal(list(refused.values()), len(decoded) + len(refused))
    shapes = [decoded[str(p)][0] for p in paths]

    def pixels(path: str) -> torch.Tensor:
        image = decoded[path][1]
        if image is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its notes (converted, animated) were said at the first read
                image = _decoded(path, max_short_side)[1]
        return image

    for artifact in located:
        if not artifact.is_file() and row.stage is not None and root is None and not artifact.is_absolute():
            raise FileNotFoundError(f"{model}: " + params.outside_repository(f"its file {artifact} cannot be found",
                                                                             "iqabench score"))
        if not artifact.is_file():
            raise FileNotFoundError(f"{model}: {artifact} does not exist; run `dvc repro {row.stage}` (or "
                                    "`dvc pull` where a remote has it)")
    with _inside(root):  # the row opens its files relative to the repository
        feature_fn = rows.feature_fn(model)
    # object, not pandas' arrow strings: a name that is not UTF-8 (kept by Python as surrogates) cannot be one
    frame = pd.DataFrame({"image": pd.Series([str(p) for p in paths], dtype=object)})
    # The images are already read and downscaled: extract takes them as they are.
    feats = _extract_naming_all(feature_fn, frame, pixels)
    undefined = features.undefined_images(feats)
    not_scored = ""
    if undefined.any():  # e.g. BRISQUE on a flat image: no score exists, and a made-up one would mislead
        names = ", ".join(str(p) for p in frame["image"][undefined][:5])
        not_scored = (f"{model} is undefined on {int(undefined.sum())} image(s) ({names}): its features do not "
                      "exist there (e.g. BRISQUE on an image without luminance variation, NIQE on one smaller "
                      "than its patch, 96 x 96 px by default); score them with another model, or leave them out")
        if undefined.all():
            raise ValueError(not_scored)
    if feats.ndim != 2 or feats.shape[1] != fitted.coef.size:  # predict's message named neither file nor fix
        got = feats.shape[1] if feats.ndim == 2 else f"shape {feats.shape}"
        raise ValueError(f"{fitted_path} expects {fitted.coef.size} features per image, but {model} gives "
                         f"{got}: it was fitted on the features of another encoder (another width or "
                         f"architecture, or the weights file changed since); re-fit it with `dvc repro evaluate` "
                         f"({model!r} in params.yaml `models:`)")
    quality = np.full(len(frame), np.nan)  # the undefined images keep no score: the others are still rated
    quality[~undefined] = (fitted.predict(feats[~undefined]) * 100.0).round(2)
    outside = (quality < 0) | (quality > 100)
    if outside.any():  # kept as predicted (a clipped 0 or 100 would hide how far off it is), but said
        first = int(np.flatnonzero(outside)[0])
        warnings.warn(f"{int(outside.sum())} image(s) scored outside 0-100 (e.g. {frame['image'].iloc[first]}: "
                      f"{quality[first]:g}): the regressor was fitted on {fitted.dataset}'s scores and extrapolates "
                      "here, so these images are unlike that set's; read their scores as out of range", stacklevel=2)
    scored = frame.assign(height=[h for h, _ in shapes], width=[w for _, w in shapes], quality=quality,
                          scale=f"0-100, as {fitted.dataset} scores (higher is better)", model=model)
    scored.attrs["not_scored"] = not_scored  # the command prints the rest, then says this and exits 1
    return scored


def _refusal(errors: list[images.ImageError], total: int) -> images.ImageError:
    """One error for the files that cannot be scored: a single one as it is, several one a line, the first
    ``io.MAX_LISTED`` of them (`score ~/Pictures/*` named one bad file per run)."""
    if len(errors) == 1:
        return errors[0]
    listed = io.listed(str(e) for e in errors)
    return images.ImageError(f"{len(errors)} of {total} files cannot be scored (unreadable or too small), so none "
                             f"was; fix them or leave them out:\n  {listed}")


def _extract_naming_all(feature_fn, frame: pd.DataFrame, pixels) -> np.ndarray:
    """The features of every image; when the row refuses one (a `py:` row's own check, say), the error names
    every image it refuses, not only the first (a user fixed one and met the next)."""
    def extract(part: pd.DataFrame) -> np.ndarray:
        return features.extract(feature_fn, part, batch_size=1, max_short_side=None, show_progress=False,
                                load=pixels)
    try:
        return extract(frame)
    except ValueError as exc:
        failing = []
        for row in range(len(frame)):
            try:
                extract(frame.iloc[[row]].reset_index(drop=True))
            except ValueError:
                failing.append(frame["image"].iloc[row])
        if len(failing) < 2:
            raise
        listed = ", ".join(failing[:10]) + (f" ... ({len(failing)} in all)" if len(failing) > 10 else "")
        raise ValueError(f"{str(exc).splitlines()[0]}\nfailing image(s): {listed}") from exc
