"""The dataset names params.yaml may list (``datasets:``, ``download:``), and whether each can be read.

Part of :func:`iqabench.params.validate`: every name is embedded, a shared subset, registered or a registry
dataset; before ``prepare``, each is also present or about to be downloaded.
"""
from __future__ import annotations

import functools
from pathlib import Path

from . import params_schema as schema
from .params_schema import ParamsError


def check_patch_fits(where: str, size: int, datasets: list[str]) -> None:
    """The embedded sets tile their photographs in prepare.patch_size px patches: each photograph needs one."""
    from .datasets.embedded import SETS

    for name in datasets:
        if name not in SETS:
            continue
        side, photo = min((_shorter_side(photo), photo) for photo in SETS[name].photos)
        if size > side:
            raise ParamsError(f"{where}: prepare.patch_size = {size} is larger than photograph {photo} of {name} "
                              f"({side} px on its shorter side); set prepare.patch_size to at most {side}")


@functools.cache  # decoded once per process (the tests validate many times)
def _shorter_side(photo: str) -> int:
    from .datasets.embedded import PHOTOS
    return min(PHOTOS[photo]().shape[:2])


def known_names() -> set[str]:
    """Every dataset name iqabench knows: embedded, shared subsets, the registry's and the registered ones."""
    from .datasets.embedded import SETS
    from .datasets.local import read_registry
    from .datasets.registry import SHARED_SUBSETS, SPECS

    try:
        registry = read_registry()
    except ValueError:  # a broken data/registry.json is named by the datasets: check; here it adds no names
        registry = {}
    return {*SETS, *SHARED_SUBSETS, *SPECS, *registry}


def check_names(where: str, params: dict, ready: bool) -> None:
    """Each dataset is embedded, a shared subset, registered, or a registry dataset; with ``ready``, also
    present (downloaded, registered, or listed in ``download:`` so the download stage fetches it first)."""
    from .datasets.embedded import SETS
    from .datasets.local import DATA_ROOT, read_registry
    from .datasets.registry import SHARED_SUBSETS, SPECS

    try:
        registry = read_registry()
    except ValueError as err:  # DatasetError: a hand-edited data/registry.json, named with what to do
        raise ParamsError(f"{where}: datasets: cannot be checked: {err}") from None
    to_download = set(params.get("download") or [])
    for name in params["datasets"]:
        if name in SETS or name in registry:
            continue
        if name in SHARED_SUBSETS:
            root = Path((params.get("prepare") or {}).get("shared_root", "../shared/datasets")) / name
            if ready and not root.is_dir():
                raise ParamsError(f"{where}: datasets: {name!r} needs {root} (the shared subsets), which does not "
                                  "exist here; remove it from datasets: or set prepare.shared_root")
            continue
        spec = SPECS.get(name)
        if spec is None:
            known = [*SETS, *SHARED_SUBSETS, *SPECS, *registry]
            raise ParamsError(f"{where}: datasets: {name!r} is not registered{schema.did_you_mean(name, known)}; run "
                              f"`iqabench datasets add {name} --from PATH` (or `iqabench datasets add-generic`); "
                              "`iqabench datasets` lists what is available")
        if spec.parser is None:  # KADIS-700k: pristine photos for pretraining and NIQE, nothing to correlate with
            raise ParamsError(f"{where}: datasets: {name!r} has no quality scores ({spec.kind}); remove it from "
                              "datasets: (pretraining reads it with pretrain.NAME.source: kadis700k, and fit_niqe "
                              "uses it when data/raw/kadis700k exists)")
        if not ready or name in to_download or (DATA_ROOT / name).is_dir():
            continue
        if spec.remotes:
            raise ParamsError(f"{where}: datasets: {name!r} is not downloaded yet; run `iqabench datasets "
                              f"download {name}` (or add it to download: in params.yaml)")
        raise ParamsError(f"{where}: datasets: {name!r} has no public URL ({spec.access}); get a copy, then "
                          f"`iqabench datasets add {name} --from PATH`")


def check_downloads(where: str, names: list[str]) -> None:
    """Each entry of ``download:`` is a registry dataset with a public URL (stage download@NAME fetches it)."""
    from .datasets.registry import SPECS

    for name in names:
        spec = SPECS.get(name)
        if spec is None:
            raise ParamsError(f"{where}: download: {name!r} is not a dataset iqabench can download"
                              f"{schema.did_you_mean(name, SPECS)}; choose from {sorted(n for n in SPECS if SPECS[n].remotes)}, "
                              "or remove it (embedded and registered datasets need no download)")
        if not spec.remotes:
            raise ParamsError(f"{where}: download: {name!r} has no public URL ({spec.access}); remove it from "
                              f"download:, get the files there and run `iqabench datasets add {name} --from PATH`")
