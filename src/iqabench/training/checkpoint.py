"""Atomic, self-describing training checkpoints that never run code when read.

A checkpoint holds everything a resumed run needs to continue bit-for-bit on
the CPU: model, optimiser, scheduler, AMP scaler, step (the sampler position is
derived from it), the training generator and the global RNG states.

Each ``step-NNNNNNNN.pt`` has a sidecar ``step-NNNNNNNN.json``, in place before it:
the hash of the run's config, the step, and the size and SHA-256 of the ``.pt``
bytes. :func:`latest` decides from sidecars alone, so a checkpoint of other
params is never resumed and a ``.pt`` without a matching sidecar (planted in the
folder, or cut short by a crash) is never unpickled; a chosen file is read with
``weights_only=True`` (tensors and plain types only), so even a forged sidecar
cannot make it run code. numpy arrays (numpy's RNG state) are stored as tagged
tensors and restored as arrays.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import io

KEEP = 2
NDARRAY = "__ndarray__"  # {"__ndarray__": tensor}: an array that weights_only loading could not accept as-is


class CheckpointWarning(UserWarning):
    """A checkpoint that was skipped: unreadable, truncated, unsafe or without its sidecar."""


def path_for(ckpt_dir: str | Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step-{step:08d}.pt"


def sidecar_for(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def to_plain(obj):
    """numpy arrays -> tagged tensors, numpy scalars -> Python numbers, recursively."""
    if isinstance(obj, np.ndarray):
        return {NDARRAY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    return _map(to_plain, obj)


def from_plain(obj):
    """The inverse of :func:`to_plain`."""
    if isinstance(obj, dict):
        if obj.keys() == {NDARRAY}:
            return obj[NDARRAY].numpy()
    return _map(from_plain, obj)


def _map(fn, obj):
    """``fn`` over a container's items; the container itself is returned when nothing changed, so a
    state dict keeps its type and ``_metadata`` (module versions that load_state_dict reads)."""
    if isinstance(obj, dict):
        items = {k: fn(v) for k, v in obj.items()}
        return obj if all(items[k] is v for k, v in obj.items()) else items
    if isinstance(obj, (list, tuple)):
        items = [fn(v) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    return obj


class CheckpointSaveError(OSError):
    """A checkpoint that could not be written (a full disk, a read-only folder): the earlier ones are kept."""


def save(ckpt_dir: str | Path, step: int, state: dict) -> Path:
    """Write ``state`` (which carries ``config_hash``) as step ``step``, then its sidecar; prune old ones."""
    path = path_for(ckpt_dir, step)
    # The sidecar is written before the .pt is renamed into place, so a complete step-*.pt always has
    # its sidecar (a crash in between leaves a sidecar without a .pt, which nothing reads).
    try:
        with io.atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:  # io.write_torch's bytes, without a second temp file inside this one
                torch.save(to_plain(state), fh)
            io.write_json(sidecar_for(path), {"step": step, "config_hash": state.get("config_hash"),
                                              "size": tmp.stat().st_size, "sha256": io.sha256_file(tmp)})
    except (OSError, RuntimeError) as err:  # torch reports a short write as RuntimeError ("unexpected pos")
        if isinstance(err, RuntimeError) and not isinstance(err.__context__, OSError):
            raise
        cause = err if isinstance(err, OSError) else err.__context__
        kept = [p.name for p in sorted(Path(ckpt_dir).glob("step-*.pt")) if p != path]
        raise CheckpointSaveError(
            f"cannot write checkpoint {path} ({cause.strerror or cause}): free space there or make the folder "
            f"writable (or choose another with --checkpoints), then run again; "
            f"{'it resumes from ' + kept[-1] if kept else 'no earlier checkpoint exists'}") from None
    _prune(Path(ckpt_dir), state.get("config_hash"), path)
    return path


def _prune(ckpt_dir: Path, config_hash: str | None, current: Path) -> None:
    """Keep ``current`` and the newest intact checkpoint of this config before it (it backs up a newest one
    damaged later); checkpoints of other configs cannot be resumed by this run and go once it has passed their
    step (until then, reverting a params change still resumes them). A checkpoint of this
    config after ``current`` was skipped by :func:`latest` as damaged (else this run would have resumed past
    it): counted among the newest, two such files made every new good checkpoint be deleted as soon as it was
    written. Files without a sidecar are left alone: they are not ours to delete (an interrupted save's .pt is
    overwritten on resume). Temporary files of a save that was killed go: they can be checkpoint-sized."""
    for stale in ckpt_dir.glob(".step-*.tmp"):
        stale.unlink(missing_ok=True)
    ours = []
    for path in sorted(ckpt_dir.glob("step-*.pt")):
        meta = _sidecar(path)
        if meta is None:
            continue
        if meta.get("config_hash") == config_hash:
            ours.append((path, meta))
        elif path.name <= current.name:  # another config's run: kept while it is further along than this one
            _remove(path)
    keep = {current}
    for path, meta in reversed([(p, m) for p, m in ours if p.name < current.name]):
        if len(keep) >= KEEP:
            break
        if _damage(path, meta) is None:
            keep.add(path)
    for path, _ in ours:
        if path not in keep:
            _remove(path)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    sidecar_for(path).unlink(missing_ok=True)


def _sidecar(path: Path) -> dict | None:
    try:
        meta = json.loads(sidecar_for(path).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _damage(path: Path, meta: dict) -> str | None:
    """Why ``path``'s bytes are not those its sidecar recorded, or None when they are."""
    try:
        size = path.stat().st_size
        if size == meta.get("size") and io.sha256_file(path) == meta.get("sha256"):
            return None
    except OSError as err:  # a dangling link named step-*.pt, a file removed meanwhile
        return f"unreadable ({err.strerror or err})"
    return (f"its bytes differ from those recorded in {sidecar_for(path).name} ({size} bytes, {meta.get('size')} "
            "recorded): truncated or modified")


