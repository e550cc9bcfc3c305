"""Mixed-dataset training on frozen features: MonotonicIQA (Feng et al., 2023) against naive pooling.

IQA datasets rate on different scales (ranges, anchors, subjects), so after each
is normalised to [0, 1] the same perceived quality still gets different numbers
in different datasets. Naive pooling regresses all of them at once and so learns
their contradictions. MonotonicIQA instead learns one dataset-shared quality
``q(x)`` and, per dataset, a quality transformer ``T_d`` that is increasing by
construction and maps ``q`` onto that dataset's own scale; every loss is computed
on a dataset's own scores, so the scales never have to be aligned.

Departures from the reference code (github.com/fzp0424/MonotonicIQA), which
trains a ResNet end to end: here the regressor is a small MLP on frozen features,
and the transformer uses tanh units with softplus-positive weights plus a positive
linear skip. The reference's abs-weight MLP with ELU units can only express
*convex* increasing maps (positive sums of convex increasing functions are
convex); tanh units express concave, convex and S-shaped scales alike. The loss
defaults to SmoothL1 + norm-in-norm (Li et al., 2020, p = q = 2), the loss the
reference's ``loss.py`` defines; its ``TrainModel.py`` passes the scores as one
row (shape 1 x B), where ``norm_loss_with_normalization`` falls back to L1, so
the reference as run trains SmoothL1 + L1.

Feng, Zhang, Jia, Chen & Wang, "Learning from mixed datasets: a monotonic image
quality assessment model", Electronics Letters 2023 (arXiv 2209.10451).

Missing values, as in the protocol (:mod:`iqabench.evaluation.protocol`): an image on which the
features are undefined (NaN or infinity, see :mod:`iqabench.features`) is dropped from its
dataset's splits, which are drawn from the full manifest first, so the remaining images keep the
protocol's splits; the count is reported (``n_missing``). Tables: :mod:`iqabench.mixed_report`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress
from torch import nn
from torch.nn import functional as F

from . import features as features_lib
from . import manifest as manifest_lib
from .evaluation import compute_metrics
from .evaluation.protocol import check_sizes, drop_undefined, fixed_splits
from .evaluation.splits import Split, random_splits

METHODS = ("monotonic", "pooled", "single")
LOSS_TERMS = ("mse", "smooth_l1", "norm_in_norm", "rank")
RANK_MARGIN = 0.05  # hinge margin on the [0, 1] score scale, as the reference's RankHingedLoss
RANK_TIE = 0.01     # score differences below this count as ties (its y_margin)
PER_SPLIT_COLUMNS = ["dataset", "method", "split", "n_train", "n_test", "n_missing", "srcc", "plcc", "krcc", "rmse"]
METRIC_COLUMNS = PER_SPLIT_COLUMNS[6:]


class MixedInputError(ValueError):
    """Features or manifests that cannot be trained on; the message names dataset, file and value."""


@dataclass(frozen=True)
class TrainConfig:
    hidden: int = 64                              # width of the shared regressor's hidden layer
    dropout: float = 0.1
    transformer_hidden: tuple[int, ...] = (16,)   # tanh units of each monotone transformer
    steps: int = 400                              # optimiser steps (full-batch when batch_size is 0)
    lr: float = 1e-3
    weight_decay: float = 1e-2                    # AdamW, on the shared regressor only
    batch_size: int = 0                           # rows per dataset per step; 0 = every training row
    loss: tuple[str, ...] = ("smooth_l1", "norm_in_norm")

    def __post_init__(self):
        unknown = [t for t in self.loss if t not in LOSS_TERMS]
        if unknown or not self.loss:
            raise MixedInputError(f"mixed.loss: unknown term(s) {unknown or '(empty list)'}; "
                                  f"use a list drawn from {list(LOSS_TERMS)}")
        if self.batch_size == 1 or self.batch_size < 0:
            raise MixedInputError(f"mixed.batch_size must be 0 (full batch) or at least 2, got {self.batch_size}")
        if self.steps < 1 or self.hidden < 1 or not self.transformer_hidden or min(self.transformer_hidden) < 1:
            raise MixedInputError("mixed.steps, mixed.hidden and every mixed.transformer_hidden width must be >= 1")

    @classmethod
    def from_params(cls, section: dict, stage_keys=("model", "methods", "seed", "datasets", "models")) -> "TrainConfig":
        """The training settings of params.yaml's `mixed` section; an unknown key is an error, not ignored."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(section) - known - set(stage_keys))
        if unknown:
            raise MixedInputError(f"params.yaml `mixed`: unknown key(s) {unknown}; "
                                  f"known: {sorted(known | set(stage_keys))}")
        values = {k: v for k, v in section.items() if k in known}
        for key in ("transformer_hidden", "loss"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


class QualityRegressor(nn.Module):
    """The dataset-shared regressor: features -> one scalar quality."""

    def __init__(self, in_dim: int, hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class MonotoneTransformer(nn.Module):
    """A strictly increasing map R -> R, whatever its parameter values.

    Every weight passes through softplus (> 0) and every unit is tanh (strictly
    increasing), so each layer is strictly increasing in each input; the positive
    linear skip keeps the map increasing (not flat) beyond the range it was fitted on.
    """

    def __init__(self, hidden: tuple[int, ...] = (16,)):
        super().__init__()
        widths = (1, *hidden, 1)
        # Softplus passes little gradient to a weight it has squashed near 0, so start every weight where
        # it should be rather than shrinking it there: first-layer units of varied steepness centred
        # across [-2, 2] (roughly where a standardised quality lies), later layers averaging their inputs.
        slopes = torch.linspace(0.5, 3.0, widths[1])[torch.randperm(widths[1])]
        raw = [_inverse_softplus(slopes).unsqueeze(1)] + [
            _inverse_softplus(torch.full((o, i), 1.0 / i)) + 0.1 * torch.randn(o, i)
            for i, o in zip(widths[1:], widths[2:])]
        self.weights = nn.ParameterList(nn.Parameter(w) for w in raw)
        self.biases = nn.ParameterList([nn.Parameter(-slopes * torch.linspace(-2.0, 2.0, widths[1]))] +
                                       [nn.Parameter(torch.zeros(o)) for o in widths[2:]])
        self.skip = nn.Parameter(torch.tensor(-4.0))  # softplus(-4) ~ 0.02: a small tilt, not a line to unlearn

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        h = q.unsqueeze(-1)
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = F.linear(h, F.softplus(weight), bias)
            if index < last:
                h = torch.tanh(h)
        return h.squeeze(-1) + F.softplus(self.skip) * q


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


class MixedModel(nn.Module):
    """A shared regressor, and one monotone transformer per dataset name (none for pooled training)."""

    def __init__(self, in_dim: int, cfg: TrainConfig, datasets: list[str]):
        super().__init__()
        self.regressor = QualityRegressor(in_dim, cfg.hidden, cfg.dropout)
        self.transformers = nn.ModuleDict({name: MonotoneTransformer(cfg.transformer_hidden) for name in datasets})

    def forward(self, x: torch.Tensor, dataset: str | None = None) -> torch.Tensor:
        quality = self.regressor(x)
        if dataset is None or not len(self.transformers):
            return quality
        return self.transformers[dataset](quality)


def norm_in_norm_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Li et al. (2020), p = q = 2, alpha = (1, 1): error after centring and norming both sides."""
    pred = pred - pred.mean()
    pred = pred / (pred.norm() + eps)
    target = target - target.mean()
    target = target / (target.norm() + eps)
    rho = (pred * target).sum()
    scale = 2.0  # 2^max(1, 1/q) * N^max(0, 1/p - 1/q) with p = q = 2
    return 0.5 * (((pred - target).norm() / scale) ** 2 + ((rho * pred - target).norm() / scale) ** 2)


def rank_hinge_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = RANK_MARGIN,
                    tie: float = RANK_TIE) -> torch.Tensor:
    """Mean over pairs of max(0, margin - sign(y_j - y_i) (p_j - p_i)); targets closer than ``tie`` count as
    tied and add only the margin (the reference's ``RankHingedLoss(margin=0.05, y_margin=0.01)``)."""
    pred_diff = pred.unsqueeze(0) - pred.unsqueeze(1)
    target_diff = target.unsqueeze(0) - target.unsqueeze(1)
    sign = torch.sign(target_diff.masked_fill(target_diff.abs() < tie, 0.0))
    upper = torch.triu(torch.ones_like(pred_diff, dtype=torch.bool), diagonal=1)
    return torch.clamp(margin - sign * pred_diff, min=0.0)[upper].mean()


def quality_loss(pred: torch.Tensor, target: torch.Tensor, terms=("smooth_l1", "norm_in_norm")) -> torch.Tensor:
    """Unweighted sum of the named terms on one dataset's (or the pooled) predictions and scores."""
    functions = {"mse": F.mse_loss, "smooth_l1": F.smooth_l1_loss, "norm_in_norm": norm_in_norm_loss,
                 "rank": rank_hinge_loss}
    return sum(functions[term](pred, target) for term in terms)


@dataclass
class FittedModel:
    """A trained :class:`MixedModel` with the feature standardisation it was trained under."""

    model: MixedModel
    mean: np.ndarray
    scale: np.ndarray
    monotonic: bool
    history: list[float] = field(default_factory=list)   # training loss per step

    @torch.no_grad()
    def predict(self, features, dataset: str | None = None) -> np.ndarray:
        """Predictions on ``dataset``'s scale (its transformer), or the shared quality when None or pooled."""
        if dataset is not None and self.monotonic and dataset not in self.model.transformers:
            raise MixedInputError(f"no transformer for dataset {dataset!r}; trained on "
                                  f"{sorted(self.model.transformers)}")
        x = torch.as_tensor((np.asarray(features, dtype=np.float64) - self.mean) / self.scale, dtype=torch.float32)
        self.model.eval()
        return self.model(x, dataset if self.monotonic else None).double().numpy()


def fit(train: dict[str, tuple[np.ndarray, np.ndarray]], cfg: TrainConfig, *, monotonic: bool,
        seed: int = 0) -> FittedModel:
    """Train on ``train[dataset] = (features N x D, scores N)``; pooled when not ``monotonic``.

    Deterministic given ``seed``; the global torch RNG is left as it was.
    """
    if not train:
        raise MixedInputError("no training data: give at least one dataset")
    dims = {name: np.shape(x)[1] if np.ndim(x) == 2 else None for name, (x, _) in train.items()}
    if None in dims.values() or len(set(dims.values())) != 1:
        raise MixedInputError(f"every dataset needs an N x D feature matrix with the same D; got {dims}. "
                              "Use one feature model for every dataset")
    for name, (x, y) in train.items():
        if len(x) != len(y) or len(x) < 2:
            raise MixedInputError(f"dataset {name!r}: {len(x)} feature rows and {len(y)} scores; "
                                  "need the same number, at least 2")
        undefined = features_lib.undefined_images(np.asarray(x, dtype=np.float64))
        if undefined.any():  # one NaN row would turn the standardisation, and so every weight, into NaN
            raise MixedInputError(f"dataset {name!r}: {int(undefined.sum())} training row(s) with undefined "
                                  f"(NaN/infinite) features, first row {int(np.flatnonzero(undefined)[0])}; "
                                  "drop them first, as run() does")
    pooled = np.concatenate([np.asarray(x, dtype=np.float64) for x, _ in train.values()])
    mean, scale = pooled.mean(axis=0), pooled.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)  # a constant feature column carries nothing; keep it finite
    xs = {n: torch.tensor((np.asarray(x, dtype=np.float64) - mean) / scale, dtype=torch.float32)
          for n, (x, _) in train.items()}
    ys = {n: torch.tensor(np.asarray(y, dtype=np.float64), dtype=torch.float32) for n, (_, y) in train.items()}
    threads = torch.get_num_threads()
    # These tensors are tiny: extra threads only add synchronisation (4x slower on 2 shared cores).
    torch.set_num_threads(1)
    try:
        return _train(xs, ys, cfg, monotonic=monotonic, seed=seed, mean=mean, scale=scale)
    finally:
        torch.set_num_threads(threads)


def _train(xs: dict, ys: dict, cfg: TrainConfig, *, monotonic: bool, seed: int, mean, scale) -> FittedModel:
    history = []
    in_dim = len(mean)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MixedModel(in_dim, cfg, list(xs) if monotonic else [])
        optimiser = torch.optim.AdamW([
            {"params": model.regressor.parameters(), "weight_decay": cfg.weight_decay},
            # Decay would pull the transformers' raw weights to 0, i.e. softplus(0): a bias, not a prior.
            {"params": model.transformers.parameters(), "weight_decay": 0.0}], lr=cfg.lr)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(cfg.steps):
            batch = {n: _batch_rows(len(ys[n]), cfg.batch_size, generator) for n in xs}
            # One pass of the shared regressor over every dataset's rows, then split per dataset.
            quality = model.regressor(torch.cat([xs[n][rows] for n, rows in batch.items()]))
            targets = [ys[n][rows] for n, rows in batch.items()]
            if monotonic:
                parts = quality.split([len(rows) for rows in batch.values()])
                loss = torch.stack([quality_loss(model.transformers[n](q), y, cfg.loss)
                                    for n, q, y in zip(batch, parts, targets)]).mean()
            else:
                loss = quality_loss(quality, torch.cat(targets), cfg.loss)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            history.append(loss.item())
    model.eval()
    return FittedModel(model, mean, scale, monotonic, history)


def _batch_rows(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    if batch_size == 0 or batch_size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:batch_size]


def load_features(features_dir, prepared_dir, datasets, model: str) -> tuple[dict, dict]:
    """``features[dataset]`` (N x D) for ``model`` and ``manifests[dataset]``, rows checked to align
    (:func:`iqabench.features.load_for`).

    Rows where ``model`` is undefined (NaN) are kept as they are: :func:`run` drops and counts them.
    """
    features, manifests = {}, {}
    for ds in datasets:
        manifests[ds] = manifest_lib.read(Path(prepared_dir) / ds / "manifest.csv")
        path = Path(features_dir) / f"{ds}.npz"
        try:
            arrays = features_lib.load_for(path, manifests[ds])
        except features_lib.FeaturesFileError as err:  # missing or damaged: one error type for this module
            raise MixedInputError(str(err)) from None
        if model not in arrays:
            available = list(arrays)
            raise MixedInputError(f"{path} has no features for model {model!r} (it has {available}); "
                                  f"add {model!r} to `models:` in params.yaml and run `dvc repro extract@{ds}`, "
                                  "or set mixed.model to one of those")
        features[ds] = np.asarray(arrays[model], dtype=np.float64)
    return features, manifests


def dataset_splits(manifests: dict, *, n_splits: int, test_frac: float, val_frac: float = 0.0, seed: int = 0,
                   official: bool = False, arniqa_splits: str = "") -> dict[str, list[Split]]:
    """The protocol's splits of every dataset: split s here is split s of the `evaluate` stage.

    A dataset used with one fixed split (its official one, FLIVE's in ARNIQA's files) gets it at every index.
    """
    out = {}
    for ds, frame in manifests.items():
        try:
            _, fixed = fixed_splits(ds, frame, official=official, arniqa_splits=arniqa_splits)
        except ValueError as err:  # ARNIQA's files missing or malformed, an official split without a test part
            raise MixedInputError(str(err)) from None
        if fixed is not None:
            if 1 < len(fixed) < n_splits:
                raise MixedInputError(f"{ds}: ARNIQA's split files hold {len(fixed)} splits, fewer than "
                                      f"evaluate.n_splits = {n_splits}; lower n_splits to {len(fixed)}")
            out[ds] = fixed * n_splits if len(fixed) == 1 else fixed[:n_splits]
        else:
            out[ds] = random_splits(frame["content_id"].to_numpy(), n_splits=n_splits, test_frac=test_frac,
                                    val_frac=val_frac, seed=seed)
    return out


def drop_missing(features: dict, splits: dict[str, list[Split]], *, model: str) -> tuple[dict, dict[str, int]]:
    """Each dataset's splits less its images with undefined features, and how many were dropped per dataset.

    The protocol's own rule (:func:`~iqabench.evaluation.protocol.drop_undefined`): a split left with
    fewer than 2 training or 3 test images is an error naming the dataset, the model and the counts.
    """
    kept, n_missing = {}, {}
    for ds, parts in splits.items():
        missing = features_lib.undefined_images(np.asarray(features[ds], dtype=np.float64))
        n_missing[ds] = int(missing.sum())
        if not missing.any():
            kept[ds] = parts
            continue
        where = f"mixed: dataset {ds!r} ({len(missing)} images), features of model {model!r}"
        try:
            kept[ds] = [drop_undefined(split, missing) for split in parts]
            check_sizes(kept[ds], where, n_missing[ds])
        except ValueError as error:
            raise MixedInputError(f"{error}. Drop {ds!r} from mixed.datasets or set mixed.model to a model "
                                  "defined on its images") from error
    return kept, n_missing


def run(features: dict, manifests: dict, cfg: TrainConfig, *, n_splits: int = 10, test_frac: float = 0.2,
        val_frac: float = 0.0, seed: int = 0, logistic: str = "5pl", official: bool = False,
        arniqa_splits: str = "", methods=METHODS, model: str, show_progress: bool = False) -> pd.DataFrame:
    """Per-split test metrics of every method on every dataset (columns :data:`PER_SPLIT_COLUMNS`).

    Split s trains on the train parts of *all* datasets' split s (``single``: of one
    dataset) and tests on each dataset's test part; training is seeded with seed + s. Images whose
    features are undefined are left out of every part (:func:`drop_missing`; ``model`` names them).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MixedInputError(f"unknown method(s) {unknown}; use some of {list(METHODS)}")
    missing = sorted(set(manifests) - set(features))
    if missing:
        raise MixedInputError(f"no features for dataset(s) {missing}; every manifest needs a feature matrix")
    scores = {ds: frame["score"].to_numpy(dtype=np.float64) for ds, frame in manifests.items()}
    splits = dataset_splits(manifests, n_splits=n_splits, test_frac=test_frac, val_frac=val_frac, seed=seed,
                            official=official, arniqa_splits=arniqa_splits)
    splits, n_missing = drop_missing(features, splits, model=model)  # before any training: fails fast
    rows = []
    n_fits = n_splits * sum(len(manifests) if m == "single" else 1 for m in methods)
    with Progress(disable=not show_progress) as progress:
        task = progress.add_task("mixed-dataset training", total=n_fits)
        for s in range(n_splits):
            train = {ds: (features[ds][splits[ds][s].train], scores[ds][splits[ds][s].train]) for ds in manifests}
            predictors = {}
            for method in methods:
                if method == "single":
                    for ds in manifests:
                        predictors[method, ds] = fit({ds: train[ds]}, cfg, monotonic=False, seed=seed + s)
                        progress.advance(task)
                else:
                    fitted = fit(train, cfg, monotonic=method == "monotonic", seed=seed + s)
                    predictors.update({(method, ds): fitted for ds in manifests})
                    progress.advance(task)
            n_pooled = sum(len(y) for _, y in train.values())
            for (method, ds), fitted in predictors.items():
                test = splits[ds][s].test
                metrics = compute_metrics(fitted.predict(features[ds][test], ds), scores[ds][test], logistic=logistic)
                rows.append({"dataset": ds, "method": method, "split": s,
                             "n_train": len(train[ds][1]) if method == "single" else n_pooled,
                             "n_test": len(test), "n_missing": n_missing[ds],
                             **{k: metrics[k] for k in METRIC_COLUMNS}})
    return pd.DataFrame(rows, columns=PER_SPLIT_COLUMNS)
