"""Benchmark: all-splits, all-alphas ridge (one eigh per split) against a loop of sklearn Ridge fits.

Checks that both give the same test predictions and reports the speed-up, on
features shaped like a frozen encoder's (default 2000 images x 4096 dims, 10
splits, 13 alphas from 1e-3 to 1e3). Writes reports/benchmarks/ridge.json and .md.

    python benchmarks/ridge_vs_sklearn.py [--n 2000 --d 4096 --splits 10 --alphas 13 --sklearn-fits 130]

``--sklearn-fits`` caps how many (split, alpha) sklearn fits are timed; the sklearn
total is then extrapolated from the mean time per fit, and the report says so.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress
from sklearn.linear_model import Ridge

from iqabench import io
from iqabench.evaluation.ridge import alpha_grid, fit_predict
from iqabench.evaluation.splits import random_splits
from iqabench.provenance import stamp, stamp_line


def make_features(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank features plus noise, with MOS-like targets in [0, 1] driven by the latent factors."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 64))
    X = np.maximum(latent @ rng.normal(size=(64, d)) / 8.0 + rng.normal(0, 0.5, (n, d)), 0.0)
    y = 1.0 / (1.0 + np.exp(-(latent @ rng.normal(size=64)) / 8.0))
    return X, y


def run(n: int, d: int, n_splits: int, n_alphas: int, sklearn_fits: int, seed: int) -> dict:
    X, y = make_features(n, d, seed)
    splits = random_splits(np.arange(n), n_splits=n_splits, test_frac=0.2, seed=seed)
    alphas = alpha_grid(n_alphas)

    start = time.perf_counter()
    ours = fit_predict(X, y, splits, alphas, show_progress=True)
    ours_s = time.perf_counter() - start

    pairs = [(s, a) for s in range(n_splits) for a in range(n_alphas)]
    timed = pairs if sklearn_fits >= len(pairs) else [pairs[i] for i in
                                                      np.random.default_rng(seed).choice(len(pairs), sklearn_fits,
                                                                                         replace=False)]
    max_abs_diff = 0.0
    sklearn_s = 0.0
    with Progress() as progress:
        task = progress.add_task("sklearn Ridge fits", total=len(timed))
        for s, a in timed:
            split = splits[s]
            start = time.perf_counter()
            pred = Ridge(alpha=alphas[a]).fit(X[split.train], y[split.train]).predict(X[split.test])
            sklearn_s += time.perf_counter() - start
            max_abs_diff = max(max_abs_diff, float(np.max(np.abs(pred - ours.test[s][a]))))
            progress.advance(task)
    sklearn_total_s = sklearn_s / len(timed) * len(pairs)
    return {
        "n_images": n, "n_features": d, "n_splits": n_splits, "n_alphas": n_alphas,
        "alphas": [float(a) for a in alphas],
        "ours_seconds": ours_s,
        "sklearn_fits_timed": len(timed), "sklearn_fits_total": len(pairs),
        "sklearn_seconds_timed": sklearn_s, "sklearn_seconds_total": sklearn_total_s,
        "sklearn_extrapolated": len(timed) < len(pairs),
        "speedup": sklearn_total_s / ours_s,
        "max_abs_prediction_diff": max_abs_diff,
        "agree_1e-6": max_abs_diff < 1e-6,
    }


def markdown(result: dict) -> str:
    extrapolated = (f" (timed {result['sklearn_fits_timed']} of {result['sklearn_fits_total']} fits, "
                    "total extrapolated)" if result["sklearn_extrapolated"] else "")
    return "\n".join([
        "# Ridge: one eigendecomposition per split vs. sklearn Ridge per (split, alpha)",
        "",
        stamp_line(result["provenance"]),
        "",
        f"{result['n_images']} images x {result['n_features']} features, {result['n_splits']} splits "
        f"(80/20), {result['n_alphas']} alphas from {result['alphas'][0]:g} to {result['alphas'][-1]:g}.",
        "",
        "| method | seconds |",
        "|---|---|",
        f"| iqabench.evaluation.ridge.fit_predict | {result['ours_seconds']:.2f} |",
        f"| sklearn Ridge loop{extrapolated} | {result['sklearn_seconds_total']:.2f} |",
        "",
        f"Speed-up: **{result['speedup']:.1f}x**. Largest absolute difference in test predictions: "
        f"{result['max_abs_prediction_diff']:.2e} (agree to 1e-6: {result['agree_1e-6']}).",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--alphas", type=int, default=13)
    parser.add_argument("--sklearn-fits", type=int, default=130)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/ridge"))
    args = parser.parse_args()
    result = {"provenance": stamp(), **run(args.n, args.d, args.splits, args.alphas, args.sklearn_fits, args.seed)}
    io.write_json(args.out.with_suffix(".json"), result)
    io.write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
