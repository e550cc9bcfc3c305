"""Random compositions (ARNIQA's degradation model) and an on-the-fly transform.

``sample_composition`` follows ARNIQA (Agnolucci et al., WACV 2024): draw k in
[min_k, max_k], pick k *distinct* groups in random order, one type per group
and one level per type. ARNIQA draws levels from a half-Gaussian favouring
mild levels; here the level distribution is a parameter, uniform by default.

``DistortionTransform`` labels each image with CONTRIQUE's class index
(``type_index * NUM_LEVELS + level``, 0 = pristine; ``NUM_CLASSES`` in all).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import memory
from .engine import check_images, default_generator, distort
from .params import DISTORTION_GROUPS, DISTORTION_TYPES, GROUP_OF, NUM_LEVELS, class_index


def _level_distribution(level_probs: Sequence[float] | Tensor | None) -> Tensor:
    if level_probs is None:
        return torch.full((NUM_LEVELS,), 1.0 / NUM_LEVELS, dtype=torch.float64)
    probs = torch.as_tensor(level_probs, dtype=torch.float64).flatten()
    if probs.numel() != NUM_LEVELS or bool((probs < 0).any()) or not float(probs.sum()) > 0:
        raise ValueError(f"level_probs must be {NUM_LEVELS} non-negative weights for levels 1..{NUM_LEVELS} "
                         f"with a positive sum, got {probs.tolist()}")
    return probs / probs.sum()


def _draw_levels(generator: torch.Generator, probs: Tensor, count: int) -> list[int]:
    draws = torch.multinomial(probs.to(generator.device), count, replacement=True, generator=generator)
    return (draws + 1).tolist()


def _randint(generator: torch.Generator, high: int) -> int:
    return int(torch.randint(high, (1,), generator=generator, device=generator.device))


def sample_composition(generator: torch.Generator, max_k: int = 3, min_k: int = 1,
                       level_probs: Sequence[float] | Tensor | None = None) -> list[tuple[str, int]]:
    """1..k ``(type, level)`` steps from distinct groups, in random order."""
    if not isinstance(generator, torch.Generator):
        raise ValueError("sample_composition needs an explicit torch.Generator for reproducibility, "
                         f"got {type(generator).__name__}")
    groups = list(DISTORTION_GROUPS)
    if not 1 <= min_k <= max_k <= len(groups):
        raise ValueError(f"need 1 <= min_k <= max_k <= {len(groups)} (one type per group), "
                         f"got min_k={min_k}, max_k={max_k}")
    probs = _level_distribution(level_probs)
    k = min_k + _randint(generator, max_k - min_k + 1)
    order = torch.randperm(len(groups), generator=generator, device=generator.device)[:k].tolist()
    types = []
    for group_index in order:
        members = DISTORTION_GROUPS[groups[group_index]]
        types.append(members[_randint(generator, len(members))])
    return list(zip(types, _draw_levels(generator, probs, k)))


class DistortionTransform:
    """Distort a batch (or one 3 x H x W image) on the fly and return class labels.

    ``mode="single"``: each image gets one type (uniform over ``types``) and a
    level from ``level_probs``, or stays pristine with ``pristine_prob``; labels
    are shape (N,). ``mode="composition"``: each image gets its own
    :func:`sample_composition`; labels are (N, max_k) class indices in the order
    applied, padded with 0. Images sharing a type are distorted in one call.

    In a multi-worker DataLoader, give each worker its own generator (e.g.
    ``transform.generator.manual_seed(base + worker_id)`` in ``worker_init_fn``),
    otherwise forked workers repeat the same draws.
    """

    def __init__(self, mode: str = "single", max_k: int = 3, min_k: int = 1,
                 level_probs: Sequence[float] | Tensor | None = None, pristine_prob: float = 0.0,
                 types: Sequence[str] = DISTORTION_TYPES, generator: torch.Generator | None = None):
        if mode not in ("single", "composition"):
            raise ValueError(f"mode must be 'single' or 'composition', got {mode!r}")
        unknown = [name for name in types if name not in DISTORTION_TYPES]
        if unknown or not types:
            raise ValueError(f"types must be a non-empty subset of {', '.join(DISTORTION_TYPES)}; "
                             f"unknown: {unknown}")
        if not 0.0 <= pristine_prob <= 1.0:
            raise ValueError(f"pristine_prob must be in [0, 1], got {pristine_prob}")
        if mode == "composition" and not 1 <= min_k <= max_k <= len(DISTORTION_GROUPS):
            raise ValueError(f"need 1 <= min_k <= max_k <= {len(DISTORTION_GROUPS)}, got {min_k}, {max_k}")
        self.mode, self.max_k, self.min_k = mode, max_k, min_k
        self.level_probs = _level_distribution(level_probs)
        self.pristine_prob = pristine_prob
        self.types = tuple(types)
        self.generator = generator

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        single_image = isinstance(images, Tensor) and images.ndim == 3
        batch = images.unsqueeze(0) if single_image else images
        check_images(batch)
        if generator is None:
            if self.generator is None:
                self.generator = default_generator(batch.device)
            generator = self.generator
        plans = [self.plan(generator) for _ in range(batch.shape[0])]
        out = apply_plans(batch, plans, generator)
        width = 1 if self.mode == "single" else self.max_k
        labels = torch.zeros((batch.shape[0], width), dtype=torch.int64)
        for row, plan in enumerate(plans):
            for column, (dist, level) in enumerate(plan):
                labels[row, column] = class_index(dist, level)
        labels = labels[:, 0] if self.mode == "single" else labels
        if single_image:
            return out[0], labels[0]
        return out, labels

    def plan(self, generator: torch.Generator) -> list[tuple[str, int]]:
        """One image's ``(type, level)`` steps ([] = pristine), drawn from ``generator`` exactly as
        :meth:`__call__` draws them, so a data loader can draw labels first and distort later
        (with :func:`apply_plans`) and get the same images."""
        if self.pristine_prob > 0:
            draw = float(torch.rand((1,), generator=generator, device=generator.device))
            if draw < self.pristine_prob:
                return []
        if self.mode == "composition":
            return sample_composition(generator, self.max_k, self.min_k, self.level_probs)
        dist = self.types[_randint(generator, len(self.types))]
        return [(dist, _draw_levels(generator, self.level_probs, 1)[0])]


def apply_plans(batch: Tensor, plans: Sequence[Sequence[tuple[str, int]]],
                generator: torch.Generator) -> Tensor:
    """Distort row ``i`` of ``batch`` by ``plans[i]`` (its ``(type, level)`` steps in order; [] = pristine).

    Step ``k`` of every row is applied before step ``k + 1`` of any; rows sharing a
    type at a step go through :func:`distort` in one call with per-row levels, types
    in ``DISTORTION_TYPES`` order, so the random draws depend only on the plans and
    the generator. ``batch`` is not modified.
    """
    if len(plans) != batch.shape[0]:
        raise ValueError(f"need one plan per image: {batch.shape[0]} images, {len(plans)} plans")
    out = memory.clone(batch)
    for position in range(max((len(plan) for plan in plans), default=0)):
        by_type: dict[str, list[tuple[int, int]]] = {}
        for row, plan in enumerate(plans):
            if position < len(plan):
                by_type.setdefault(plan[position][0], []).append((row, plan[position][1]))
        for dist in sorted(by_type, key=DISTORTION_TYPES.index):
            levels = torch.tensor([level for _, level in by_type[dist]])
            if len(by_type[dist]) == out.shape[0]:  # every row: no gather and scatter
                out = distort(out, dist, levels, generator)
                continue
            rows = torch.tensor([row for row, _ in by_type[dist]], device=batch.device)
            out[rows] = distort(out[rows], dist, levels, generator)
    return out


def composition_groups(steps: Sequence[tuple[str, int]]) -> list[str]:
    """Group of each step, e.g. to check that a composition never repeats one."""
    return [GROUP_OF[dist] for dist, _ in steps]
