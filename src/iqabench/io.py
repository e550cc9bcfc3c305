"""Atomic file writes, strict reads and hashing.

A crash must never leave a half-written output that DVC would cache, so every
writer goes through :func:`atomic_path`: write to a temporary sibling, fsync,
then ``os.replace`` onto the final name (atomic on POSIX).

Floats in CSV and JSON files are written at ``SIGNIFICANT_DIGITS`` significant
digits (the shortest text of the value rounded so), so the last-bit noise of
another CPU or thread count does not change a file's bytes, and its DVC hash,
while every value keeps far more precision than any metric here means.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)
SIGNIFICANT_DIGITS = 10
NOT_REGULAR = "not a regular file (a device, pipe or socket)"  # what an is_special path is, in messages
FLOAT32_DIGITS = 7  # float32 carries ~7.2 significant digits: more would print its binary noise


def is_special(path: str | os.PathLike) -> bool:
    """A path that exists but is neither a regular file nor a folder: a device, pipe or socket (``/dev/null``),
    which reads as empty or blocks, and which "does not exist" would misdescribe."""
    path = Path(path)
    return path.exists() and not path.is_file() and not path.is_dir()


class NotRegularFileError(OSError):
    """A write to a device, pipe or socket: replacing it with a file would destroy it (``/dev/null`` as root)."""


def destination(path: str | os.PathLike) -> Path:
    """Where a write to ``path`` lands: the file a symlink points at (a registry linked to a shared one stays
    shared, not replaced by a private copy), except a link to a read-only file (DVC's protected cache, which
    writing through would corrupt), which is replaced as a plain path; a device, pipe or socket is refused."""
    path = Path(path)
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not (target.exists() and not target.stat().st_mode & 0o222):
            path = target
    if is_special(path):
        raise NotRegularFileError(errno.EINVAL, f"{NOT_REGULAR}; give a regular file's path", str(path))
    return path


class OutputWriteError(OSError):
    """An output that could not be written (a full disk, a read-only folder): the message names the output (not
    its temp file), the cause and what to do; ``errno`` and ``strerror`` are the cause's."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        reason = cause.strerror or str(cause) or type(cause).__name__
        super().__init__(cause.errno, reason)
        self.filename = os.fspath(path)
        fix = _WRITE_FIX.get(cause.errno, "free space there or make the folder writable")
        self.message = f"cannot write {shown_path(path)} ({reason}): {fix}, then run again"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # pickled (a DDP rank's error) as its arguments, not OSError's (errno, strerror)
        return type(self), (self.filename, OSError(self.errno, self.strerror))


_IN_THE_WAY = "a file stands where one of its folders should be: move it aside"
_WRITE_FIX = {errno.ENOTDIR: _IN_THE_WAY, errno.EEXIST: _IN_THE_WAY,
              errno.EISDIR: "a folder stands where the file should be: move it aside",
              errno.ENAMETOOLONG: "give a shorter name (255 bytes a name, 4096 a path)"}
# atomic_path's temp files: ".NAME." + mkstemp's 8 random characters + ".tmp" (.gitignore's .*.????????.tmp)
TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


