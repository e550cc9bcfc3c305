"""The NR-IQA evaluation protocol on frozen features: metrics, splits, ridge, protocol, significance."""
from .metrics import compute_metrics, krcc, logistic_fit, plcc, rmse, srcc
from .protocol import SplitRun, cross_dataset, cross_dataset_many, run_splits, score_run, summarise, within_dataset
from .ridge import (ARNIQA_ALPHAS, CONTRIQUE_ALPHA, SplitPredictions, alpha_grid, fit_predict, ridge_path,
                    select_alpha)
from .significance import compare, compare_runs, image_bootstrap
from .splits import Split, has_official_split, official_split, random_splits

__all__ = [
    "ARNIQA_ALPHAS", "CONTRIQUE_ALPHA", "Split", "SplitPredictions", "SplitRun", "alpha_grid", "compare",
    "compare_runs", "compute_metrics", "cross_dataset", "cross_dataset_many", "fit_predict", "has_official_split", "image_bootstrap",
    "krcc", "logistic_fit", "official_split", "plcc", "random_splits", "ridge_path", "rmse", "run_splits",
    "score_run", "select_alpha", "srcc", "summarise", "within_dataset",
]
