"""Ridge regression for every split and every alpha from one eigendecomposition per split.

With centred training features Xc (n x d) and targets yc, the ridge solution for
any alpha is diagonal in the eigenbasis of Xc Xc^T (dual, when n <= d) or of
Xc^T Xc (primal, when d < n). After one ``eigh`` per split, the weights for all
alphas are one matrix product, and so are the predictions:

    W = V @ (b / (s + alpha))            (primal; dual: W = Xc^T V (b / (s + alpha)))
    pred(alpha) = E @ W + mean(y_train)

with ``s`` the eigenvalues, ``V`` the eigenvectors, ``b`` the targets projected
on them and ``E`` the centred evaluation rows. This is the model
``sklearn.linear_model.Ridge(alpha, fit_intercept=True)`` fits (unpenalised
intercept, penalty alpha * ||w||^2), so results agree with it to rounding.

The eigendecomposition is the cost that no exact path avoids (687 s of the
948 s protocol at 8 x 10k x 4096 on two CPU cores). With ``device="auto"``
(the default) the Gram matrix, its ``torch.linalg.eigh`` and the products run
in float64 on CUDA when a GPU is present; on a CPU-only machine the NumPy path
runs unchanged (both call LAPACK there; a side-by-side on the shared 2-core
machine showed no consistent winner). ``device="cpu"`` forces the torch path
on the CPU, which is how the tests cover it without a GPU.

The papers' alphas (CONTRIQUE's fixed 0.1, ARNIQA's validated grid) are the rows' paper
protocols, in :mod:`iqabench.rows`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import Progress

from .splits import Split

# An alpha this many times the largest eigenvalue of the training Gram matrix shrinks every weight below 1e-10 of
# its unpenalised size, so the predictions differ from the training mean by ~1e-10 of the scores' spread. float64
# still ranks them, but any rounding on the way (float32, a fixed-precision file) flattens them, and far enough
# out (alpha 1e300) the weights underflow and every SRCC was reported 0.000. Such a grid suits features of another
# scale: refused, naming the largest alpha that fits.
VANISHING_RATIO = 1e10


def alpha_grid(n: int = 13, lo: float = 1e-3, hi: float = 1e3) -> np.ndarray:
    """Log-spaced alphas from ``lo`` to ``hi`` inclusive (ARNIQA's range; it uses n=100)."""
    return np.geomspace(lo, hi, n)


def _check_alphas(alphas) -> np.ndarray:
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
        raise ValueError(f"alphas must be a non-empty list of positive finite numbers, got {alphas!r}")
    return alphas


def _check_xy(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2:
        raise ValueError(f"features must be a 2-D array [n_images, n_features], got shape {X.shape}")
    if X.shape[0] != y.size:
        raise ValueError(f"features have {X.shape[0]} rows but there are {y.size} scores; "
                         "features and manifest must list the same images in the same order")
    if not np.all(np.isfinite(X)):
        row = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise ValueError(f"features row {row} has a non-finite value; re-extract that image's features")
    return X, y


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``None`` for the NumPy path; ``"auto"`` is CUDA when present, else ``None``."""
    if device is None:
        return None
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else None
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"ridge device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"ridge device {device} was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return device


def ridge_path(X_train, y_train, evals, alphas, *, standardize: bool = False,
               device: str | torch.device | None = "auto") -> list[np.ndarray]:
    """Fit ridge on (X_train, y_train) for all ``alphas``; predict every matrix in ``evals``.

    Returns one array [n_alphas, n_rows] per evaluation matrix. With ``standardize``
    each feature is scaled to zero mean and unit variance using train statistics only
    (population std, constant features left unscaled, like sklearn's StandardScaler).
    ``device`` is where the linear algebra runs (see the module docstring).
    """
    device = resolve_device(device)
    X_train, y_train = _check_xy(X_train, y_train)
    alphas = _check_alphas(alphas)
    evals = [np.asarray(E, dtype=np.float64) for E in evals]
    for i, E in enumerate(evals):
        if E.ndim != 2 or E.shape[1] != X_train.shape[1]:
            raise ValueError(f"evaluation set {i} has shape {E.shape}; it needs {X_train.shape[1]} "
                             "feature columns like the training set")
    if X_train.shape[0] < 2:
        raise ValueError(f"ridge needs at least 2 training images, got {X_train.shape[0]}")
    x_mean = X_train.mean(axis=0)
    x_scale = np.ones_like(x_mean)
    if standardize:
        std = X_train.std(axis=0)
        x_scale = np.where(std > 0, std, 1.0)
    y_mean = y_train.mean()
    Xc = (X_train - x_mean) / x_scale
    yc = y_train - y_mean
    evals_c = [(E - x_mean) / x_scale for E in evals]
    n, d = Xc.shape
    dual = n <= d
    # The same expressions serve NumPy arrays and float64 torch tensors; only eigh differs.
    if device is None:
        to, eigh, back = (lambda a: a), np.linalg.eigh, (lambda a: a)
    else:
        to = lambda a: torch.as_tensor(a, dtype=torch.float64, device=device)  # noqa: E731
        eigh, back = torch.linalg.eigh, (lambda a: a.cpu().numpy())
    Xc, yc, alphas_ = to(Xc), to(yc), to(alphas)
    eigvals, vecs = eigh(Xc @ Xc.T if dual else Xc.T @ Xc)
    proj = vecs.T @ (yc if dual else Xc.T @ yc)
    # eigh of a PSD matrix can return tiny negative values from rounding.
    eigvals = eigvals.clip(0.0, None)
    top = float(eigvals.max())
    if top > 0 and alphas.max() > top * VANISHING_RATIO:  # constant features (top 0) rank nothing at any alpha
        raise ValueError(f"ridge alpha {alphas.max():g} is more than {VANISHING_RATIO:g} times the largest eigenvalue "
                         f"({top:.3g}) of the training features' Gram matrix: every weight vanishes (below 1e-10 "
                         "of its size) and the predictions barely leave the training mean (at 1e300 every SRCC was "
                         "0); the alphas suit features of another scale: use alphas of at most "
                         f"{top * VANISHING_RATIO:.3g} (e.g. ARNIQA's 1e-3 to 1e3)")
    coef = proj[:, None] / (eigvals[:, None] + alphas_[None, :])  # [rank, n_alphas]
    # The weights of every alpha, d x n_alphas, before touching the evaluation rows:
    # E @ (V @ coef) costs n_eval * d * n_alphas, where (E @ V) @ coef would cost n_eval * d * d.
    weights = Xc.T @ (vecs @ coef) if dual else vecs @ coef
    return [back((to(Ec) @ weights).T) + y_mean for Ec in evals_c]


@dataclass(frozen=True)
class SplitPredictions:
    """Ridge predictions per split: ``val[s]`` and ``test[s]`` are [n_alphas, n_rows_of_that_part]."""

    alphas: np.ndarray
    val: list[np.ndarray]
    test: list[np.ndarray]


def fit_predict(X, y, splits: list[Split], alphas, *, standardize: bool = False,
                show_progress: bool = False, device: str | torch.device | None = "auto") -> SplitPredictions:
    """Fit on each split's train rows for all ``alphas``; predict its val and test rows.

    Parts differ in size between content-grouped splits, so results are lists
    rather than one rectangular array.
    """
    X, y = _check_xy(X, y)
    alphas = _check_alphas(alphas)
    device = resolve_device(device)
    if not splits:
        raise ValueError("no splits given")
    val, test = [], []
    # One split at a time: LAPACK's eigh is per-matrix anyway, and stacking all
    # splits' d x d or n x n matrices would multiply peak memory by n_splits.
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("ridge over splits", total=len(splits))
        for split in splits:
            val_pred, test_pred = ridge_path(X[split.train], y[split.train], [X[split.val], X[split.test]],
                                             alphas, standardize=standardize, device=device)
            val.append(val_pred)
            test.append(test_pred)
            progress.advance(task)
    return SplitPredictions(alphas=alphas, val=val, test=test)


ALPHA_RULES = ("median", "per_split")


def select_alpha(predictions: SplitPredictions, y, splits: list[Split], rule: str = "median") -> np.ndarray:
    """Index into ``predictions.alphas`` of the alpha chosen for each split by validation SRCC.

    ``"median"`` is ARNIQA's rule: one alpha for the whole dataset, the one with the
    highest median val SRCC over splits. ``"per_split"`` lets each split pick its own.
    Ties go to the alpha listed first, as ARNIQA's ``np.argmax`` over its ascending grid (there: the smallest;
    neighbouring alphas often rank a val part identically, so which one wins a tie changes the test numbers).
    """
    from .metrics import batch_srcc

    if rule not in ALPHA_RULES:
        raise ValueError(f"alpha rule must be one of {ALPHA_RULES}, got {rule!r}")
    y = np.asarray(y, dtype=np.float64).ravel()
    fewest = min((len(split.val), index) for index, split in enumerate(splits))
    if fewest[0] < 3:
        raise ValueError(f"choosing alpha needs at least 3 validation images in every split, and split {fewest[1]} "
                         f"has {fewest[0]}; raise val_frac (e.g. 0.1, more on a small dataset) or give a single "
                         "alpha")
    val_srcc = np.stack([batch_srcc(pred, y[split.val]) for pred, split in zip(predictions.val, splits)])
    # argmax returns the first maximum: the alpha listed first among equals.
    if rule == "median":
        return np.full(len(splits), int(np.argmax(np.median(val_srcc, axis=0))))
    return np.argmax(val_srcc, axis=1)
