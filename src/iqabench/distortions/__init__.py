"""KADID-10k's distortion types at five levels each, as a batched PyTorch engine.

The types are declared once, in :data:`.registry.DISTORTIONS`; every table here is derived from it.

Public API::

    distort(images, dist, level, generator=None) -> Tensor
    apply_sequence(images, steps, generator=None) -> Tensor
    sample_composition(generator, max_k=3, min_k=1, level_probs=None) -> list[(type, level)]
    DistortionTransform(mode="single" | "composition", ...)(images) -> (images, labels)
    DistortionTransform(...).plan(generator) -> list[(type, level)]   # one image's steps, drawn
    apply_plans(images, plans, generator) -> Tensor                   # row i distorted by plans[i]
    class_index(dist, level) / class_name(index)
    DISTORTIONS: tuple[Distortion(name, group, levels, function, random), ...]   # the registry
    save_gallery(image, path)

Each module's docstring lists where it departs from the MATLAB reference.
"""
from .compose import DistortionTransform, apply_plans, composition_groups, sample_composition
from .engine import RANDOM_TYPES, apply_sequence, distort
from .gallery import save_gallery
from .params import (DISTORTION_GROUPS, DISTORTION_TYPES, GROUP_OF, LEVEL_PARAMETERS, NUM_CLASSES,
                     NUM_LEVELS, class_index, class_name)
from .registry import DISTORTIONS, Distortion

__all__ = [
    "DISTORTIONS", "DISTORTION_GROUPS", "DISTORTION_TYPES", "GROUP_OF", "LEVEL_PARAMETERS", "NUM_CLASSES",
    "NUM_LEVELS", "RANDOM_TYPES", "Distortion", "DistortionTransform", "apply_plans", "apply_sequence",
    "class_index", "class_name", "composition_groups", "distort", "sample_composition", "save_gallery",
]
