"""Classic baselines as rows of the benchmark tables: BRISQUE, NIQE and full-reference metrics.

Each name below becomes a feature function for the `extract` stage, and the
`evaluate` stage reads it out with the same ridge protocol as every encoder:

* ``brisque``: the 36 raw BRISQUE features (:mod:`iqabench.models.brisque`).
  They span ~5 orders of magnitude (shapes ~1, variances ~1e-3), so turn on
  ``evaluate.standardize`` for them or the fixed ridge alpha shrinks the
  small-scale features away.
* ``niqe``: one feature, **minus** the NIQE score, so that higher is better like
  every manifest score. A ridge fitted on one feature is an affine map with a
  positive or negative slope, so its SRCC equals |SRCC| of NIQE itself: the row
  reports NIQE's own rank correlation (KRCC likewise; PLCC and RMSE are those
  of a linear/logistic fit of NIQE).
* ``fr:psnr``, ``fr:ssim``, ``fr:ms_ssim``, ``fr:vif``, ``fr:gmsd``:
  full-reference metrics of each image against its manifest ``reference``
  (:mod:`iqabench.fr_metrics`; GMSD negated, so that higher is better).
* ``fr:deepwsd``: minus DeepWSD (:mod:`iqabench.models.deepwsd`) on the stages
  of the project's pretrained encoder, ``data/models/encoder.pt`` (the
  `pretrain` stage; ImageNet weights cannot be fetched here).
* ``fr:deepwsd-vgg16:PATH``: minus DeepWSD on torchvision VGG16 ``features``
  from a local state dict at PATH: the published configuration.

All ``fr:`` functions take ``(images, references)`` and carry
``needs_reference = True``; :func:`iqabench.features.extract` loads the
references for them and refuses datasets without any. On the embedded
synthetic sets the pseudo-MOS is itself a consensus of full-reference metrics
(``prepare.label_metrics``, by default SSIM, MS-SSIM and VIF), so the rows of
those metrics are close to circular there: an upper bound, not a competitor.

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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from . import fr_metrics, images
from .models import deepwsd
from .models.brisque import brisque_features
from .models.niqe import NiqeModel, fit_niqe, niqe_score

NIQE_MODEL = Path("data/models/niqe_mvg.npz")
KADIS_ROOT = Path("data/raw/kadis700k")
CLASSIC = ("brisque", "niqe")
FR_PREFIX = "fr:"
FR_NAMES = tuple(f"{FR_PREFIX}{metric}" for metric in fr_metrics.FR_METRICS)
DEEPWSD = f"{FR_PREFIX}deepwsd"
DEEPWSD_VGG16 = f"{FR_PREFIX}deepwsd-vgg16:"  # followed by the path of the VGG16 state dict
NAMES = CLASSIC + FR_NAMES + (DEEPWSD, DEEPWSD_VGG16 + "PATH")
# The NIQE paper fitted its model on 125 pristine photos; a KADIS sample of that size
# keeps the fit comparable and fast.
KADIS_SAMPLE = 125


def is_baseline(name: str) -> bool:
    # Any fr: name is ours, so a misspelt metric gets the list of metrics, not of encoders.
    return name in CLASSIC or is_full_reference(name)


def is_full_reference(name: str) -> bool:
    """A row that needs each image's pristine reference (it has no value on authentic images or a user's photo)."""
    return name.startswith(FR_PREFIX)


def feature_fn(name: str, device: str | torch.device = "cpu", niqe_model: str | Path = NIQE_MODEL,
               deepwsd_encoder: str | Path = deepwsd.DEFAULT_ENCODER) -> Callable:
    """The feature function of a baseline row (see the module docstring for each name)."""
    if name == "brisque":
        return _feature_fn(brisque_features, name, per_image_on_cpu=True)
    if name == "niqe":
        model = NiqeModel.load(_existing_niqe_model(niqe_model))
        return _feature_fn(lambda batch: -niqe_score(batch, model).unsqueeze(1), name, per_image_on_cpu=True)
    if name == DEEPWSD:
        return deepwsd_feature_fn(deepwsd.from_encoder(deepwsd_encoder), name, device)
    if name.startswith(DEEPWSD_VGG16):
        weights = name[len(DEEPWSD_VGG16):]
        if not weights:
            raise ValueError(f"{name!r}: give the VGG16 state dict's path after the colon, "
                             f"e.g. {DEEPWSD_VGG16}weights/vgg16-397923af.pth")
        return deepwsd_feature_fn(deepwsd.from_vgg16(weights), name, device)
    if name.startswith(FR_PREFIX):
        return fr_feature_fn(name[len(FR_PREFIX):])
    raise ValueError(f"unknown baseline {name!r}; baselines are {list(NAMES)}")


def fr_feature_fn(metric: str):
    """``(images, references) -> N x 1`` values of one full-reference metric, flagged ``needs_reference``."""
    if metric not in fr_metrics.FR_METRICS:
        raise ValueError(f"unknown full-reference metric {metric!r}; choose from "
                         f"{[*FR_NAMES, DEEPWSD, DEEPWSD_VGG16 + 'PATH']}")
    compute = fr_metrics.FR_METRICS[metric]

    def with_reference(batch: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        if batch.shape != references.shape:
            raise ValueError(f"{FR_PREFIX}{metric}: images {tuple(batch.shape)} and references "
                             f"{tuple(references.shape)} differ in shape")
        # float32: the metrics' float64 convolutions are ~25x slower on CPU for no change in ranking.
        values = compute(batch.float().contiguous(), references.float().contiguous()).reshape(-1)
        if metric == "psnr":
            values = _cap_psnr(values, batch.shape)
        return values.unsqueeze(1)

    return _feature_fn(with_reference, f"{FR_PREFIX}{metric}", needs_reference=True)


def deepwsd_feature_fn(model: deepwsd.DeepWSD, name: str, device: str | torch.device = "cpu"):
    """``(images, references) -> N x 1`` minus DeepWSD, flagged ``needs_reference``."""
    model = model.to(device)

    def with_reference(batch: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        return -model(batch.float().contiguous(), references.float().contiguous()).unsqueeze(1)

    return _feature_fn(with_reference, name, needs_reference=True)


def _cap_psnr(values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """An unchanged image has infinite PSNR, which the ridge cannot take.

    It gets the PSNR of the smallest change an 8-bit image can have (one level
    in one channel of one pixel), which no distinct 8-bit pair exceeds: the
    order of every other image is kept.
    """
    smallest_mse = (1.0 / 255.0) ** 2 / (shape[1] * shape[2] * shape[3])
    cap = -10.0 * np.log10(smallest_mse)
    return torch.where(torch.isfinite(values), values, torch.full_like(values, cap))


def _feature_fn(compute, name: str, needs_reference: bool = False, per_image_on_cpu: bool = False):
    """Wrap ``compute`` as a feature function that names its row and runs outside bf16 autocast.

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

    call.name = name
    call.needs_reference = needs_reference
    call.__qualname__ = call.__name__ = f"{name.replace(':', '_')}_features"
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
                      patch_size: int = 96, sharpness_threshold: float = 0.75) -> NiqeModel:
    """Fit the NIQE pristine MVG on KADIS-700k when present, else on the embedded photographs.

    With the embedded default the model has seen the undistorted scenes of the
    synthetic sets (see the module docstring); say so next to any NIQE number.
    """
    loaders = pristine_images(kadis_root, kadis_sample)
    return fit_niqe(_LoadingList(loaders), patch_size=patch_size, sharpness_threshold=sharpness_threshold)


class _LoadingList:
    """Sized iterable that loads one photo at a time, so a progress bar knows the total."""

    def __init__(self, loaders: list) -> None:
        self.loaders = loaders

    def __len__(self) -> int:
        return len(self.loaders)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (load() for load in self.loaders)
