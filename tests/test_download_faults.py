"""Faults a download meets in the wild, against the local server: each one a clear answer, nothing lost.

Found by a fault-injection audit: a web page, redirect loop or redirect off http(s) was retried and then
reported as resumable; a partial file the server refused to resume (416) stuck every later run; an empty
body passed as the file; a full disk was an OSError traceback.
"""
from __future__ import annotations

import dataclasses
import errno
import json

import pytest

import fakeserver
from fakeserver import Behaviour, serve
from iqabench.datasets import Remote, get_spec
from iqabench.datasets import transfer as dl
from iqabench.datasets.download import DownloadError, download_spec, fetch

FAST = dict(backoff=0.01, timeout=5, progress=False)
BODY = bytes(range(256)) * 64


@pytest.fixture
def kadid_zip(tmp_path) -> bytes:
    return fakeserver.kadid_zip(tmp_path / "src")


def kadid_spec(url: str):
    return dataclasses.replace(get_spec("kadid10k"), remotes=(Remote(url, "kadid10k.zip"),),
                               n_images=fakeserver.KADID_LAYOUT_IMAGES)


def test_a_web_page_sent_with_200_is_refused_without_retrying_or_touching_the_part(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY[:100])
    with serve({"f.bin": b"<html>please log in</html>"}) as server:
        server.behaviour["f.bin"] = Behaviour(content_type="text/html; charset=utf-8", honour_range=False)
        with pytest.raises(DownloadError, match=r"f.bin: http://.*/f.bin answered with a web page \(Content-Type "
                                                r"text/html\), not the file: it may need a login or have moved.*"
                                                r"partial file .*f.bin.part is kept. Check the dataset homepage"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", **FAST)
    assert len(server.requests) == 1 and (tmp_path / "f.bin.part").read_bytes() == BODY[:100]


@pytest.mark.parametrize("rule, part", [(Behaviour(refuse_range=True), BODY[:100]),  # a bare 416
                                        (Behaviour(), BODY + b"x" * 50)])  # a part longer than the file
def test_a_part_the_server_will_not_resume_is_fetched_again_from_the_start(tmp_path, rule, part):
    # Each run ended "failed after 5 attempt(s) (HTTP 416) ... the next run resumes it", for ever.
    (tmp_path / "f.bin.part").write_bytes(part)
    with serve({"f.bin": BODY}) as server:
        server.behaviour["f.bin"] = rule
        fetch(server.url("f.bin"), tmp_path / "f.bin", retries=0, **FAST)
    assert (tmp_path / "f.bin").read_bytes() == BODY
    assert [r for _, r in server.requests] == [f"bytes={len(part)}-", None]


def test_a_part_longer_than_the_published_size_is_not_resumed(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY + b"x")
    with serve({"f.bin": BODY}) as server:
        fetch(server.url("f.bin"), tmp_path / "f.bin", size=len(BODY), **FAST)
    assert server.requests == [("f.bin", None)] and (tmp_path / "f.bin").read_bytes() == BODY


def test_a_content_length_above_the_body_resumes_and_completes(tmp_path):
    with serve({"f.bin": BODY}) as server:
        server.behaviour["f.bin"] = Behaviour(length_delta=100)
        fetch(server.url("f.bin"), tmp_path / "f.bin", **FAST)
    assert (tmp_path / "f.bin").read_bytes() == BODY  # the resume's 416 names the true size


@pytest.mark.parametrize("location, why", [("f.bin", "would lead to an infinite loop"),
                                           ("file:///etc/passwd", "Redirection to url 'file:///etc/passwd' is not "
                                                                  "allowed"),
                                           ("ftp://127.0.0.1:9/f.bin", "it redirects to ftp://127.0.0.1:9/f.bin, "
                                                                       "which is not http\\(s\\)")])
def test_a_redirect_loop_or_off_http_is_named_once_not_retried(tmp_path, location, why):
    # The loop and file:// were retried and reported as resumable; ftp:// was followed.
    with serve({"f.bin": BODY}) as server:
        server.behaviour["f.bin"] = Behaviour(redirect_to=location)
        with pytest.raises(DownloadError, match=rf"f.bin: http://.*/f.bin redirects, and it was not followed: .*"
                                                rf"{why}.* The file has moved or the link is broken; check the "
                                                r"dataset homepage"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", retries=3, **FAST)
        assert len(server.requests) <= 5  # urllib's own loop limit, once
    assert list(tmp_path.iterdir()) == []


def test_an_empty_body_is_not_a_download(tmp_path):
    with serve({"f.bin": b""}) as server:
        with pytest.raises(DownloadError, match=r"f.bin: http://.*/f.bin answered with an empty file \(0 bytes\); the "
                                                r"file is not there .* Nothing was kept"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", **FAST)
    assert list(tmp_path.iterdir()) == []


class _Interrupting:
    """A file whose writes fail with ``exc`` after ``after`` blocks (a full disk, Ctrl-C)."""

    def __init__(self, fh, exc, after):
        self.fh, self.exc, self.left = fh, exc, after

    def write(self, block):
        if self.left == 0:
            raise self.exc
        self.left -= 1
        return self.fh.write(block)

    def close(self):
        self.fh.close()


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_full_disk_or_ctrl_c_mid_transfer_keeps_a_resumable_part_and_pins_nothing(tmp_path, monkeypatch, kadid_zip,
                                                                                   exc):
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    monkeypatch.setattr(dl, "CHUNK", 1024)
    real_open = open
    monkeypatch.setattr(dl, "open", lambda path, mode: _Interrupting(real_open(path, mode), exc, after=2),
                        raising=False)
    with serve({"kadid10k.zip": kadid_zip}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"))
        if isinstance(exc, OSError):  # it was an OSError traceback
            with pytest.raises(DownloadError, match=r"kadid10k: kadid10k.zip: cannot write .*kadid10k.zip.part \(No "
                                                    r"space left on device\); free space on that disk .* the partial "
                                                    r"file \(2048 bytes\) is kept and the next run resumes it"):
                download_spec(spec, dest, lock_path=lock, **FAST)
        else:
            with pytest.raises(KeyboardInterrupt):
                download_spec(spec, dest, lock_path=lock, **FAST)
        assert len(server.requests) == 1  # a full disk is not retried
        assert (dest / ".archives" / "kadid10k.zip.part").stat().st_size == 2048
        assert not lock.exists() and not (dest / ".iqabench-download.json").exists()
        monkeypatch.undo()
        download_spec(spec, dest, lock_path=lock, **FAST)
    assert server.requests[-1] == ("kadid10k.zip", "bytes=2048-")
    assert json.loads(lock.read_text())["kadid10k/kadid10k.zip"]["size"] == len(kadid_zip)


def test_a_file_the_disk_cannot_hold_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    with serve({"f.bin": BODY}) as server:
        with pytest.raises(DownloadError, match=rf"cannot write .*f.bin.part \(the rest of the file needs {len(BODY)} "
                                                r"bytes and only 1000 are free on that disk\); free space"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", **FAST)
    assert list(tmp_path.iterdir()) == []


def test_a_body_of_no_known_size_stops_before_it_fills_the_disk_and_resumes(tmp_path, monkeypatch):
    # No published size, no pin, no Content-Length: the transfer had no bound, so a server that never ends
    # filled the disk. It stops at iqabench's reserve of free space, with the part kept for a resume.
    free = {"bytes": dl.RESERVE + dl.CHUNK + 10}
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: type("U", (), {"free": free["bytes"]})())
    body = bytes(range(256)) * 1024  # four blocks
    with serve({"f.bin": body}) as server:
        server.behaviour["f.bin"] = Behaviour(no_length=True)
        real_check = dl._check_reserve

        def shrinking(part, held):
            real_check(part, held)
            free["bytes"] -= dl.CHUNK  # each block written takes its size off the free space
        monkeypatch.setattr(dl, "_check_reserve", shrinking)
        with pytest.raises(DownloadError, match=rf"cannot write .*f.bin.part \(stopped after {dl.CHUNK} bytes: the "
                                                r"server gave no size, and the disk's free space fell to \d+ bytes, "
                                                r"under the 1024 MiB iqabench leaves free\); free space on that disk"
                                                rf".* the partial file \({dl.CHUNK} bytes\) is kept"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", **FAST)
        assert len(server.requests) == 1  # not retried: the disk, not the network
        free["bytes"] = 10 * dl.RESERVE
        fetch(server.url("f.bin"), tmp_path / "f.bin", **FAST)
    assert (tmp_path / "f.bin").read_bytes() == body and server.requests[-1] == ("f.bin", f"bytes={dl.CHUNK}-")


def _tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_temp_files_of_a_killed_write_are_removed_before_the_download(tmp_path, kadid_zip, capfd):
    # data/raw/NAME is a `persist: true` output: a temp file a SIGKILLed write left there was cached by DVC with it.
    with serve({"kadid10k.zip": kadid_zip}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"))
        download_spec(spec, tmp_path / "a" / "kadid10k", lock_path=tmp_path / "a" / "kadid10k.lock.json", **FAST)
        dest, checksums = tmp_path / "b" / "kadid10k", tmp_path / "b"
        (dest / ".archives").mkdir(parents=True)
        orphans = [dest / "..iqabench-download.json.abcd1234.tmp", dest / ".archives" / ".kadid10k.zip.q_9z8y7x.tmp",
                   checksums / ".kadid10k.lock.json.0a1b2c3d.tmp"]
        other = checksums / ".live.lock.json.0a1b2c3d.tmp"  # another dataset's download may be writing it now
        for path in [*orphans, other]:
            path.write_text("{")
        capfd.readouterr()
        download_spec(spec, dest, lock_path=checksums / "kadid10k.lock.json", **FAST)
    assert _tree(dest) == _tree(tmp_path / "a" / "kadid10k")  # the bytes, and the hash, of an undisturbed download
    assert not any(p.exists() for p in orphans) and other.exists()
    warned = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: removed")]
    assert warned == [f"warning: removed 1 temporary file(s) that an interrupted write left in {folder}: {path.name}"
                      for folder, path in zip([dest, dest / ".archives", checksums], orphans)]
