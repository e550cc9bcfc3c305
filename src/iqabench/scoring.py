"""Quality of a user's own images: any no-reference row of the study, then its fitted regressor."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import features, images, regressor, rows

MAX_SHORT_SIDE = 512  # as params.yaml extract.max_short_side, so a photo is seen as the study saw its images


def score_images(paths: list[str | Path], model: str = "contrique", regressors: str | Path = regressor.REGRESSORS,
                 max_short_side: int | None = MAX_SHORT_SIDE) -> pd.DataFrame:
    """One row per image: path, width, height, predicted quality (0-100, higher is better).

    ``model`` is any no-reference row (:mod:`iqabench.rows`) in the study; its regressor was fitted by
    the `evaluate` stage. Raises :class:`iqabench.images.ImageError` naming the
    first file that is not an image, before any model runs, so a typo in a
    long list costs nothing.
    """
    if rows.is_full_reference(model):
        raise ValueError(f"{model} is a full-reference metric: it needs each image's pristine reference, "
                         "so it cannot score a photo on its own; choose a no-reference model")
    shapes = [tuple(images.load(p).shape[1:]) for p in paths]
    fitted = regressor.load(regressor.path_for(model, regressors))
    feature_fn = rows.feature_fn(model)
    frame = pd.DataFrame({"image": [str(p) for p in paths]})
    feats = features.extract(feature_fn, frame, batch_size=1, max_short_side=max_short_side, show_progress=False)
    return frame.assign(height=[h for h, _ in shapes], width=[w for _, w in shapes],
                        quality=(fitted.predict(feats) * 100.0).round(2),
                        scale=f"0-100, as {fitted.dataset} scores (higher is better)", model=model)
