"""KADID-10k's 25 distortion types x 5 levels as a batched PyTorch engine.

Public API::

    distort(images, dist, level, generator=None) -> Tensor
    apply_sequence(images, steps, generator=None) -> Tensor
    sample_composition(generator, max_k=3, min_k=1, level_probs=None) -> list[(type, level)]
    DistortionTransform(mode="single" | "composition", ...)(images) -> (images, labels)
    DistortionTransform(...).plan(generator) -> list[(type, level)]   # one image's steps, drawn
    apply_plans(images, plans, generator) -> Tensor                   # row i distorted by plans[i]
    class_index(dist, level) / class_name(index)
    save_gallery(image, path)

Each module's docstring lists where it departs from the MATLAB reference.
"""
from .compose import DistortionTransform, apply_plans, composition_groups, sample_composition
from .engine import RANDOM_TYPES, apply_sequence, distort
from .gallery import save_gallery
from .params import (DISTORTION_GROUPS, DISTORTION_TYPES, GROUP_OF, LEVEL_PARAMETERS, NUM_CLASSES,
                     NUM_LEVELS, class_index, class_name)

__all__ = [
    "DISTORTION_GROUPS", "DISTORTION_TYPES", "GROUP_OF", "LEVEL_PARAMETERS", "NUM_CLASSES", "NUM_LEVELS",
    "RANDOM_TYPES", "DistortionTransform", "apply_plans", "apply_sequence", "class_index", "class_name",
    "composition_groups", "distort", "sample_composition", "save_gallery",
]
