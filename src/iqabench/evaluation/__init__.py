"""The NR-IQA evaluation protocol on frozen features: metrics, splits, ridge, protocol, significance."""
from .metrics import compute_metrics, krcc, logistic_fit, plcc, rmse, srcc
from .protocol import SplitRun, cross_dataset, cross_dataset_many, run_splits, score_run, summarise
from .ridge import (SplitPredictions, alpha_grid, fit_predict, ridge_path,
                    select_alpha)
from .significance import compare, image_bootstrap
from .splits import Split, has_official_split, official_split, random_splits

__all__ = [
    "Split", "SplitPredictions", "SplitRun", "alpha_grid", "compare",
    "compute_metrics", "cross_dataset", "cross_dataset_many", "fit_predict", "has_official_split", "image_bootstrap",
    "krcc", "logistic_fit", "official_split", "plcc", "random_splits", "ridge_path", "rmse", "run_splits",
    "score_run", "select_alpha", "srcc", "summarise",
]
