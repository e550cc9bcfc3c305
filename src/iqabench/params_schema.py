"""What each section of ``params.yaml`` may hold: known keys, allowed values, defaults.

One table for every stage, read by :func:`iqabench.params.validate`. Sections
backed by a config dataclass (``finetune``, ``mixed``, and each encoder's
section under ``pretrain:``) take their known keys from that dataclass, so a new
setting needs no second edit here; the ranges below cover the keys those
sections share. ``pretrain:`` maps each encoder the pipeline trains (stage
``pretrain@NAME``) to its own PretrainConfig section.
Names that refer to other registries (datasets, model rows, photographs, label
metrics) are looked up in the module that owns them, never copied.
:func:`check_section` and :func:`check_value` check a section or one value against
this table and raise :class:`ParamsError` naming the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REQUIRED = object()  # a key without a default: the section must give it


class ParamsError(ValueError):
    """A params.yaml that breaks the schema; the message names key, value and what is allowed."""


@dataclass(frozen=True)
class Key:
    """One setting: ``check(value)`` says whether it is allowed, ``allowed`` says so in words (``words``, or
    what ``words()`` returns when a message needs them: the names of a registry owned by another module)."""

    check: Callable[[Any], bool]
    words: str | Callable[[], str]
    default: Any = REQUIRED

    @property
    def allowed(self) -> str:
        return self.words() if callable(self.words) else self.words


def _is_number(v) -> bool:
    # An int too large for a float (a 400-digit literal) is no setting: math.isfinite raised OverflowError.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (
        math.isfinite(v) if isinstance(v, float) else abs(v) < 2 ** 63)


def integer(lo: int | None = None, hi: int | Callable[[], int] | None = None, default=REQUIRED,
            none_ok: bool = False) -> Key:
    """``hi`` may be a function: a bound another module owns, read when a value is checked (see _registry)."""
    top = hi if callable(hi) else lambda: hi

    def words() -> str:
        bounds = (f" in [{lo}, {top()}]" if top() is not None else f" >= {lo}") if lo is not None else ""
        return f"an integer{bounds}" + (" or null" if none_ok else "")
    return Key(lambda v: (none_ok and v is None) or (isinstance(v, int) and not isinstance(v, bool) and
                                                    (lo is None or v >= lo) and (top() is None or v <= top())),
               words, default)


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
           default=REQUIRED) -> Key:
    def ok(v) -> bool:
        return _is_number(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (
            hi is None or (v < hi if hi_open else v <= hi))
    if lo is not None and hi is not None:
        text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        text = f"a number {'>' if lo_open else '>='} {lo:g}"
    else:
        text = "a number"
    return Key(ok, text, default)


def boolean(default=REQUIRED) -> Key:
    return Key(lambda v: isinstance(v, bool), "true or false", default)


def text(default=REQUIRED, nonempty: bool = False, none_ok: bool = False) -> Key:
    return Key(lambda v: (none_ok and v is None) or (isinstance(v, str) and (bool(v.strip()) or not nonempty)),
               ("a non-empty string" if nonempty else "a string") + (" or null" if none_ok else ""), default)


def choice(*values, default=REQUIRED) -> Key:
    return Key(lambda v: v in values, f"one of {list(values)}", default)


def one_of_lazy(values: Callable[[], Any], what: str, default=REQUIRED) -> Key:
    """A name from a registry owned elsewhere, looked up when checked (and listed from it in a message)."""
    return Key(lambda v: isinstance(v, str) and v in values(), lambda: f"one of the {what} ({', '.join(values())})",
               default)


def list_of(item: Key, *, nonempty: bool = True, unique: bool = True, default=REQUIRED) -> Key:
    def ok(v) -> bool:
        return (isinstance(v, list) and (bool(v) or not nonempty) and all(item.check(x) for x in v)
                and (not unique or len(set(map(repr, v))) == len(v)))
    return Key(ok, lambda: f"a {'non-empty ' if nonempty else ''}list{' without repeats' if unique else ''} of "
                           f"{item.allowed.removeprefix('a ').removeprefix('an ')}", default)


def anything(default=REQUIRED) -> Key:
    return Key(lambda v: True, "any value", default)


# --- registries owned by other modules: imported when a check needs them (several pull in torch) -----------

def _registry(module: str, name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module(module, __package__), name)


_photos = _registry(".datasets.embedded", "PHOTOS")
_label_metrics = _registry(".fr_metrics", "LABEL_METRICS")
_alpha_rules = _registry(".evaluation.ridge", "ALPHA_RULES")
_logistic_kinds = _registry(".evaluation.metrics", "LOGISTIC_KINDS")
_mixed_methods = _registry(".mixed", "METHODS")
_archs = _registry(".models.encoders", "ARCHS")
_objectives = _registry(".training.pretrain", "OBJECTIVES")
_colour_spaces = _registry(".training.views", "COLOUR_SPACES")
_finetune_losses = _registry(".training.finetune", "LOSSES")
_finetune_heads = _registry(".training.finetune", "HEADS")
_mixed_loss_terms = _registry(".mixed", "LOSS_TERMS")


def _distorted_classes() -> int:
    """The distinct (type, level) versions of a patch: the distortion classes less the pristine one."""
    return _registry(".distortions", "NUM_CLASSES")() - 1


def _profile(value) -> bool:
    # Read relative to the working directory, as stages/pretrain.py reads it (DVC runs stages at the root).
    return isinstance(value, str) and (not value or Path(value).is_file())


# Upper bounds: far beyond any real study, low enough that a slipped digit stops here, in one line, instead of
# hanging a stage or allocating gigabytes after DVC has deleted its outputs.
# Seeds: runtime.seed_everything hands the seed to numpy's np.random.seed (below 2**32) and the stages derive
# torch.Generator seeds (int64) from it, e.g. seed * 1_000_003 + crc32 in datasets.embedded and seed + split
# index in the protocol; 2**31 - 1 keeps every derived seed inside both (a seed of 1e20 crashed prepare with
# "Overflow when unpacking long long").
MAX_SEED = 2**31 - 1
MAX_SPLITS = 1000        # CONTRIQUE and ARNIQA report 10, BRISQUE 1000 train-test draws; each is a full fit
MAX_STEPS = 1_000_000    # the papers' pretraining recipes run tens of thousands of steps; mixed, finetune hundreds
MAX_EPOCHS = 10_000      # pretrain.*.epochs (CONTRIQUE: 25)
MAX_SIDE = 4096          # crop and patch sides, px: one 3 x 100000^2 float crop is 120 GB
MAX_BATCH = 65536        # images (or feature rows) per step: CONTRIQUE's paper batch is 1024 over 8 GPUs
MAX_WIDTH = 1024         # small_cnn's last stage has 8 x width channels: 8192 at 1024 (ResNet-50: 2048), 2.4 GB
                         # of weights in its last conv alone; 10x that is 240 GB
MAX_UNITS = 16384        # hidden and output units of a projector or regressor head (the papers': 2048, 128)
MAX_PROCESSES = 256      # DataLoader workers per process, and processes per machine (nproc): each is a process
MAX_IMAGES = 1_000_000   # images drawn into the corpus or a shard, photos sampled (KADIS-700k: 140,000 pristine)
MAX_PATCHES = 10_000     # patches cut from one photo (a 4096 px photo holds ~7,000 of 48 px)
MAX_GRID = 64            # patch grid per side of an encoder's feature map (a ResNet-50 at 256 px has 8 x 8)
MIN_IMAGE_SIDE = 32      # images.MIN_SIDE (not imported: it pulls in torch): the smallest side the models read
DEVICE = choice("auto", "cpu", "cuda", default="auto")
STEPS = integer(1, MAX_STEPS)
SPLITS = integer(1, MAX_SPLITS)
EVERY = integer(1)       # checkpoint_every, log_every: a period, harmless when above the step count
POSITIVE = number(0, lo_open=True)
NON_NEGATIVE = number(0)
# Published NT-Xent temperatures: 0.05-0.5. Far below, float32 softmax keeps only the hardest negative and the loss
# grows as 1/t: a run at 1e-30 finished "successfully" and learned nothing.
TEMPERATURE = number(1e-3, 100)


def short_side(default=REQUIRED) -> Key:
    """A downscaling cap: 0 or null (none), else at least MIN_IMAGE_SIDE (10 shrank every image below what the
    rows read, and extract failed after DVC had deleted its outputs)."""
    return Key(lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and
                                       (v == 0 or MIN_IMAGE_SIDE <= v <= MAX_SIDE)),
               f"0 or null (no downscaling), or an integer in [{MIN_IMAGE_SIDE}, {MAX_SIDE}] (the models need at "
               f"least {MIN_IMAGE_SIDE} px a side)", default)


TOP_LEVEL = {
    "seed": integer(0, MAX_SEED, default=0),
    "datasets": list_of(text(nonempty=True)),
    "models": list_of(text(nonempty=True)),
    "download": list_of(text(nonempty=True), nonempty=False, default=[]),
}

SECTIONS: dict[str, dict[str, Key]] = {
    "prepare": {
        "patch_size": integer(48, MAX_SIDE),           # the distortion engine needs >= 48 px (non-eccentricity)
        "max_patches_per_photo": integer(1, MAX_PATCHES),
        "versions_per_patch": integer(1, _distorted_classes),   # synthetic-single: distinct (type, level)
        "max_k": integer(2, 5),                        # synthetic-mixed composes 2..max_k of the 5 groups
        "label_metrics": list_of(one_of_lazy(_label_metrics, "label metrics")),
        "deepwsd_weights": text(default=""),
        "shared_root": text(default="../shared/datasets"),
    },
    "synthesize": {
        "photos": list_of(one_of_lazy(_photos, "embedded photographs")),
        "crop": integer(48, 256),                      # the distortion engine needs >= 48 px
        "n_images": integer(1, MAX_IMAGES),
        "shard_size": integer(1, MAX_IMAGES),
        "gallery_photo": one_of_lazy(_photos, "embedded photographs", default="astronaut"),
    },
    "niqe": {
        "patch_size": integer(8, MAX_SIDE, default=96),
        "sharpness_threshold": number(0, 1, default=0.75),
        "kadis_sample": integer(1, MAX_IMAGES, default=125),
    },
    "extract": {
        "batch_size": integer(1, MAX_BATCH),
        "max_short_side": short_side(default=None),   # 0 or null: no downscaling
        "bf16": boolean(default=False),
        "device": DEVICE,
    },
    "evaluate": {
        "seed": integer(0, MAX_SEED, default=None, none_ok=True),   # split seed; null: the top-level seed
        "n_splits": integer(1, MAX_SPLITS, default=10),
        "test_frac": number(0, 1, lo_open=True, hi_open=True, default=0.2),
        "val_frac": number(0, 1, hi_open=True, default=0.0),
        "alphas": list_of(POSITIVE, unique=False, default=[0.1]),
        "alpha_rule": one_of_lazy(_alpha_rules, "rules for choosing alpha", default="median"),
        "standardize": boolean(default=False),
        "logistic": one_of_lazy(_logistic_kinds, "PLCC mappings", default="5pl"),
        "official_splits": boolean(default=False),
        "arniqa_splits": text(default=""),   # a folder laid out as ARNIQA's data_base_path: its split files
        "regressor_dataset": text(nonempty=True, default=None, none_ok=True),   # None: the first of `datasets:`
    },
    "report": {"experiment": text(nonempty=True, default="iqabench")},
    # `iqabench check` reads this section and fills its own defaults (iqabench.gate): CHECK below says what
    # its keys may hold, and validation fills nothing in.
    "check": None,
}


def _statistics():
    from .gate_inputs import STATISTICS
    return STATISTICS


def _tolerance(value) -> bool:
    # As iqabench.gate reads a rule: 'auto' in any case, or an allowed drop in [0, 1]: a correlation spans 2, so
    # a larger one let 0.9 -> -0.5 pass with the word "passed".
    return (isinstance(value, str) and value.strip().lower() == "auto") or (_is_number(value) and 0 <= value <= 1)


TOLERANCE = Key(_tolerance, "a number in [0, 1] (the allowed drop in correlation, e.g. 0.02) or auto "
                            "(auto_factor standard errors of rho at the test-set size)")
# Multiples of a standard error or a seed std: past 10 the allowed drop spans any correlation's range.
FACTOR = number(0, 10)
# The `check:` section; check.tolerance is one rule for every dataset, or a mapping whose keys are `default`, a
# dataset or an "A->B" cross-dataset pair (params.check_gate_section checks the keys: for params validation and
# for `iqabench check`, through gate_inputs.check_settings).
CHECK = {
    "baseline": text(nonempty=True),
    "tolerance": Key(lambda v: isinstance(v, dict) or _tolerance(v),
                     f"{TOLERANCE.allowed}, or a mapping {{default: auto, DATASET: 0.02, 'A->B': 0.05}}"),
    "auto_factor": FACTOR,
    # [] is refused: it gated nothing, and passed.
    "gate": list_of(one_of_lazy(_statistics, "correlations the gate reads"), unique=False),
    "seed_factor": FACTOR,
}

# Sections whose known keys are a config dataclass's fields, plus the keys their stage reads itself.
DATACLASS_SECTIONS = {
    "finetune": ("iqabench.training.finetune", "FinetuneConfig", {
        "model": text(nonempty=True, default="contrique")}),
    "mixed": ("iqabench.mixed", "TrainConfig", {
        "model": text(nonempty=True, default="contrique"),
        "methods": list_of(one_of_lazy(_mixed_methods, "mixed-training methods"),
                           default=["monotonic", "pooled", "single"])}),
}

# Sections that map a name to one dataclass section each: `pretrain:` holds one PretrainConfig section per
# encoder (stage pretrain@NAME writes data/encoders/NAME.pt), plus the keys stages/pretrain.py reads itself.
NAMED_SECTIONS = {
    "pretrain": ("iqabench.training.pretrain", "PretrainConfig",
                 {"profile": Key(_profile, "'' or an existing YAML file of overrides (e.g. profiles/paper.yaml)",
                                 default=""),
                  "nproc": integer(1, MAX_PROCESSES, default=1)}),
}

# Ranges of keys the dataclass sections share (where a section has the key at all).
SHARED_RANGES: dict[str, Key] = {
    "steps": STEPS, "epochs": integer(0, MAX_EPOCHS), "n_splits": SPLITS, "checkpoint_every": EVERY,
    "crop": integer(16, MAX_SIDE), "region": integer(16, MAX_SIDE), "width": integer(1, MAX_WIDTH),
    "batch_size": integer(1, MAX_BATCH), "authentic_batch_size": integer(0, MAX_BATCH),   # 0: batch_size
    "lr_base_batch": integer(0, MAX_BATCH),   # 0: lr as given, not scaled by the batch
    "lr": POSITIVE, "lr_head": NON_NEGATIVE, "lr_encoder": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE, "temperature": TEMPERATURE, "warmup_frac": number(0, 1, hi_open=True),
    "proj_hidden": integer(1, MAX_UNITS), "proj_dim": integer(1, MAX_UNITS), "grid": integer(1, MAX_GRID),
    "hidden": integer(1, MAX_UNITS), "transformer_hidden": list_of(integer(1, MAX_UNITS), unique=False),
    "dropout": number(0, 1, hi_open=True), "test_frac": number(0, 1, lo_open=True, hi_open=True),
    "pristine_prob": number(0, 1), "level_std": POSITIVE, "max_distortions": integer(1, 5),
    "workers": integer(0, MAX_PROCESSES), "device": DEVICE, "seed": integer(0, MAX_SEED, none_ok=True),
    "log_every": EVERY, "synthesis": choice("auto", "device", "workers"),
}
# ... except where a section gives the key another meaning, or has names only it knows.
SECTION_RANGES = {
    "mixed": {"batch_size": Key(lambda v: isinstance(v, int) and not isinstance(v, bool) and (v == 0 or 2 <= v <= MAX_BATCH),
                                f"0 (full batch) or an integer in [2, {MAX_BATCH}]"),   # 1 row has no rank or norm
              "loss": list_of(one_of_lazy(_mixed_loss_terms, "loss terms"), unique=False)},
    # Keys the stage's dataclass checks only when it runs, after DVC has deleted its outputs: checked here first.
    "finetune": {"loss": one_of_lazy(_finetune_losses, "fine-tuning losses"),
                 "head": one_of_lazy(_finetune_heads, "fine-tuning heads"),
                 "bn_stats": choice("frozen", "train"),
                 "probe_alpha": number(),   # <= 0: the head starts at zero
                 "max_short_side": short_side(),
                 "logistic": one_of_lazy(_logistic_kinds, "PLCC mappings")},
    "pretrain": {
        "arch": one_of_lazy(_archs, "encoder architectures"),
        "objective": one_of_lazy(_objectives, "pretraining objectives"),
        "optimizer": choice("adamw", "sgd"),   # as iqabench.training.pretrain._optimizer builds them
        "colour_spaces": list_of(one_of_lazy(_colour_spaces, "colour spaces")),
        "photos": list_of(one_of_lazy(_photos, "embedded photographs"), nonempty=False),
        # which sources an objective reads: params._check_pretrain_sources
        "source": choice("corpus", "kadis700k", "folder", "embedded"),
        "source_dir": text(), "authentic": text(),
        "momentum": number(0, 1, hi_open=True),   # SGD's; 1 or more diverges, torch refuses < 0
        "all_gather": boolean(), "compile": boolean(),   # a quoted "false" is true to Python
    },
}


def dataclass_section(name: str) -> dict[str, Key]:
    """Known keys of a dataclass-backed section (or of each entry of a named one): every field (ranged where
    known) plus its stage keys."""
    module, cls, extra = DATACLASS_SECTIONS[name] if name in DATACLASS_SECTIONS else NAMED_SECTIONS[name]
    fields = dataclasses.fields(getattr(importlib.import_module(module), cls))
    overrides = SECTION_RANGES.get(name, {})
    return {**{f.name: overrides.get(f.name) or SHARED_RANGES.get(f.name) or anything(default=None)
               for f in fields}, **extra}


KNOWN_SECTIONS = (*TOP_LEVEL, *SECTIONS, *DATACLASS_SECTIONS, *NAMED_SECTIONS)


# --- checking one section or value against the table (params.validate and `iqabench check` call these) ---------

def check_section(where: str, name: str, body: dict, keys: dict[str, Key], fill: bool) -> dict:
    """``body`` with every key known and in range; with ``fill``, a copy with the missing defaults filled."""
    for key in body:
        if key not in keys:
            raise ParamsError(f"{where}: {name}.{key} is not a known key{did_you_mean(key, keys)}; "
                              f"known keys of {name}: {', '.join(sorted(keys))}")
    out = dict(body)
    for key, spec in keys.items():
        if key in body:
            check_value(where, f"{name}.{key}", body[key], spec)
        elif fill and spec.default is REQUIRED:
            raise ParamsError(f"{where}: {name}.{key} is missing; it must be {spec.allowed}")
        elif fill:
            out[key] = spec.default
    return out


def check_value(where: str, key: str, value: Any, spec: Key) -> None:
    if spec.check(value):
        return
    hint = ""
    if isinstance(value, str) and _looks_numeric(value):
        # PyYAML (YAML 1.1) reads 3e-5 (no dot) and 1.5e3 (no exponent sign) as text: 3.0e-5 and 1.5e+3 are
        # numbers, and for an integer key 10 is what 1e1 means (for a number key, 5e30 is 5.0e+30); else it is quoted.
        written, number = _as_yaml_float(value), float(value)
        whole = number.is_integer() and spec.check(int(number)) and not spec.check(number)
        hint = (f" (YAML reads {value!r} as text: write the integer {int(float(value))})" if written != value and whole
                else f" (YAML reads {value!r} as text: write it with a dot and a signed exponent, e.g. {written})"
                if written != value
                else f" (it is quoted, so YAML reads it as text: write {value} without quotes)")
    raise ParamsError(f"{where}: {key} = {value!r} is not allowed; it must be {spec.allowed}{hint}")


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'x'?)`` for the known name ``name`` most likely means, or ""."""
    from .datasets.registry import closest as nearest  # one fuzzy match for every name the project knows

    match = nearest(name, known)
    return f" (did you mean {match!r}?)" if match is not None else ""


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _as_yaml_float(value: str) -> str:
    mantissa, _, exponent = value.lower().partition("e")
    signed = exponent if exponent[:1] in ("+", "-") else f"+{exponent}"
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{signed}" if exponent else value
