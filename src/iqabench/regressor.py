"""The fitted ridge regressor that turns a row's frozen features into a quality score.

Stored as plain arrays (npz) rather than a pickle, so loading a regressor never
executes code from a file (nor are released regressors that are pickled
modules, such as ARNIQA's ``regressor_*.pth``, ever loaded: the protocol fits its own).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

from . import io

REGRESSORS = Path("data/models/regressors")  # one fitted regressor per row, written by the `evaluate` stage


def path_for(model: str, root: str | Path = REGRESSORS) -> Path:
    """Where ``model``'s regressor lives: ``file:models/x.pt`` -> ``root/file_models_x.pt.npz``."""
    return Path(root) / (re.sub(r"[^\w.-]", "_", model) + ".npz")


@dataclass(frozen=True)
class Regressor:
    coef: np.ndarray
    intercept: float
    mean: np.ndarray
    scale: np.ndarray
    alpha: float
    dataset: str
    # extract.max_short_side of the features it was fitted on (0: whole images), so that `iqabench score` reads
    # a photo as the study read its images; None in a file written before it was recorded.
    max_short_side: int | None = None
    # The row it was fitted for: path_for maps names that differ only in punctuation to one file, so `score`
    # checks it. None in a file written before it was recorded.
    model: str | None = None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted score on the training dataset's normalised scale (higher is better)."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != self.coef.size:
            raise ValueError(f"regressor expects N x {self.coef.size} features, got {features.shape}; "
                             "were the features made by the same encoder?")
        return (features - self.mean) / self.scale @ self.coef + self.intercept

    def save(self, path: str | Path) -> Path:
        with io.atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                recorded = {} if self.max_short_side is None else {"max_short_side": self.max_short_side}
                recorded |= {} if self.model is None else {"model": self.model}
                np.savez(fh, coef=self.coef, intercept=self.intercept, mean=self.mean, scale=self.scale,
                         alpha=self.alpha, dataset=self.dataset, **recorded)
        return Path(path)


def fit(features: np.ndarray, scores: np.ndarray, *, alpha: float, standardize: bool, dataset: str,
        max_short_side: int | None = None, model: str | None = None) -> Regressor:
    features = np.asarray(features, dtype=np.float64)
    mean = features.mean(0) if standardize else np.zeros(features.shape[1])
    scale = features.std(0) if standardize else np.ones(features.shape[1])
    scale = np.where(scale > 0, scale, 1.0)
    ridge = Ridge(alpha=alpha).fit((features - mean) / scale, scores)
    return Regressor(ridge.coef_, float(ridge.intercept_), mean, scale, float(alpha), dataset, max_short_side, model)


def load(path: str | Path) -> Regressor:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist; run `dvc repro evaluate` to fit the regressors of the "
                                "models in params.yaml `models:`")
    keys = ("coef", "intercept", "mean", "scale", "alpha", "dataset")
    try:
        stored = io.read_npz(path)
    except io.NpzError as err:
        # numpy's own message names no file, and for a text file suggests unpickling it
        raise ValueError(f"{path}: not a regressor file iqabench wrote ({err}); delete it and "
                         "run `dvc repro evaluate` to fit it again") from None
    missing = [key for key in keys if key not in stored]
    if missing:
        raise ValueError(f"{path}: not a regressor file iqabench wrote (no {', '.join(missing)}); delete it and "
                         "run `dvc repro evaluate` to fit it again")
    arrays = {key: stored[key] for key in keys + ("max_short_side", "model") if key in stored}
    problem = _invalid(arrays)
    if problem:
        # Checked here, not met in predict: a NaN coefficient scored every photo NaN, a zero scale inf, an array
        # intercept was a TypeError traceback, and max_short_side 2.7 was read as 2 px.
        raise ValueError(f"{path}: {problem}; the file is damaged or was not written by iqabench: re-fit it with "
                         "`dvc repro evaluate`")
    side = arrays.get("max_short_side")
    return Regressor(arrays["coef"], float(arrays["intercept"]), arrays["mean"], arrays["scale"],
                     float(arrays["alpha"]), str(arrays["dataset"]), None if side is None else int(side),
                     str(arrays["model"]) if "model" in arrays else None)


def _invalid(arrays: dict[str, np.ndarray]) -> str | None:
    """What is wrong with the arrays of a regressor file (as :meth:`Regressor.save` writes them), or None."""
    from .images import MIN_SIDE  # the smallest image `iqabench score` reads

    for key, value in arrays.items():
        if key not in ("dataset", "model") and value.dtype.kind not in "iuf":
            return f"'{key}' is not a number (dtype {value.dtype})"
    coef = arrays["coef"]
    if coef.ndim != 1 or coef.size == 0:
        return f"'coef' has shape {coef.shape}; it must be one coefficient per feature"
    for key in ("mean", "scale"):
        if arrays[key].shape != coef.shape:
            return f"'{key}' has shape {arrays[key].shape}, 'coef' {coef.shape}; they must match"
    for key in ("intercept", "alpha", "dataset") + (("max_short_side",) if "max_short_side" in arrays else ()):
        if arrays[key].ndim != 0:
            return f"'{key}' is an array of shape {arrays[key].shape}, not one value"
    for key in ("coef", "mean", "scale", "intercept", "alpha"):
        if not np.isfinite(arrays[key]).all():
            return f"'{key}' holds NaN or infinite values"
    if not (arrays["scale"] > 0).all():
        return f"'scale' holds {np.sort(arrays['scale'])[0]:g}; every feature is divided by it, so it must be above 0"
    if arrays["alpha"] < 0:
        return f"'alpha' is {float(arrays['alpha']):g}; a ridge penalty is 0 or more"
    for key in ("dataset", "model"):
        if key in arrays and (arrays[key].dtype.kind != "U" or arrays[key].ndim != 0):
            return f"'{key}' is not a name (dtype {arrays[key].dtype}, shape {arrays[key].shape})"
    if "max_short_side" in arrays:
        side = arrays["max_short_side"]
        # 0: whole images (extract.max_short_side's meaning); else a short side `score` can downscale to.
        if not np.isfinite(side) or side != np.floor(side) or (side != 0 and side < MIN_SIDE):
            return (f"'max_short_side' is {side.item()!r}; it must be 0 (whole images) or a whole number of pixels, "
                    f"at least {MIN_SIDE}")
    return None
