"""Read ``params.yaml``: one section per DVC stage, plus a few top-level keys."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The folder that holds ``params.yaml`` (searched upwards from ``start`` or the cwd)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no params.yaml in {here} or its parents; run iqabench from the repository")


def load(path: str | os.PathLike | None = None) -> dict[str, Any]:
    path = Path(path) if path else repo_root() / "params.yaml"
    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(name: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """A stage's section with the top-level ``seed`` and ``datasets`` merged in.

    A section's own ``seed`` (``pretrain.seed``, ``evaluate.seed``) overrides the top-level one; ``null``
    means "the top-level seed", so a seed study can vary training and splits while the datasets stay fixed.
    """
    params = load(path)
    if name not in params:
        raise KeyError(f"params.yaml has no '{name}' section; known sections: {sorted(params)}")
    merged = {k: params[k] for k in ("seed", "datasets", "models") if k in params}
    merged.update({k: v for k, v in (params[name] or {}).items() if not (k == "seed" and v is None)})
    return merged
