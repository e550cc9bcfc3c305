"""The arguments dvc.yaml's `cmd:` gives a stage script, for tests that run the script by hand as DVC runs it
(in a workspace laid out as the repository: the paths are relative to it)."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def cmd(stage: str) -> str:
    """The stage's command as dvc.yaml writes it (a foreach stage's, with ${item} / ${key} unexpanded)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]
    return spec.get("do", spec)["cmd"]


def args(stage: str, item: str | None = None) -> list[str]:
    """The words after `stages/STAGE.py` in the stage's command; ``item`` replaces a foreach's ${item} / ${key}."""
    words = shlex.split(cmd(stage))
    words = words[words.index(f"stages/{stage}.py") + 1:]
    if item is not None:
        words = [w.replace("${item}", item).replace("${key}", item) for w in words]
    assert not any("${" in w for w in words), f"{stage}: give the foreach item ({words})"
    return words
