"""Resumable, verified downloads of a dataset's published files.

Each file is fetched by :func:`iqabench.datasets.transfer.fetch` (resume, retries,
size and SHA-256 checks) into ``data/raw/NAME/.archives/`` and extracted beside it; the files move into
``data/raw/NAME`` only once the download holds the dataset (its score file), so a valid archive of something
else leaves nothing behind. Every verified file's SHA-256 is recorded in a lock file (commit it; a DVC stage
declares it as an output), but only after it extracted cleanly. Where the authors
publish no checksum, the hash of the first good download is pinned there and every
later download must match it; a mismatch says the pin may be wrong and how to re-pin.
A corrupt file is kept as ``<name>.corrupt``, never used and never deleted.
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
from pathlib import Path

from .. import io
from . import archives
from .build import build_from_spec, list_images
from .registry import DatasetSpec, get_spec
from .scorefiles import DatasetError, locate
from .transfer import ChecksumError, DownloadError, fetch

__all__ = ["ChecksumError", "DownloadError", "default_lock_path", "download", "download_spec", "fetch",
           "needs_rar"]

ARCHIVE_DIR, DONE_MARKER = archives.ARCHIVE_DIR, archives.DONE_MARKER
INCOMING = ".extracted"  # under ARCHIVE_DIR: what this run extracted, until the layout check passes


def default_lock_path(dest: Path) -> Path:
    """``data/raw/NAME`` -> ``data/checksums/NAME.lock.json``: one lock per dataset, so the
    per-dataset DVC stages never share an output."""
    dest = Path(dest)
    return dest.parent.parent / "checksums" / f"{dest.name}.lock.json"


def download(name: str, dest: Path, **kwargs) -> Path:
    """Download and extract the dataset ``name`` into ``dest``; see :func:`download_spec`."""
    return download_spec(get_spec(name), dest, **kwargs)


def needs_rar(spec: DatasetSpec) -> bool:
    """Whether downloading ``spec`` extracts a .rar archive (which needs libarchive or a RAR tool)."""
    return any(archives.archive_format(Path(r.filename)) == "rar" for r in spec.remotes if r.extract)


def download_spec(spec: DatasetSpec, dest: Path, *, lock_path: Path | None = None, retries: int = 4,
                  backoff: float = 1.0, timeout: float = 60.0, keep_archives: bool = False,
                  progress: bool = True, allow_partial: bool = False) -> Path:
    """Download, verify and extract ``spec`` into ``dest``; nothing is pinned unless the files hold the dataset
    (its score file, and all ``spec.n_images`` rated images unless ``allow_partial``)."""
    dest = Path(dest)
    if not spec.remotes:
        raise DatasetError(f"{spec.name} has no public download URL ({spec.access}). Get the files there, "
                           f"then run `iqabench datasets add {spec.name} --from PATH`")
    if needs_rar(spec):
        archives.rar_extractor()  # fail before a long download, not after
    try:  # a file or an unwritable place as --dest: said now, not as an OSError from deep in a transfer
        dest.mkdir(parents=True, exist_ok=True)
        (dest / ARCHIVE_DIR).mkdir(exist_ok=True)
    except OSError as err:
        why = "it is a file, not a folder" if dest.is_file() else err.strerror
        raise DatasetError(f"{spec.name}: cannot download into {dest} ({why}); give a folder you can write to") \
            from None
    lock_path = Path(lock_path) if lock_path else default_lock_path(dest)
    with _one_at_a_time(dest / ARCHIVE_DIR / ".lock", spec.name):
        return _download(spec, dest, lock_path, retries=retries, backoff=backoff, timeout=timeout,
                         keep_archives=keep_archives, progress=progress, allow_partial=allow_partial)


@contextlib.contextmanager
def _one_at_a_time(path: Path, name: str):
    """Held for the whole download: a second `download NAME` into the same folder renamed the first one's
    partial file from under it (a traceback) and could have interleaved two writers."""
    try:
        import fcntl
    except ImportError:  # not on this platform: downloads are not guarded against each other
        yield
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetError(f"{name}: another download into {path.parent.parent} is running; wait for it to "
                               "finish (or stop it), then run this one again") from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # before the flock goes: the folder may then be removed when empty


def _download(spec: DatasetSpec, dest: Path, lock_path: Path, *, retries: int, backoff: float, timeout: float,
              keep_archives: bool, progress: bool, allow_partial: bool) -> Path:
    # Temp files of a write that was killed (dest is a `persist: true` output, which DVC would cache with them);
    # in the shared checksums folder only this lock's own, as another dataset's download may be writing there.
    for folder in (dest, dest / ARCHIVE_DIR):
        io.remove_orphans(folder)
    io.remove_orphans(lock_path.parent, names=(lock_path.name,))
    lock = _read_json(lock_path, LOCK_ENTRY, f"restore it with `git checkout {lock_path}` (it is kept in git), or "
                      "delete it to pin the next good download")
    done = _read_json(dest / DONE_MARKER, DONE_ENTRY, "delete it: the next download checks every file again")
    fetched = []  # (key, remote, stored, digest): pinned together once the whole download holds the dataset
    incoming = dest / ARCHIVE_DIR / INCOMING
    shutil.rmtree(incoming, ignore_errors=True)  # left by an interrupted run: unverified, extracted again
    try:
        _fetch_all(spec, dest, incoming, lock, done, lock_path, fetched, retries=retries, backoff=backoff,
                   timeout=timeout, progress=progress)
        done_before = [dest] if len(fetched) < len(spec.remotes) else []  # remotes extracted by an earlier run
        stored = [stored for _, _, stored, _ in fetched]
        _check_layout(spec, dest, [incoming, *done_before], stored)
        count = None
        if fetched and not done_before:
            count = _check_count(spec, incoming, dest, stored, allow_partial)
        try:
            if incoming.is_dir():
                archives.move_into(incoming, dest, f"{spec.name}: the download")
        except OSError as err:
            raise DownloadError(f"{spec.name}: moving the extracted files into {dest} failed ({err.strerror or err}); "
                                "free space there (or make it writable), then run the download again: the "
                                "downloaded files are kept and not downloaded again") from None
        if fetched and done_before:  # the set spans this run's files and an earlier run's: counted in place
            count = _check_count(spec, dest, dest, stored, allow_partial)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    # Pinned only now: a file that failed to verify, extract or hold the dataset must never become the reference.
    for key, remote, stored, digest in fetched:
        if lock.get(key, {}).get("sha256") != digest:
            lock[key] = {"url": remote.url, "size": stored.stat().st_size, "sha256": digest}
            _record(lock_path, dict(sorted(lock.items())), spec.name, remote.filename)
        done[remote.filename] = digest
        _record(dest / DONE_MARKER, done, spec.name, remote.filename)
        if not keep_archives:
            stored.unlink()
    if count is not None:  # `iqabench datasets` shows a partial copy's own count, not the published one
        partial = dest / archives.PARTIAL_MARKER
        if count != spec.n_images:
            _record(partial, {"images": count, "published": spec.n_images}, spec.name, "the image count")
        else:
            partial.unlink(missing_ok=True)
    leftover = dest / ARCHIVE_DIR
    if leftover.is_dir() and not [p for p in leftover.iterdir() if p.name != ".lock"]:
        shutil.rmtree(leftover)  # only the guard's own file is left
    return dest


def _fetch_all(spec: DatasetSpec, dest: Path, incoming: Path, lock: dict, done: dict, lock_path: Path,
               fetched: list, **transfer) -> None:
    """Fetch and verify each remote not yet done, extracting (or copying) it into ``incoming``; append each to
    ``fetched``."""
    for remote in spec.remotes:
        key = f"{spec.name}/{remote.filename}"
        expected = remote.sha256 or lock.get(key, {}).get("sha256")
        if expected and done.get(remote.filename) == expected:
            continue
        stored = dest / ARCHIVE_DIR / remote.filename
        # An unpinned archive left by a run that stopped at a later file is reused: extraction and the layout
        # check below verify it before anything is pinned (a bad one is renamed .corrupt, never reused).
        if not (stored.is_file() and (not expected or io.sha256_file(stored) == expected)):
            try:
                pinned = lock.get(key, {}).get("size")  # what the pinned file holds: no longer body is the file
                size = remote.size or (pinned if isinstance(pinned, int) and pinned > 0 else None)
                fetch(remote.url, stored, size=size, sha256=expected, label=f"{spec.name}: {remote.filename}",
                      **transfer)
            except ChecksumError as err:
                if remote.sha256 or not expected:
                    raise
                raise ChecksumError(f"{err}\nThe expected hash is not published by the authors: iqabench pinned "
                                    f"it in {lock_path} from an earlier download, so the pin itself may be wrong "
                                    f"(a bad first download). If you trust the new file, delete the entry "
                                    f"{key!r} from {lock_path} and run the download again to re-pin it") from None
        digest = io.sha256_file(stored)
        if remote.extract and archives.archive_format(stored):
            try:
                archives.extract(stored, incoming)
            except archives.KeptArchiveError:
                raise  # encrypted, or the disk is full: a good file, kept as it is for a rerun
            except DatasetError as err:  # corrupt, or refused as unsafe: set aside, so a rerun fetches it again
                kind = archives.UnsafeArchiveError if isinstance(err, archives.UnsafeArchiveError) else ChecksumError
                raise kind(f"{err}. Nothing was pinned; the file is kept as {_set_aside([stored])} and not used: "
                           "delete it and run the download again") from err
        else:
            try:
                incoming.mkdir(exist_ok=True)
                io.write_bytes(incoming / remote.filename, stored.read_bytes())
            except OSError as err:  # a full disk: the download itself is fine
                raise DownloadError(f"{spec.name}: cannot place {remote.filename} in {dest} ({err.strerror or err}); "
                                    "make room for it there, then run the download again: the downloaded file "
                                    f"{stored} is kept and not downloaded again") from None
        fetched.append((key, remote, stored, digest))


def _record(path: Path, record: dict, name: str, filename: str) -> None:
    """Write the lock file or the done marker. The archive is deleted only after both, so a failure here leaves
    it in .archives, where the next run finds and reuses it."""
    try:
        io.write_json(path, record)
    except OSError as err:
        raise DownloadError(f"{name}: cannot record the SHA-256 of {filename} in {path} ({err.strerror or err}); "
                            "make that folder writable, then run the download again: the download is kept and not "
                            "downloaded again") from None


def _check_layout(spec: DatasetSpec, dest: Path, roots: list[Path], fetched: list[Path]) -> None:
    """The downloaded files (extracted under ``roots``, not yet in ``dest``) hold what ``prepare`` reads first:
    the score file (or, for an unlabelled set, its images). A valid archive of something else (a server's error
    page zipped, a moved file) is refused here, before it reaches ``dest``."""
    if not fetched:
        return
    if spec.parser is not None:
        what = f"score file '{spec.score_file}'"
        found = any(locate(root, spec.score_file, spec.name, required=False) for root in roots)
    else:
        what = f"images ('{spec.images_dir}' folder)"
        found = any(_has_images(spec, root) for root in roots)
    if not found:
        kept = _set_aside(fetched)
        raise ChecksumError(f"{spec.name}: the download holds no {what} under {dest} (nor one folder down), so it is "
                            f"not {spec.name} as published and nothing was pinned; the downloaded file(s) are kept as "
                            f"{kept} and not used. Check the dataset homepage ({spec.homepage}) for a moved file, "
                            "then delete them and run the download again")


def _check_count(spec: DatasetSpec, root: Path, dest: Path, fetched: list[Path], allow_partial: bool) -> int:
    """Every image the score file lists is there, and as many as the published set has: a cut or older file
    (3 of KADID-10k's 10,125 images) was called ready and pinned. A listed image that is absent sets the files
    aside (a rerun fetches them again); a complete but smaller set is kept for a rerun with --partial."""
    try:
        count = len(build_from_spec(spec, root)) if spec.parser is not None else len(list_images(spec.name, root))
    except DatasetError as err:
        raise ChecksumError(f"{err}\nSo the download is not {spec.name} as published and nothing was pinned; the "
                            f"downloaded file(s) are kept as {_set_aside(fetched)} and not used. Check the dataset "
                            f"homepage ({spec.homepage}), then delete them and run the download again") from None
    if count != spec.n_images and not allow_partial:
        raise DatasetError(f"{spec.name}: the download holds {count} rated image(s); the published dataset has "
                           f"{spec.n_images}, so it is a cut or other release and nothing was pinned (the files "
                           f"are kept in {dest / ARCHIVE_DIR}). Check the dataset homepage ({spec.homepage}); to "
                           "use this copy as a subset, run the download again with --partial")
    return count


def _set_aside(downloaded: list[Path]) -> str:
    """Rename downloaded files that are not the dataset to ``NAME.corrupt``: never used, never fetched over
    (a rerun downloads the file again); the new names, for the message."""
    return ", ".join(str(p.replace(p.with_name(p.name + ".corrupt"))) for p in downloaded)


def _has_images(spec: DatasetSpec, root: Path) -> bool:
    try:
        return bool(list_images(spec.name, root))
    except DatasetError:
        return False


# What each entry of the two state files must be: a pin {"url", "size", "sha256"} and a file's SHA-256.
LOCK_ENTRY = ("a pin such as {\"sha256\": \"<64 hex digits>\", ...}",
              lambda v: isinstance(v, dict) and _is_sha256(v.get("sha256")))
DONE_ENTRY = ("a SHA-256 (64 hex digits)", lambda v: _is_sha256(v))


def _is_sha256(value) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) is not None


def _read_json(path: Path, entry: tuple, fix: str) -> dict:
    """A state file (the lock, the done marker): a mapping of file names to ``entry``s, or a DatasetError naming
    what is wrong and ``fix``, before anything is downloaded (a hand-edited one was a traceback, or a `"sha256": 5`
    quarantined the good download after the whole transfer)."""
    if not path.is_file():
        return {}
    try:
        record = io.loads_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); {fix}") from None
    except io.JSONShapeError as err:  # two pins for one file: json would keep the last without a word
        raise DatasetError(f"{path}: {err}; {fix}") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{path} holds a JSON {type(record).__name__}, not a mapping of file names; {fix}")
    what, valid = entry
    for key, value in record.items():
        if not valid(value):
            raise DatasetError(f"{path}: entry {key!r} is {json.dumps(value)[:80]}, not {what}; {fix}")
    return record
