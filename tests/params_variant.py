"""The repository's params.yaml with dotted keys set or removed: how the params tests write a variant."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

DEFAULT = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def variant(edits: dict, drop: tuple = ()) -> dict:
    """A copy of DEFAULT with ``{"a.b.c": value}`` set and the dotted keys in ``drop`` removed."""
    cfg = copy.deepcopy(DEFAULT)
    for dotted, value in edits.items():
        *parents, key = dotted.split(".")
        _body(cfg, parents)[key] = value
    for dotted in drop:
        *parents, key = dotted.split(".")
        del _body(cfg, parents)[key]
    return cfg


def _body(cfg: dict, parents: list[str]) -> dict:
    for part in parents:
        cfg = cfg[part]
    return cfg
