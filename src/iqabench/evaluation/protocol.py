"""The evaluation protocol on frozen features: within-dataset splits and cross-dataset transfer.

Within a dataset: ``n_splits`` content-disjoint random splits, a ridge regressor
fitted on train, alpha chosen on val by SRCC (or one fixed alpha), metrics on
test, and the *median* over splits reported (as CONTRIQUE and ARNIQA do).
Across datasets: fit on all of A, predict all of B; the logistic mapping for
PLCC is fitted on B's predictions against B's MOS, as the field does.

Targets are the manifest's ``score`` (higher is better, in [0, 1]), so RMSE is on
that unit scale, not the dataset's raw MOS scale.

Missing values: an image whose features are NaN (the row is undefined there, see
:mod:`iqabench.features`) is dropped for that model only, and counted
(``n_missing``). Splits are drawn from the full manifest first, so every model
still has the same splits; a model with missing images is scored on each
split's remaining test images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..features import undefined_images  # one rule for "undefined", shared with extract and score
from .arniqa_splits import for_dataset
from .metrics import compute_metrics
from .ridge import SplitPredictions, fit_predict, ridge_path, select_alpha
from .splits import Split, has_official_split, official_split, random_splits

METRICS = ("srcc", "krcc", "plcc", "plcc_raw", "rmse")
PER_SPLIT_COLUMNS = ("split", "seed", "alpha", "n_train", "n_val", "n_test", "n_missing") + METRICS
MIN_TEST = 3  # rank correlations and the logistic fit need a few test images


def _targets(features, manifest: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    for column in ("score", "content_id"):
        if column not in manifest.columns:
            raise ValueError(f"{where}: manifest has no '{column}' column; build it with iqabench.manifest")
    if features.ndim != 2 or features.shape[0] != len(manifest):
        raise ValueError(f"{where}: features have shape {features.shape} but the manifest has "
                         f"{len(manifest)} rows; extract features for exactly the manifest's images, in order")
    scores = pd.to_numeric(manifest["score"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        row = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"{where}: 'score' is not a finite number in manifest row {row}")
    return features, scores


def drop_undefined(split: Split, missing: np.ndarray) -> Split:
    """The split less the ``missing`` images (same parts otherwise)."""
    return Split(train=split.train[~missing[split.train]], val=split.val[~missing[split.val]],
                 test=split.test[~missing[split.test]], seed=split.seed)


def check_sizes(splits: list[Split], where: str, n_missing: int = 0) -> None:
    """Every split trains on 2 images or more and tests on ``MIN_TEST`` or more, or a ValueError says which."""
    for index, split in enumerate(splits):
        if len(split.test) < MIN_TEST or len(split.train) < 2:
            dropped = f"after dropping the {n_missing} image(s) with undefined features, " if n_missing else ""
            raise ValueError(f"{where}: {dropped}split {index} keeps {len(split.train)} train and "
                             f"{len(split.test)} test images; need at least 2 and {MIN_TEST}: evaluate a dataset "
                             "with more images (and contents), or raise evaluate.test_frac")


@dataclass(frozen=True)
class SplitRun:
    """What one model did on one dataset's splits: enough to score it and to compare it with another."""

    splits: list[Split]
    alphas: list[float]            # alpha used on each split
    test_pred: list[np.ndarray]    # test predictions of each split, aligned with splits[s].test
    scores: np.ndarray             # the manifest's score column
    n_missing: int = 0             # images dropped because the features are undefined (NaN) there
    drawn: list[Split] | None = None  # the splits as drawn, before those images were dropped


def run_splits(features, manifest: pd.DataFrame, *, n_splits: int = 10, test_frac: float = 0.2,
               val_frac: float = 0.0, seed: int = 0, alphas=(0.1,), standardize: bool = False,
               alpha_rule: str = "median", splits: list[Split] | None = None,
               show_progress: bool = False, where: str = "run_splits") -> SplitRun:
    """Fit and predict every split; ``splits`` overrides the random ones (e.g. an official split).

    With one alpha it is used as given (CONTRIQUE: 0.1). With several, val_frac must
    be > 0 and the alpha is chosen on val by SRCC under ``alpha_rule``.
    """
    features, scores = _targets(features, manifest, where)
    alphas = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if splits is None:
        try:
            splits = random_splits(manifest["content_id"].to_numpy(), n_splits=n_splits, test_frac=test_frac,
                                   val_frac=val_frac, seed=seed)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    missing, drawn = undefined_images(features), list(splits)
    if missing.any():
        splits = [drop_undefined(split, missing) for split in splits]
        features = np.where(missing[:, None], 0.0, features)  # in no split part now: never read
    check_sizes(splits, where, int(missing.sum()))
    if alphas.size > 1 and any(len(s.val) == 0 for s in splits):
        raise ValueError(f"{alphas.size} alphas given but the splits have no validation part to choose "
                         "among them; set val_frac > 0 or give a single alpha")
    try:
        predictions: SplitPredictions = fit_predict(features, scores, splits, alphas, standardize=standardize,
                                                    show_progress=show_progress)
    except ValueError as exc:  # e.g. an alpha that makes every weight vanish: say which model and dataset
        raise ValueError(f"{where}: {exc}") from None
    if alphas.size == 1:
        chosen = np.zeros(len(splits), dtype=int)
    else:
        chosen = select_alpha(predictions, scores, splits, rule=alpha_rule)
    return SplitRun(splits=list(splits), alphas=[float(predictions.alphas[i]) for i in chosen],
                    test_pred=[pred[i] for pred, i in zip(predictions.test, chosen)], scores=scores,
                    n_missing=int(missing.sum()), drawn=drawn)