def _skip(path: Path, why: str) -> None:
    warnings.warn(f"checkpoint {path} skipped: {why}; resuming from an earlier checkpoint (or from the start)",
                  CheckpointWarning, stacklevel=3)


def of_other_settings(ckpt_dir: str | Path, config_hash: str) -> list[Path]:
    """The checkpoints (with a sidecar) that a run of another config wrote, by step."""
    return [path for path in sorted(Path(ckpt_dir).glob("step-*.pt"))
            if (meta := _sidecar(path)) is not None and meta.get("config_hash") != config_hash]


def latest(ckpt_dir: str | Path, config_hash: str) -> dict | None:
    """The newest intact checkpoint written by a run with the same config, or None.

    Skipped with a :class:`CheckpointWarning` naming the file: a ``.pt`` without a readable sidecar, one
    whose bytes differ from what its sidecar recorded (truncated or modified), one that is not a torch
    archive, and one that holds anything but tensors and plain types. Checkpoints of other configs are
    skipped silently, as before: they are expected after a params change.
    """
    for path in sorted(Path(ckpt_dir).glob("step-*.pt"), reverse=True):
        meta = _sidecar(path)
        if meta is None:
            _skip(path, f"no valid sidecar {sidecar_for(path).name} (not written by iqabench, or the run "
                        "stopped while saving it)")
            continue
        if meta.get("config_hash") != config_hash:
            continue
        damage = _damage(path, meta)
        if damage:
            _skip(path, damage)
            continue
        try:
            state = io.read_torch(path)
        except io.UnsafePickleError as err:
            _skip(path, str(err))
            continue
        except (RuntimeError, EOFError, OSError, ValueError) as err:
            _skip(path, f"unreadable ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
            continue
        state = from_plain(state)
        state["path"] = str(path)
        return state
    return None
