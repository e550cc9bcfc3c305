"""The path options of the stage scripts. dvc.yaml's `cmd:` names every file and folder a stage reads or writes,
with the same strings as its `deps:` and `outs:`, so a script in stages/ holds no path of its own: each is a
required option, and a run by hand without one stops with argparse's usage line before anything is written.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def path(text: str) -> Path:
    """An option's value as a path. An empty one (an unset shell variable) would be Path("."), the working folder,
    which a stage would then write into (or, for prepare, empty first). One under a file (``--out afile/x.npz``)
    can be neither read nor written: refused here, before the stage's work (extract computed every feature, then
    died on a FileExistsError traceback). Whether a folder is writable is the run's to find."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty (an unset shell variable?): give the path that dvc.yaml "
                                         "gives")
    value = Path(text)
    for ancestor in value.parents:  # the nearest one that exists (os.path: an unreadable one is False, no error)
        if os.path.exists(ancestor):
            if not os.path.isdir(ancestor):
                kind = "a file" if os.path.isfile(ancestor) else "not a folder"
                raise argparse.ArgumentTypeError(f"{ancestor} is {kind}, so {value} cannot be reached under it")
            break
    return value


def option(parser: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    """A required path option ``flag`` (e.g. ``--out``) of a stage's ``parser``."""
    parser.add_argument(flag, type=path, required=True, metavar=metavar, help=help)


def params_option(parser: argparse.ArgumentParser, use: str = "") -> None:
    """The optional ``--params YAML`` of the stages that tests run with their own params file; ``use`` says what
    the stage does with it beyond reading it."""
    parser.add_argument("--params", type=path, metavar="YAML",
                        help=f"the params file (default: the repository's params.yaml{'; ' + use if use else ''})")
