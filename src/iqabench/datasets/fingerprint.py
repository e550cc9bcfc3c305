"""What a pipeline input outside DVC's view looks like, in a small JSON, so that DVC sees it change.

``prepare@NAME`` reads data a ``foreach`` stage cannot name per item (``data/raw/NAME``, a
folder registered outside the repository, a ``../shared`` subset); ``fit_niqe`` reads
KADIS-700k when it is there; pretraining may read folders of images. The ``fingerprint``
stage (``always_changed``: it only lists files, in about a second) writes one
``data/fingerprints/KEY.json`` per input, and each of those stages depends on its file.
An unchanged input gives the same bytes, so nothing downstream re-runs; a re-downloaded
dataset, a re-registered folder or an edited score file changes the file and re-runs
exactly the stages that read it.

A folder is summarised by every image's relative path and size and the SHA-256 of every
other file (score files, ``.mat``, ``.xlsx``, download markers); names are hashed as the file system's
bytes (any name works), and what is not a regular file (a FIFO, a socket, a device) is skipped. Not
mtimes: a copy, ``dvc checkout`` or a ``git clone`` changes them without changing the data.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..io import sha256_file
from .download import ARCHIVE_DIR
from .local import DATA_ROOT, DEFAULT_REGISTRY, KADIS_ROOT, read_registry
from .registry import SHARED_SUBSETS

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".gif")
MAX_HASHED = 256 << 20  # non-image files larger than this (stray archives) count by size, not content


def locate(name: str, shared_root: str | Path, data_root: str | Path = DATA_ROOT,
           registry_path: str | Path = DEFAULT_REGISTRY) -> tuple[str, Path | None, dict | None]:
    """Where ``prepare`` reads dataset ``name`` from: (source, folder, registry entry).

    source is ``shared``, ``download``, ``registered`` or ``missing``; the one place that decides it,
    so the fingerprint covers exactly what ``prepare`` reads. The embedded sets are ``prepare``'s to
    recognise first (made by code, which is its own dependency; importing that code here would cost
    the always-run fingerprint stage seconds).
    """
    if name in SHARED_SUBSETS:
        return "shared", Path(shared_root) / name, None
    downloaded = Path(data_root) / name
    if downloaded.is_dir():
        return "download", downloaded, None
    entry = read_registry(Path(registry_path)).get(name)
    if entry is not None:
        return "registered", Path(entry["path"]), entry
    return "missing", None, None


def folder(root: str | Path) -> dict:
    """Counts and digests of a folder's content (see the module docstring); ``{"missing": path}`` if absent."""
    root = Path(root)
    if not root.is_dir():
        return {"path": str(root), "missing": True}
    images, others = hashlib.sha256(), hashlib.sha256()
    n_images = n_others = total = 0
    for parent, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ARCHIVE_DIR)  # kept archives: already pinned by checksum
        for name in sorted(files):
            path = Path(parent) / name
            try:
                info = path.stat()
            except OSError:  # a dangling link: prepare will name it
                continue
            if not stat.S_ISREG(info.st_mode):  # a FIFO (reading it waited forever), socket or device: no data
                continue
            size = info.st_size
            # As bytes: a name that is not UTF-8 (a Windows zip's 'caf\xe9') is a surrogate in a str, which
            # str.encode() refused; a UTF-8 name gives the same bytes either way, so fingerprints are unchanged.
            rel = os.fsencode(path.relative_to(root).as_posix())
            total += size
            if path.suffix.lower() in IMAGE_SUFFIXES:
                n_images += 1
                images.update(rel + f"\t{size}\n".encode())
            else:
                n_others += 1
                content = sha256_file(path) if size <= MAX_HASHED else f"size {size}"
                others.update(rel + f"\t{content}\n".encode())
    return {"path": str(root), "images": n_images, "other_files": n_others, "bytes": total,
            "images_sha256": images.hexdigest(), "other_files_sha256": others.hexdigest()}


def dataset(name: str, shared_root: str | Path, data_root: str | Path = DATA_ROOT,
            registry_path: str | Path = DEFAULT_REGISTRY) -> dict:
    """The fingerprint of what ``prepare@name`` reads."""
    source, root, entry = locate(name, shared_root, data_root, registry_path)
    out = {"dataset": name, "source": source}
    if source == "missing":
        return out  # an embedded set (made by code, a dependency of prepare) or data not there yet
    out["folder"] = folder(root)
    if entry is not None:
        # The registration's settings (columns, scale) shape the manifest; its timestamp does not.
        out["entry"] = {k: v for k, v in sorted(entry.items()) if k != "registered"}
        csv = Path(entry.get("csv", ""))
        if entry.get("kind") == "generic" and csv.is_file():  # the score file may live outside the folder
            out["csv_sha256"] = sha256_file(csv)
    return out


def pristine(name: str, source: str, source_dir: str = "", authentic: str = "") -> dict:
    """The fingerprint of a pretraining or NIQE image source: ``kadis700k``/``folder`` and the authentic set."""
    out = {"input": name, "source": source}
    if source == "kadis700k":
        out["folder"] = folder(source_dir or KADIS_ROOT)
    elif source == "folder" and source_dir:
        out["folder"] = folder(source_dir)
    if authentic:
        path = Path(authentic)
        out["authentic"] = ({"path": str(path), "sha256": sha256_file(path)} if path.is_file() else folder(path))
    return out

