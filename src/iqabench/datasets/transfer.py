"""One URL to one verified file: resume, retries, and checks that a server's answer is the file.

The file is fetched into ``<name>.part``; an interrupted transfer resumes with an HTTP Range request
guarded by ``If-Range`` (the ETag or Last-Modified of the first answer, kept beside the part in
``<name>.part.validator``), so a file that changed on the server since is fetched again from the start
rather than spliced onto the old bytes. Transient failures are retried with exponential backoff, and
only a file whose size and SHA-256 check out is renamed to its final name; a corrupt one is kept as
``<name>.corrupt``. :mod:`iqabench.datasets.download` decides what to fetch and what to pin.
"""
from __future__ import annotations

import contextlib
import http.client
import re
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from .. import io
from .scorefiles import DatasetError

CHUNK = 1 << 16
# A body of no known size (no published or pinned size, no Content-Length) stops before the disk's free space
# falls under this, so a server that never ends cannot fill the disk; the partial file stays resumable.
RESERVE = 1 << 30
NO_RETRY = {400, 401, 403, 404, 410}


class DownloadError(DatasetError):
    """A download that failed; the message says what was kept and how to resume."""


class ChecksumError(DownloadError):
    """A complete download whose size or SHA-256 differs from the expected one."""


def fetch(url: str, target: Path, *, size: int | None = None, sha256: str | None = None, retries: int = 4,
          backoff: float = 1.0, timeout: float = 60.0, progress: bool = True, label: str = "") -> Path:
    """Download ``url`` to ``target`` with resume, retries and verification."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    label = label or target.name
    if size is not None and part.is_file() and part.stat().st_size > size:
        _discard(part)  # longer than the published file, so not a prefix of it: resuming could never finish
    failures, restarted = 0, False
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), disable=not progress, transient=True) as bar:
        task = bar.add_task(label, total=size)
        while True:
            try:
                total = _transfer(url, part, timeout, bar, task, size)
                break
            except _Stale as err:
                # The server will not send the rest of this part (416, a 206 from elsewhere, or of a file that
                # changed): start over once, without Range.
                _discard(part)
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
                cause = getattr(err, "reason", err)  # urllib wraps the socket's error in a URLError
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise DownloadError(_untrusted(label, url, cause)) from None
                reason = f"{type(err).__name__}: {cause}"
            failures += 1
            have = part.stat().st_size if part.exists() else 0
            if failures > retries:
                raise DownloadError(f"{label}: download of {url} failed after {failures} attempt(s) ({reason}); "
                                    f"the partial file {part} ({have} bytes) is kept and the next run resumes it")
            time.sleep(backoff * 2 ** (failures - 1))
    got = part.stat().st_size
    if got == 0:  # an empty answer with status 200 is never a dataset file: a server error, not a download
        _discard(part)
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
    _validator_file(part).unlink(missing_ok=True)
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


def _untrusted(label: str, url: str, err: ssl.SSLCertVerificationError) -> str:
    """A server whose certificate does not verify: retrying cannot help, and skipping the check is the user's call.
    (Dataset hosts let certificates lapse: users of KonIQ-10k's and KADID-10k's host reported it, in
    pavancm/CONTRIQUE issue 9, and the KonIQ authors' own notebook downloads over plain http.)"""
    plain = "http://" + url.split("://", 1)[1] if url.startswith("https://") else url
    return (f"{label}: the TLS certificate of {urlparse(url).hostname} did not verify "
            f"({err.verify_message or err.reason or err}), so nothing was downloaded and retrying cannot help. Get the "
            f"file another way you trust (a browser, or `curl -O {plain}` where its authors serve it over plain http), "
            "unpack it, and register the folder with `iqabench datasets add NAME --from FOLDER`")


def _transfer(url: str, part: Path, timeout: float, bar: Progress, task, size: int | None = None) -> int | None:
    """One request: append to ``part`` from where it ends; return the full size if known."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "iqabench-datasets/1"}
    stored = _read_validator(part) if have else None
    if have:
        headers["Range"] = f"bytes={have}-"
        if stored:  # a server whose file changed answers 200 with all of the new one, not the rest spliced on
            headers["If-Range"] = stored
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
            now = _validator(response.headers)
            if stored and stored.startswith('"') and now and now.startswith('"') and now != stored:
                # A server that ignores If-Range still names the version it sends: not the one the part holds.
                raise _Stale(f"the file changed on the server since the partial download began (ETag {stored} "
                             f"then, {now} now)")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        else:
            total = _content_length(response.headers)
            if have and total is not None and total < have:
                # Not the file whose first `have` bytes are here, nor a newer one as a rule: an error message sent
                # with 200. Truncating for it lost the partial file, and a plain file was pinned as the download.
                raise _Incomplete(f"a resume of {have} bytes was answered with a whole body of {total} bytes "
                                  "(status 200), shorter than what is already here: not the file")
            have, mode = 0, "wb"  # server ignored Range, or the file changed (If-Range): start over
            _write_validator(part, _validator(response.headers))
        bar.update(task, total=total, completed=have)
        _check_space(part, (total - have) if total is not None else None)
        closed_early = _append(part, mode, response, bar, task, limit=size if size is not None else total)
    got = part.stat().st_size
    if size is not None and got > size:
        return total  # longer than the known size: fetch's size check refuses it (no use reading the rest)
    if closed_early or (total is not None and got < total):
        raise _Incomplete(f"the connection closed early: {got} of {total} bytes" if total is not None else
                          f"the connection closed early, after {got} bytes")
    return total


def _content_length(headers) -> int | None:
    """The declared body size, or None where it is absent or not a byte count (``abc``, ``-5``)."""
    length = (headers.get("Content-Length") or "").strip()
    return int(length) if length.isdigit() else None


@contextlib.contextmanager
def _writing():
    """The partial file's own OSErrors (disk full) become :class:`_WriteError`, so that a network error (also
    an OSError) is still retried."""
    try:
        yield
    except OSError as err:
        raise _WriteError(err.strerror or str(err)) from err


def _append(part: Path, mode: str, response, bar: Progress, task, limit: int | None = None) -> bool:
    """Write the body to ``part``; True if the connection closed before the body's declared end. Stops once
    ``part`` holds more than ``limit`` bytes (the known size): a body that runs on is refused by the size check
    after one block, not after it fills the disk."""
    with _writing():
        fh = open(part, mode)
    closed_early = None
    held = part.stat().st_size if mode == "ab" else 0
    try:
        while True:
            try:
                block = response.read(CHUNK)
            except http.client.IncompleteRead as err:
                block, closed_early = err.partial, err
            if block:
                if limit is None:
                    _check_reserve(part, held)
                with _writing():
                    fh.write(block)
                bar.advance(task, len(block))
                held += len(block)
            if not block or closed_early or (limit is not None and held > limit):
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


def _check_reserve(part: Path, held: int) -> None:
    free = shutil.disk_usage(part.parent).free
    if free < RESERVE + CHUNK:
        raise _WriteError(f"stopped after {held} bytes: the server gave no size, and the disk's free space fell to "
                          f"{free} bytes, under the {RESERVE >> 20} MiB iqabench leaves free")


def _quarantine(part: Path, message: str) -> ChecksumError:
    corrupt = part.with_name(part.name[: -len(".part")] + ".corrupt")
    part.replace(corrupt)
    _validator_file(part).unlink(missing_ok=True)
    return ChecksumError(f"{message}. The file is kept as {corrupt} and not used; delete it and run the "
                         f"download again (if it fails again, the published file changed: check the homepage)")


def _validator_file(part: Path) -> Path:
    return part.with_name(part.name + ".validator")


def _validator(headers) -> str | None:
    """What identifies the version of the file an answer holds: a strong ETag, else Last-Modified (a weak ETag,
    W/"...", may not be used in If-Range), else None."""
    etag = (headers.get("ETag") or "").strip()
    if etag.startswith('"') and etag.endswith('"') and len(etag) > 2:
        return etag
    return (headers.get("Last-Modified") or "").strip() or None


def _read_validator(part: Path) -> str | None:
    try:
        text = _validator_file(part).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):  # none (a part from before, or a server without one): resume unguarded
        return None
    return text if text and text.isprintable() and len(text) < 256 else None


def _write_validator(part: Path, validator: str | None) -> None:
    record = _validator_file(part)
    with _writing():
        if validator and validator.isascii() and validator.isprintable() and len(validator) < 256:
            io.write_bytes(record, validator.encode("ascii"))
        else:
            record.unlink(missing_ok=True)


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _validator_file(part).unlink(missing_ok=True)
