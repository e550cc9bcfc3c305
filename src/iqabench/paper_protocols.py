"""The authors' evaluations the rows declare (``Row.protocol``), as `evaluate` settings (docs/reproduce.md).

:func:`paper_protocol` gives the settings one `evaluate` run needs to evaluate rows as their papers did;
:func:`unlike_papers` names, for results.md, the rows whose numbers here were not made that way. Declaring a
row's protocol stays a field of its entry in :mod:`iqabench.rows`; nothing here changes when a row is added.
"""
from __future__ import annotations

from .rows import get


def paper_protocol(models: list[str]) -> dict:
    """The `evaluate` settings of the authors' evaluation shared by the rows in ``models`` (docs/reproduce.md).

    One `evaluate` run uses one protocol for every row, so rows whose papers
    disagree (CONTRIQUE's fixed alpha, ARNIQA's validated grid) are refused.
    """
    protocols = {name: get(name).protocol for name in models if get(name).protocol}
    groups: dict[str, list[str]] = {}
    for name, p in protocols.items():
        groups.setdefault(repr(sorted(p.items())), []).append(name)
    if len(groups) > 1:
        raise ValueError(f"the papers' protocols differ between {list(groups.values())}; evaluate each group in "
                         "its own run (dvc exp run -S models=[...])")
    return next(iter(protocols.values()), {})


# The authors' published encoders read whole images, except ARNIQA's SPAQ loader: short side 512 first
# (data/dataset_spaq.py).
PAPER_SHORT_SIDE = {("arniqa-published", "spaq"): 512}


def unlike_papers(models: list[str], evaluate: dict, max_short_side: int | None, datasets=()) -> list[str]:
    """One line per row in ``models`` whose numbers here are not under its paper's evaluation: the `evaluate`
    settings that differ from its ``protocol`` and, for the authors' published encoders, an image cap other than
    their papers' on the ``datasets`` (:data:`PAPER_SHORT_SIDE`). Empty when every row runs as its paper does
    (docs/reproduce.md)."""
    def shown(value) -> str:
        if isinstance(value, list) and len(value) > 3:
            return f"{len(value)} values {min(value):g}..{max(value):g}"
        return str(value)

    lines = []
    for name in models:
        row = get(name)
        changed = [f"{key} {shown(evaluate.get(key))} (paper: {shown(value)})"
                   for key, value in row.protocol.items() if evaluate.get(key) != value]
        if row.protocol and row.stage is None:
            paper = {ds: PAPER_SHORT_SIDE.get((name, ds), 0) for ds in datasets}
            other = [ds for ds in datasets if paper[ds] != (max_short_side or 0)]
            if other:
                changed.append(f"extract.max_short_side {max_short_side or 0} (paper: " + ", ".join(
                    f"{ds} {paper[ds] or 'whole images'}" for ds in other) + ")")
        if changed:
            lines.append(f"{name}: " + ", ".join(changed))
    return lines