def score_run(run: SplitRun, logistic: str = "5pl", where: str = "score_run") -> pd.DataFrame:
    rows = []
    for index, (split, alpha, pred) in enumerate(zip(run.splits, run.alphas, run.test_pred)):
        try:
            metrics = compute_metrics(pred, run.scores[split.test], logistic=logistic)
        except ValueError as exc:  # a test set of one score, say: which dataset, row and split
            raise ValueError(f"{where}, split {index}: {exc}") from None
        rows.append({"split": index, "seed": split.seed, "alpha": alpha, "n_train": len(split.train),
                     "n_val": len(split.val), "n_test": len(split.test), "n_missing": run.n_missing, **metrics})
    return pd.DataFrame(rows, columns=list(PER_SPLIT_COLUMNS))


def fixed_splits(dataset: str, manifest: pd.DataFrame, *, official: bool = False,
                 arniqa_splits: str = "") -> tuple[str, list[Split] | None]:
    """How ``dataset`` is split, and the splits when they are not drawn at random: ``("arniqa", ARNIQA's split
    files)`` when the folder ``arniqa_splits`` holds them for this set, ``("official", [its split])`` with
    ``official`` and a manifest that marks one (KonIQ-10k, FLIVE), else ``("random", None)``."""
    if arniqa_splits:
        try:
            splits = for_dataset(dataset, manifest, arniqa_splits)
        except (OSError, ValueError) as err:  # a missing or malformed file: the stage's one line, no traceback
            raise ValueError(f"evaluate.arniqa_splits: {err}") from None
        if splits is not None:
            return "arniqa", splits
    if official and has_official_split(manifest["split"]):
        return "official", [official_split(manifest["split"], where=f"{dataset} manifest")]
    return "random", None


def summarise(per_split: pd.DataFrame) -> dict:
    """{metric: {median, q25, q75, min, max, mean}} over splits, plus n_splits; the median is the headline."""
    missing = [m for m in METRICS if m not in per_split.columns]
    if missing or per_split.empty:
        raise ValueError(f"per-split results need rows and the columns {list(METRICS)}; missing {missing}")
    summary = {}
    for metric in METRICS:
        values = per_split[metric].to_numpy(dtype=np.float64)
        summary[metric] = {
            "median": float(np.median(values)),
            "q25": float(np.quantile(values, 0.25)),
            "q75": float(np.quantile(values, 0.75)),
            "min": float(values.min()),
            "max": float(values.max()),
            "mean": float(values.mean()),
        }
    summary["n_splits"] = int(len(per_split))
    return summary


def cross_dataset(train_features, train_manifest: pd.DataFrame, test_features, test_manifest: pd.DataFrame,
                  *, alpha: float = 0.1, standardize: bool = False, logistic: str = "5pl") -> dict[str, float]:
    """Train on every image of A, test on every image of B; metrics plus n_train, n_test and alpha."""
    (metrics,) = cross_dataset_many(train_features, train_manifest, [(test_features, test_manifest)],
                                    alpha=alpha, standardize=standardize, logistic=logistic)
    return metrics


def cross_dataset_many(train_features, train_manifest: pd.DataFrame, tests: list[tuple[object, pd.DataFrame]],
                       *, alpha: float = 0.1, standardize: bool = False,
                       logistic: str = "5pl") -> list[dict[str, float]]:
    """:func:`cross_dataset` for several test sets B from one fit on A.

    The fit (one eigendecomposition of A's d x d or n x n Gram matrix) is most
    of the cost; the protocol's every-pair table needs it once per training
    set, not once per pair.
    """
    X_train, y_train = _targets(train_features, train_manifest, "cross_dataset train")
    targets = [_targets(f, m, f"cross_dataset test {i}") for i, (f, m) in enumerate(tests)]
    # Images with undefined features are dropped on both sides and counted, as within a dataset.
    train_missing = undefined_images(X_train)
    X_train, y_train = X_train[~train_missing], y_train[~train_missing]
    missing = [undefined_images(X) for X, _ in targets]
    targets = [(X[~m], y[~m]) for (X, y), m in zip(targets, missing)]
    if len(y_train) < 2 or any(len(y) < MIN_TEST for _, y in targets):
        raise ValueError(f"cross_dataset: too few images with defined features ({len(y_train)} to train on, "
                         f"{[len(y) for _, y in targets]} to test on)")
    for X_test, _ in targets:
        if X_train.shape[1] != X_test.shape[1]:
            raise ValueError(f"train features have {X_train.shape[1]} columns but test features have "
                             f"{X_test.shape[1]}; both must come from the same model and layer")
    predictions = ridge_path(X_train, y_train, [X for X, _ in targets], [alpha], standardize=standardize)
    return [{"alpha": float(alpha), "n_train": int(len(y_train)), "n_test": int(len(y_test)),
             "n_missing": int(train_missing.sum() + m.sum()), **compute_metrics(pred[0], y_test, logistic=logistic)}
            for pred, (_, y_test), m in zip(predictions, targets, missing)]
