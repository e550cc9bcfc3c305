"""Quality of a user's own images: the trained encoder, then the fitted readout."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from . import images, readout, zoo


def score_images(paths: list[str | Path], encoder_path: str | Path = zoo.PRETRAINED,
                 readout_path: str | Path = "data/models/readout.npz") -> pd.DataFrame:
    """One row per image: path, width, height, predicted quality (0-100, higher is better).

    Raises :class:`iqabench.images.ImageError` naming the first file that is not an image,
    before any model runs, so a typo in a long list costs nothing.
    """
    loaded = [images.load(p) for p in paths]
    if not Path(encoder_path).is_file():
        raise FileNotFoundError(f"{encoder_path} does not exist; run `dvc repro` (or `make repro`) first")
    fn = zoo.feature_fn("file:" + str(encoder_path))
    fitted = readout.load(readout_path)
    with torch.no_grad():
        feats = torch.cat([fn(img[None]) for img in loaded]).numpy()
    quality = fitted.predict(feats) * 100.0
    return pd.DataFrame({"image": [str(p) for p in paths], "width": [img.shape[2] for img in loaded],
                         "height": [img.shape[1] for img in loaded], "quality": quality.round(2),
                         "scale": f"0-100, as {fitted.dataset} scores (higher is better)"})
