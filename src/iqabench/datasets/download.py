"""Resumable, verified downloads of a dataset's published files.

A file is fetched into ``<name>.part``; an interrupted transfer resumes with an
HTTP Range request, transient failures are retried with exponential backoff,
and only a file whose size and SHA-256 check out is renamed to its final name.
Every verified file's SHA-256 is recorded in a lock file (commit it; a DVC stage
declares it as an output), but only after it extracted cleanly. Where the authors
publish no checksum, the hash of the first good download is pinned there and every
later download must match it; a mismatch says the pin may be wrong and how to re-pin.
A corrupt file is kept as ``<name>.corrupt``, never used and never deleted.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from .. import io
from . import archives
from .build import list_images
from .registry import DatasetSpec, get_spec
from .scorefiles import DatasetError, locate

CHUNK = 1 << 16
ARCHIVE_DIR, DONE_MARKER = archives.ARCHIVE_DIR, archives.DONE_MARKER
NO_RETRY = {400, 401, 403, 404, 410}


class DownloadError(DatasetError):
    """A download that failed; the message says what was kept and how to resume."""


class ChecksumError(DownloadError):
    """A complete download whose size or SHA-256 differs from the expected one."""


def default_lock_path(dest: Path) -> Path:
    """``data/raw/NAME`` -> ``data/checksums/NAME.lock.json``: one lock per dataset, so the
    per-dataset DVC stages never share an output."""
    dest = Path(dest)
    return dest.parent.parent / "checksums" / f"{dest.name}.lock.json"


def download(name: str, dest: Path, **kwargs) -> Path:
    """Download and extract the dataset ``name`` into ``dest``; see :func:`download_spec`."""
    return download_spec(get_spec(name), dest, **kwargs)


def download_spec(spec: DatasetSpec, dest: Path, *, lock_path: Path | None = None, retries: int = 4,
                  backoff: float = 1.0, timeout: float = 60.0, keep_archives: bool = False,
                  progress: bool = True) -> Path:
    dest = Path(dest)
    if not spec.remotes:
        raise DatasetError(f"{spec.name} has no public download URL ({spec.access}). Get the files there, "
                           f"then run `iqabench datasets add {spec.name} --from PATH`")
    if any(archives.archive_format(Path(r.filename)) == "rar" for r in spec.remotes if r.extract):
        archives.rar_extractor()  # fail before a long download, not after
    try:  # a file or an unwritable place as --dest: said now, not as an OSError from deep in a transfer
        dest.mkdir(parents=True, exist_ok=True)
        (dest / ARCHIVE_DIR).mkdir(exist_ok=True)
    except OSError as err:
        why = "it is a file, not a folder" if dest.is_file() else err.strerror
        raise DatasetError(f"{spec.name}: cannot download into {dest} ({why}); give a folder you can write to") \
            from None
    lock_path = Path(lock_path) if lock_path else default_lock_path(dest)
    lock = _read_json(lock_path)
    done = _read_json(dest / DONE_MARKER)
    fetched = []  # (key, remote, stored, digest): pinned together once the whole download holds the dataset
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
                fetch(remote.url, stored, size=remote.size, sha256=expected, retries=retries, backoff=backoff,
                      timeout=timeout, progress=progress, label=f"{spec.name}: {remote.filename}")
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
                archives.extract(stored, dest)
            except (archives.UnsafeArchiveError, archives.KeptArchiveError):
                raise  # refused as unsafe, encrypted, or the disk is full: kept as it is, for a look or a rerun
            except DatasetError as err:
                corrupt = stored.replace(stored.with_name(stored.name + ".corrupt"))
                raise ChecksumError(f"{err}. Nothing was pinned; the file is kept as {corrupt} and not used: "
                                    "delete it and run the download again") from err
        else:
            try:
                io.write_bytes(dest / remote.filename, stored.read_bytes())
            except OSError as err:  # a full disk, or a folder of that name: the download itself is fine
                raise DownloadError(f"{spec.name}: cannot place {remote.filename} at {dest / remote.filename} "
                                    f"({err.strerror or err}); make room for it there (free space, or move what has "
                                    "that name), then run the download again: the downloaded file "
                                    f"{stored} is kept and not downloaded again") from None
        fetched.append((key, remote, stored, digest))
    _check_layout(spec, dest, [stored for _, _, stored, _ in fetched])
    # Pinned only now: a file that failed to verify, extract or hold the dataset must never become the reference.
    for key, remote, stored, digest in fetched:
        if lock.get(key, {}).get("sha256") != digest:
            lock[key] = {"url": remote.url, "size": stored.stat().st_size, "sha256": digest}
            _record(lock_path, dict(sorted(lock.items())), spec.name, remote.filename)
        done[remote.filename] = digest
        _record(dest / DONE_MARKER, done, spec.name, remote.filename)
        if not keep_archives:
            stored.unlink()
    leftover = dest / ARCHIVE_DIR
    if leftover.is_dir() and not any(leftover.iterdir()):
        leftover.rmdir()
    return dest


def _record(path: Path, record: dict, name: str, filename: str) -> None:
    """Write the lock file or the done marker. The archive is deleted only after both, so a failure here leaves
    it in .archives, where the next run finds and reuses it."""
    try:
        io.write_json(path, record)
    except OSError as err:
        raise DownloadError(f"{name}: cannot record the SHA-256 of {filename} in {path} ({err.strerror or err}); "
                            "make that folder writable, then run the download again: the download is kept and not "
                            "downloaded again") from None


def _check_layout(spec: DatasetSpec, dest: Path, fetched: list[Path]) -> None:
    """The downloaded files hold what ``prepare`` reads first: the score file (or, for an unlabelled set, its
    images). A valid archive of something else (a server's error page zipped, a moved file) is refused here."""
    if not fetched:
        return
    if spec.parser is not None:
        what, found = f"score file '{spec.score_file}'", locate(dest, spec.score_file, spec.name, required=False)
    else:
        try:
            what, found = f"images ('{spec.images_dir}' folder)", list_images(spec.name, dest)
        except DatasetError:
            found = None
    if not found:
        kept = ", ".join(str(p.replace(p.with_name(p.name + ".corrupt"))) for p in fetched)
        raise ChecksumError(f"{spec.name}: the download holds no {what} under {dest} (nor one folder down), so it is "
                            f"not {spec.name} as published and nothing was pinned; the downloaded file(s) are kept as "
                            f"{kept} and not used. Check the dataset homepage ({spec.homepage}) for a moved file, "
                            "then delete them and run the download again")


def fetch(url: str, target: Path, *, size: int | None = None, sha256: str | None = None, retries: int = 4,
          backoff: float = 1.0, timeout: float = 60.0, progress: bool = True, label: str = "") -> Path:
    """Download ``url`` to ``target`` with resume, retries and verification."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    label = label or target.name
    if size is not None and part.is_file() and part.stat().st_size > size:
        part.unlink()  # longer than the published file, so not a prefix of it: resuming could never finish
    failures, restarted = 0, False
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), disable=not progress, transient=True) as bar:
        task = bar.add_task(label, total=size)
        while True:
            try:
                total = _transfer(url, part, timeout, bar, task, size)
                break
            except _Stale as err:
                # The server will not send the rest of this part (416, or a 206 from elsewhere): start over once,
                # without Range.
                part.unlink(missing_ok=True)
                reason = str(err)
                if not restarted:
                    restarted = True
                    continue
            except _Fatal as err:  # retrying cannot help: say why now, the partial file untouched
                raise DownloadError(f"{label}: {err}") from None
            except _WriteError as err:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(f"{label}: cannot write {part} ({err}); free space on that disk (or make the "
                                    f"folder writable), then run the download again: the partial file ({have} "
                                    "bytes) is kept and the next run resumes it") from None
            except urllib.error.HTTPError as err:
                if err.code in NO_RETRY:
                    raise DownloadError(f"{label}: HTTP {err.code} for {url}; the file is not there (moved or "
                                        f"needs registration). Check the dataset homepage") from err
                if 300 <= err.code < 400:  # urllib gave up on a redirect: a loop, or to a scheme it refuses
                    why = " ".join(str(err.reason).split())
                    raise DownloadError(f"{label}: {url} redirects, and it was not followed: {why} The file has "
                                        "moved or the link is broken; check the dataset homepage") from None
                reason = f"HTTP {err.code}"
            except _Incomplete as err:
                reason = str(err)
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
                    TimeoutError) as err:
                reason = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            failures += 1
            have = part.stat().st_size if part.exists() else 0
            if failures > retries:
                raise DownloadError(f"{label}: download of {url} failed after {failures} attempt(s) ({reason}); "
                                    f"the partial file {part} ({have} bytes) is kept and the next run resumes it")
            time.sleep(backoff * 2 ** (failures - 1))
    got = part.stat().st_size
    if got == 0:  # an empty answer with status 200 is never a dataset file: a server error, not a download
        part.unlink()
        raise DownloadError(f"{label}: {url} answered with an empty file (0 bytes); the file is not there (moved, "
                            "or the server is failing). Nothing was kept; check the dataset homepage, then run the "
                            "download again")
    expected_size = size if size is not None else total
    if expected_size is not None and got != expected_size:
        raise _quarantine(part, f"{label}: {part.name} has {got} bytes, expected {expected_size}")
    if sha256:
        digest = io.sha256_file(part)
        if digest != sha256:
            raise _quarantine(part, f"{label}: SHA-256 of {target.name} is {digest}, expected {sha256}")
    part.replace(target)
    return target


class _Incomplete(Exception):
    pass


class _Stale(Exception):
    """The server will not resume the partial file: a 416 (it is not a prefix of the file it serves), or a 206
    that starts elsewhere than asked."""


class _Fatal(Exception):
    """An answer that retrying cannot change (a web page instead of the file, a redirect off http)."""


class _WriteError(Exception):
    """The partial file cannot be written (disk full, read-only): this machine's problem, not the server's."""


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows a redirect to ftp:// (an unencrypted, unresumable download from wherever a server says);
    a dataset file is fetched over http(s) only."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urlparse(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.HTTPError(req.full_url, code, f"it redirects to {newurl}, which is not http(s)",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects)
WEB_PAGE = ("text/html", "application/xhtml+xml")


def _transfer(url: str, part: Path, timeout: float, bar: Progress, task, size: int | None = None) -> int | None:
    """One request: append to ``part`` from where it ends; return the full size if known."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "iqabench-datasets/1"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = _OPENER.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            # Nothing left to send: the part is complete if the server's size (or the published one) agrees.
            match = re.search(r"/(\d+)$", err.headers.get("Content-Range", ""))
            server_size = int(match.group(1)) if match else size
            if server_size == have:
                return have
            raise _Stale(f"HTTP 416: the server will not resume the partial file ({have} bytes"
                         + (f"; its file has {server_size})" if server_size is not None else ")")) from None
        raise
    with response:
        kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind in WEB_PAGE and not part.name.lower().endswith((".html.part", ".htm.part")):
            # A login or error page sent with status 200: refused before it replaces a good partial file.
            raise _Fatal(f"{url} answered with a web page (Content-Type {kind}), not the file: it may need a login "
                         "or have moved. Nothing was written" + (f"; the partial file {part} is kept" if have else "")
                         + ". Check the dataset homepage")
        total = None
        if response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                # Appending would misplace every byte; retrying asks the same server the same question.
                raise _Stale(f"HTTP 206 at the wrong offset: asked for byte {have} on, got Content-Range "
                             f"{response.headers.get('Content-Range')!r}")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        else:
            have, mode = 0, "wb"  # server ignored Range: start over
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
        bar.update(task, total=total, completed=have)
        _check_space(part, (total - have) if total is not None else None)
        closed_early = _append(part, mode, response, bar, task)
    got = part.stat().st_size
    if closed_early or (total is not None and got < total):
        raise _Incomplete(f"the connection closed early: {got} of {total} bytes" if total is not None else
                          f"the connection closed early, after {got} bytes")
    return total


@contextlib.contextmanager
def _writing():
    """The partial file's own OSErrors (disk full) become :class:`_WriteError`, so that a network error (also
    an OSError) is still retried."""
    try:
        yield
    except OSError as err:
        raise _WriteError(err.strerror or str(err)) from err


def _append(part: Path, mode: str, response, bar: Progress, task) -> bool:
    """Write the body to ``part``; True if the connection closed before the body's declared end."""
    with _writing():
        fh = open(part, mode)
    closed_early = None
    try:
        while True:
            try:
                block = response.read(CHUNK)
            except http.client.IncompleteRead as err:
                block, closed_early = err.partial, err
            if block:
                with _writing():
                    fh.write(block)
                bar.advance(task, len(block))
            if not block or closed_early:
                break
    finally:
        with _writing():
            fh.close()  # flushes the buffer: where a full disk often shows first
    return closed_early is not None


def _check_space(part: Path, needed: int | None) -> None:
    """Refuse a transfer the disk cannot hold before writing any of it (the partial file stays resumable)."""
    if not needed:
        return
    free = shutil.disk_usage(part.parent).free
    if free < needed:
        raise _WriteError(f"the rest of the file needs {needed} bytes and only {free} are free on that disk")


def _quarantine(part: Path, message: str) -> ChecksumError:
    corrupt = part.with_name(part.name[: -len(".part")] + ".corrupt")
    part.replace(corrupt)
    return ChecksumError(f"{message}. The file is kept as {corrupt} and not used; delete it and run the "
                         f"download again (if it fails again, the published file changed: check the homepage)")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); fix or delete it") from err
