"""A small fake study for tests that need logged MLflow runs without running the pipeline.

Two datasets, three rows (a full-reference one among them, whose id has a colon), the same shapes
stages/report.py hands to tracking.log_study.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from iqabench import tracking

DATASETS = ("synthetic-single", "synthetic-mixed")
MODELS = ("contrique", "arniqa", "fr:gmsd")


def inputs(root: Path, shift: float = 0.0, seed: int = 0, commit: str = "0123456789abcdef") -> dict:
    """Keyword arguments for tracking.log_study; ``shift`` moves every SRCC, ``seed`` is the changed param."""
    figure = root / "reports" / "scatter.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)).save(figure)
    base = {"contrique": 0.61, "arniqa": 0.55, "fr:gmsd": 0.83}
    within = pd.DataFrame([{"model": m, "dataset": ds, "n_images": 400, "srcc": round(base[m] + shift - 0.05 * i, 4),
                            "plcc": round(base[m] + shift - 0.04 * i, 4)}
                           for m in MODELS for i, ds in enumerate(DATASETS)])
    per_model = {m: {"within": {r["dataset"]: {"srcc": r["srcc"], "plcc": r["plcc"]}
                                for r in within[within["model"] == m].to_dict("records")},
                     "cross": {f"{a}->{b}": {"srcc": round(base[m] + shift - 0.2, 4), "plcc": 0.5}
                               for a in DATASETS for b in DATASETS if a != b}}
                 for m in MODELS}
    headline = tracking.headline({m: per_model[m]["within"] for m in MODELS}, list(DATASETS))
    manifest = pd.DataFrame({"image": ["a.png", "b.png"], "score": [0.2, 0.8], "content_id": ["a", "b"]})
    return dict(params={"seed": seed, "evaluate": {"n_splits": 10, "alphas": [0.1]}},
                metrics={**headline, "time.evaluate": 3.5, "pipeline_seconds": 3.5},
                eval_params={"n_splits": 10, "alphas": [0.1]}, per_model=per_model,
                tables={"srcc_table.json": within.pivot(index="model", columns="dataset", values="srcc").reset_index(),
                        "tables/within.json": within},
                artifacts={"figures": [figure]},
                description="**Leaderboard**\n\n| model | synthetic-single |\n|---|---:|\n| fr:gmsd | **0.830** |\n",
                datasets=[tracking.DatasetInput(ds, manifest, f"{i}" * 16, f"data/prepared/{ds}/manifest.csv")
                          for i, ds in enumerate(DATASETS)],
                # Other results come from another dvc.lock: a study logged twice is logged once (tracking).
                tags={"git_commit": commit, "dvc_lock": f"{zlib.crc32(f'{shift}/{seed}'.encode()):08x}feedface"})