def _write_failure(err: BaseException, tmp: Path, path: Path) -> OSError | None:
    """The OSError behind a failed write of ``tmp`` (or its rename onto ``path``), or None for another error.
    torch.save reports a short write as a RuntimeError ("unexpected pos ...") raised over the OSError."""
    if isinstance(err, RuntimeError):
        err = next((e for e in (err.__cause__, err.__context__) if isinstance(e, OSError)), None)
    if not isinstance(err, OSError) or isinstance(err, OutputWriteError):  # a nested write's names its own file
        return None
    name = os.fsdecode(err.filename) if isinstance(err.filename, (str, bytes, os.PathLike)) else err.filename
    return err if name in (None, str(tmp), str(path)) else None  # not a read of another file


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (see :func:`destination`); on success it replaces ``path``.
    A write that fails for the machine's sake (a full disk, a read-only folder) is an :class:`OutputWriteError`."""
    requested, path = path, destination(path)
    shown = requested if Path(requested) == path else f"{os.fspath(requested)} (a link to {path})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputWriteError(shown, err) from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should look like any other file
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as err:
        cause = _write_failure(err, tmp_path, path)
        if cause is None:
            raise
        raise OutputWriteError(shown, cause) from err
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_orphans(folder: str | os.PathLike, names: tuple[str, ...] | None = None) -> list[Path]:
    """Delete the temp files :func:`atomic_path` left in ``folder`` (not below it) when its process was killed
    (only those of the files ``names``, when given), naming them on stderr in one line; returns them.
    Only where no other process is writing: a live write's temp file looks the same."""
    folder = Path(folder)
    try:
        found = sorted(p for p in folder.iterdir() if (m := TEMP_NAME.fullmatch(p.name))
                       and (names is None or m["name"] in names) and p.is_file() and not p.is_symlink())
    except OSError:  # no folder yet (a first run), or one that cannot be listed: nothing of ours to remove
        return []
    for orphan in found:
        with contextlib.suppress(OSError):  # a read-only folder: the write that follows says so
            orphan.unlink()
    if removed := [p for p in found if not os.path.lexists(p)]:
        print(f"warning: removed {len(removed)} temporary file(s) that an interrupted write left in {folder}: "
              f"{', '.join(p.name for p in removed[:5])}{' ...' if len(removed) > 5 else ''}", file=sys.stderr)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """JSON with floats at ``SIGNIFICANT_DIGITS`` significant digits."""
    return write_text(path, json.dumps(stable_floats(obj), indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, frame, **kwargs) -> Path:
    """Write a pandas DataFrame as CSV atomically (index off unless asked), float columns at
    ``SIGNIFICANT_DIGITS`` significant digits."""
    kwargs.setdefault("index", False)
    frame = frame.copy()
    for column, dtype in zip(frame.columns, frame.dtypes):
        if dtype.kind == "f":
            digits = FLOAT32_DIGITS if dtype.itemsize == 4 else SIGNIFICANT_DIGITS
            frame[column] = [stable_float(v, digits) for v in frame[column].to_numpy(dtype=float, na_value=math.nan)]
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def stable_float(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (NaN and infinities unchanged)."""
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def stable_floats(obj: Any) -> Any:
    """A copy of nested dicts / lists with every float (numpy's too) passed through :func:`stable_float`."""
    if isinstance(obj, dict):
        return {k: stable_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [stable_floats(v) for v in obj]
    if isinstance(obj, bool) or not hasattr(obj, "__float__") or hasattr(obj, "__index__"):
        return obj  # ints (Python and numpy) stay ints, non-numbers are left to the encoder
    if getattr(obj, "ndim", 0) != 0:
        return obj
    single = getattr(getattr(obj, "dtype", None), "itemsize", 8) == 4
    return stable_float(obj, FLOAT32_DIGITS if single else SIGNIFICANT_DIGITS)


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """torch.save atomically. Through a file handle, so the archive's inner folder is always
    "archive" (given a path, torch names it after the random temp file) and identical objects
    give identical bytes, which DVC's output hashes rely on."""
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
    return Path(path)


class UnsafePickleError(ValueError):
    """A torch file that holds pickled Python objects besides tensors and plain types."""


def read_torch(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """torch.load with ``weights_only=True``: tensors and plain Python types only, so reading a file
    never runs code from it. A file that asks for anything else raises :class:`UnsafePickleError`
    naming what it asked for, without torch's advice to retry with weights_only=False (the retry is
    exactly what would run the code)."""
    import pickle
    import re

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL (\S+?)[\s,]", str(err))
        what = f"it asks for {found.group(1)}" if found else "objects other than tensors"
        raise UnsafePickleError(
            f"{path}: refused to load: {what}, and unpickling Python objects can run arbitrary code. iqabench "
            "reads tensors and plain types only; if you trust the file, re-save just its tensors (a state "
            "dict) and use that copy") from None


class NpzError(ValueError):
    """An .npz file that cannot be read as arrays; its message is ``Type: first line of the reason``."""


def read_npz(path: str | os.PathLike) -> dict:
    """Every array of the .npz at ``path``, read without unpickling anything, else :class:`NpzError`.

    A file that is no zip is refused before numpy sees it: numpy would read it as a pickle and advise
    ``allow_pickle=True``. An empty file (numpy: EOFError) is one too: typer turns an EOFError into a bare
    "Aborted."."""
    import zipfile
    import zlib

    import numpy as np

    try:
        if not zipfile.is_zipfile(path):
            raise zipfile.BadZipFile("not a zip archive of arrays")
        with np.load(path, allow_pickle=False) as blob:
            return {name: blob[name] for name in blob.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, KeyError, EOFError) as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise NpzError(f"{type(exc).__name__}: {reason}") from None


class TableError(ValueError):
    """A file an earlier stage wrote (CSV, JSON, markdown) that is missing, unreadable or lacks a column;
    the message names it and how to get it back."""


def read_table(path: str | os.PathLike, columns=(), *, fix: str):
    """``path`` as a pandas DataFrame holding ``columns``, else :class:`TableError` naming the file, what is wrong
    and ``fix`` (e.g. "`dvc repro -f evaluate`")."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise TableError(f"{path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TableError(f"{path} is not a readable CSV table ({reason}); {fix}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableError(f"{path} lacks the column(s) {', '.join(missing)}; {fix}")
    return frame


def read_text(path: str | os.PathLike, *, fix: str) -> str:
    """A UTF-8 text file an earlier stage wrote (markdown, JSON), else :class:`TableError` with ``fix``."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TableError(f"{path} is missing; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TableError(f"{path} cannot be read ({type(exc).__name__}); {fix}") from None


class JSONShapeError(ValueError):
    """JSON that parses as text but cannot be trusted as one value: a key repeated in one object, or (``deep``)
    nesting deeper than the parser follows. The message names the key or the depth, not the file."""

    def __init__(self, message: str, deep: bool = False):
        super().__init__(message)
        self.deep = deep


def loads_json(text: str, *, nesting: str = "") -> Any:
    """``json.loads`` for every JSON a user may have edited (registry, lock files, metrics, baselines).

    json keeps the last of two equal keys silently, so ``{"srcc": 0.32, "srcc": -1.0}`` would act on -1.0 while
    the reviewer reads 0.32: a repeated key is a JSONShapeError naming it. A leading BOM (some Windows editors
    write one) is not content. ``"[" * 100000`` is a RecursionError inside the parser: a JSONShapeError (deep),
    whose message ends with ``nesting`` (how deep the expected file nests). Malformed text stays a JSONDecodeError.
    """
    try:
        return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_unique_keys)
    except RecursionError:
        raise JSONShapeError("its JSON nests deeper than the parser follows" + (f"; {nesting}" if nesting else ""),
                             deep=True) from None


def _unique_keys(pairs) -> dict:
    found = {}
    for key, value in pairs:
        if key in found:
            raise JSONShapeError(f"the key {key!r} appears twice in one object ({shown_value(found[key])}, then "
                                 f"{shown_value(value)}), and a JSON reader keeps only the last; keep one")
        found[key] = value
    return found


def shown_value(value) -> str:
    """A JSON value for a one-line message: ``null`` as JSON says it, and a 400-digit integer or a long string
    cut short (they were echoed whole, hundreds of characters)."""
    if value is None:
        return "null"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 15:
        digits = str(abs(value))
        return f"{'-' if value < 0 else ''}{digits[:12]}... ({len(digits)} digits)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_json(path: str | os.PathLike, *, fix: str) -> Any:
    try:
        return loads_json(read_text(path, fix=fix))
    except JSONShapeError as exc:
        raise TableError(f"{path}: {exc}; {fix}") from None
    except json.JSONDecodeError as exc:
        raise TableError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); {fix}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def source_fingerprint(*sources: str | os.PathLike) -> str:
    """sha256 over the given .py files and the .py files of the given folders: resumable outputs
    record it, so a partial result made by other code is regenerated rather than silently reused."""
    digest = hashlib.sha256()
    for source in map(Path, sources):
        for path in [source] if source.is_file() else sorted(source.rglob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _json_default(obj: Any):
    # numpy scalars and paths appear in metrics dicts; make them plain JSON.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def path_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot even be looked at, in words that follow its name, or None when it can (it may still be
    missing): Path.is_file() raised OSError on a name over 255 bytes, and called a link loop missing. Every
    command that takes a path it did not make says these alike."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return "has a name longer than the file system allows (255 bytes a name, 4096 a path)"
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop (following its links leads back to it)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None  # missing: each caller says what makes it
        return f"cannot be read ({exc.strerror or exc})"
    return None


MAX_LISTED = 10  # items one message names, then "... and N more"


def listed(items, sep: str = "\n  ") -> str:
    """The first MAX_LISTED of ``items`` (texts) joined by ``sep``, then how many more there are."""
    items = list(items)
    more = f"{sep}... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return sep.join(items[:MAX_LISTED]) + more


def shown_path(path: str | os.PathLike) -> str:
    """``path`` for a one-line message: a name over the file system's limit (ENAMETOOLONG) is its first 80
    characters and its length in bytes (the unit of the limit), not thousands of characters."""
    text = os.fspath(path)
    return text if len(text) <= 100 else f"{text[:80]}... ({len(os.fsencode(text))} bytes)"


def portable_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory (the repository) when it lies inside it, else its file name:
    a DVC output or committed file must not hold one checkout's absolute paths (its bytes would differ per clone)."""
    path = Path(path)
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name
