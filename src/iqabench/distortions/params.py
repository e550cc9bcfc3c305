"""Tables derived from :data:`.registry.DISTORTIONS`, and CONTRIQUE's class indices.

The types, their order, groups and level parameters (and where they come from)
are declared once, in :mod:`.registry`; these are its views by name, which the
rest of the package and its users import.
"""
from __future__ import annotations

from .registry import DISTORTIONS, NUM_LEVELS, check

check(DISTORTIONS)

DISTORTION_TYPES: tuple[str, ...] = tuple(d.name for d in DISTORTIONS)

# Groups in the order of their first type, each with its types in table order.
DISTORTION_GROUPS: dict[str, tuple[str, ...]] = {
    group: tuple(d.name for d in DISTORTIONS if d.group == group)
    for group in dict.fromkeys(d.group for d in DISTORTIONS)
}

GROUP_OF: dict[str, str] = {name: group for group, names in DISTORTION_GROUPS.items() for name in names}

# Parameter of each level 1..NUM_LEVELS, in the unit the distortion function takes.
LEVEL_PARAMETERS: dict[str, tuple[float, ...]] = {d.name: d.levels for d in DISTORTIONS}

NUM_CLASSES = len(DISTORTION_TYPES) * NUM_LEVELS + 1  # + pristine


def class_index(dist: str, level: int) -> int:
    """CONTRIQUE-style class: ``type_index * NUM_LEVELS + level``; 0 is pristine."""
    if level == 0:
        return 0
    if dist not in DISTORTION_TYPES:
        raise ValueError(f"unknown distortion {dist!r}; valid names: {', '.join(DISTORTION_TYPES)}")
    if not 1 <= int(level) <= NUM_LEVELS:
        raise ValueError(f"level {level!r} for {dist!r} is out of range; use 0 (pristine) or 1..{NUM_LEVELS}")
    return DISTORTION_TYPES.index(dist) * NUM_LEVELS + int(level)


def class_name(index: int) -> tuple[str, int]:
    """Inverse of :func:`class_index`: ``(type, level)``, ``("pristine", 0)`` for 0."""
    if not 0 <= int(index) < NUM_CLASSES:
        raise ValueError(f"class index {index!r} is out of range 0..{NUM_CLASSES - 1}")
    if index == 0:
        return ("pristine", 0)
    type_index, level_offset = divmod(int(index) - 1, NUM_LEVELS)
    return (DISTORTION_TYPES[type_index], level_offset + 1)
