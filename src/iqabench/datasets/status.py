"""Which datasets are on this machine, and how to get the ones that are not."""
from __future__ import annotations

import json
from pathlib import Path

from ..manifest import scale_label
from . import embedded
from .archives import PARTIAL_MARKER
from .download import DONE_MARKER
from .local import DATA_ROOT, DEFAULT_REGISTRY, read_registry
from .registry import SHARED_SUBSETS, SPECS

PREPARED = Path("data/prepared")


def disk_size(path: Path) -> int | None:
    """Bytes in ``path``; None ("-") when part of it cannot be read: a folder another user keeps closed (or
    /proc) raised PermissionError, and the whole status table was lost for one size."""
    path = Path(path)
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    except OSError:
        return None


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _built_row(name: str, kind: str, scale: str, how: str, prepared: Path) -> dict:
    """A dataset the `prepare` stage builds (embedded) or indexes (shared subsets) into ``prepared``/NAME."""
    manifest_path = Path(prepared) / name / "manifest.csv"
    ready = manifest_path.is_file()
    images = sum(1 for _ in open(manifest_path)) - 1 if ready else None
    return {"name": name, "kind": kind, "images": images, "score": scale,
            "size": human_size(disk_size(manifest_path.parent)) if ready else "-",
            "status": "ready (prepared)" if ready else f"not built yet: {how}",
            "state": "ready" if ready else "not built", "action": "" if ready else how,
            "path": str(manifest_path.parent) if ready else ""}


def status_table(data_root: Path = DATA_ROOT, registry_path: Path = DEFAULT_REGISTRY,
                 prepared: Path = PREPARED) -> list[dict]:
    """One row per known or registered dataset: name, kind, images, score, size, status, path, and
    ``state`` (one word for a narrow table: ready, registered, partial, missing, not built) with
    ``action`` (what to run to get it; empty when ready). ``prepared``: where `prepare` writes manifests."""
    registry = read_registry(registry_path)
    rows = [_built_row(name, "embedded", "pseudo-MOS [0, 100], higher is better",
                       "built from scikit-image's photographs by `dvc repro`", prepared) for name in embedded.SETS]
    for name, spec_name in SHARED_SUBSETS.items():
        rows.append(_built_row(name, SPECS[spec_name].kind, SPECS[spec_name].scale,
                               "the real subset in ../shared/datasets: add it to `datasets:` in params.yaml",
                               prepared))
    for name, spec in SPECS.items():
        local = Path(data_root) / name
        entry = registry.get(name)
        images = entry["images"] if entry else spec.n_images
        if (local / DONE_MARKER).is_file():
            status, where, state = "ready", local, "ready"
            held = _partial_count(local)
            if held is not None:
                status, state, images = f"ready (partial: {held} of {spec.n_images} images)", "partial", held
        elif entry and Path(entry["path"]).is_dir():
            partial = bool(entry.get("partial"))
            status, where = "registered" + (" (partial)" if partial else ""), Path(entry["path"])
            state = "partial" if partial else "registered"
        elif entry:
            status, where, state = (f"missing: registered folder {entry['path']} is gone; run `iqabench datasets "
                                    f"add {name} --from PATH` again"), None, "missing"
        elif spec.remotes:
            status, where, state = f"missing: run `iqabench datasets download {name}`", None, "missing"
        else:
            status, where, state = (f"missing: no public URL, {spec.access}; then `iqabench datasets add {name} "
                                    f"--from PATH`"), None, "missing"
        rows.append({"name": name, "kind": spec.kind, "images": images,
                     "score": spec.scale, "content": spec.content,
                     "size": human_size(disk_size(where)) if where else "-",
                     "status": status, "state": state, "action": status.split(": ", 1)[1] if ": " in status else "",
                     "path": str(where) if where else ""})
    for name, entry in sorted(registry.items()):
        if name in SPECS:
            continue
        folder = Path(entry["path"])
        rows.append({"name": name, "kind": "generic", "images": entry.get("images"),
                     "score": scale_label(entry.get("score_type", "MOS"), entry.get("lo"), entry.get("hi"),
                                          entry.get("higher_is_better")),
                     "size": human_size(disk_size(folder)) if folder.is_dir() else "-",
                     "status": "registered" if folder.is_dir() else f"missing: folder {folder} is gone",
                     "state": "registered" if folder.is_dir() else "missing",
                     "action": "" if folder.is_dir() else f"folder {folder} is gone; register it again",
                     "path": str(folder)})
    return rows


def _partial_count(folder: Path) -> int | None:
    """The image count a download accepted with --partial recorded, or None (a full download)."""
    try:
        held = json.loads((folder / PARTIAL_MARKER).read_text(encoding="utf-8")).get("images")
    except (OSError, ValueError, AttributeError):  # absent (a full download), or not what iqabench wrote
        return None
    return held if isinstance(held, int) and not isinstance(held, bool) else None
