"""Hostile servers and destinations, against the local server: a resume that cannot corrupt the file, a
clear one-line answer, and nothing pinned that was not verified.

Covers what test_download_faults.py does not: a server that ignores Range over a stale partial file, or
answers it with a 206 from byte 0, a 416 for a complete partial file (trusted only as far as the checksum),
a Content-Length longer than the body with no retries left, a web page before anything is pinned, a partial
file that cannot be opened, and a plain (non-archive) file or a checksum that cannot be written at the end.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading

import pytest

import fakeserver
from fakeserver import Behaviour, serve
from iqabench.datasets import DatasetError, Remote, get_spec
from iqabench.datasets import transfer as dl
from iqabench.datasets.archives import ExtractWriteError
from iqabench.datasets.download import ChecksumError, DownloadError, download_spec, fetch

FAST = dict(backoff=0.01, timeout=5, progress=False)
BODY = bytes(range(256)) * 64
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def kadid_zip(tmp_path) -> bytes:
    return fakeserver.kadid_zip(tmp_path / "src")


def kadid_spec(url: str, *extra: Remote):
    return dataclasses.replace(get_spec("kadid10k"), remotes=(Remote(url, "kadid10k.zip"), *extra),
                               n_images=fakeserver.KADID_LAYOUT_IMAGES)


def test_a_server_that_ignores_range_restarts_the_part_instead_of_appending(tmp_path):
    # The stale part is not a prefix of BODY: appended to, it would give a file that is neither.
    (tmp_path / "f.bin.part").write_bytes(b"stale" * 40)
    with serve({"f.bin": BODY}) as server:
        server.behaviour["f.bin"] = Behaviour(honour_range=False)
        fetch(server.url("f.bin"), tmp_path / "f.bin", sha256=SHA, **FAST)
    assert server.requests == [("f.bin", "bytes=200-")]
    assert (tmp_path / "f.bin").read_bytes() == BODY and not (tmp_path / "f.bin.part").exists()


def test_a_416_for_a_complete_part_finishes_without_a_transfer(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(BODY)
    with serve({"f.bin": BODY}) as server:
        fetch(server.url("f.bin"), tmp_path / "f.bin", sha256=SHA, **FAST)
    assert server.requests == [("f.bin", f"bytes={len(BODY)}-")]
    assert (tmp_path / "f.bin").read_bytes() == BODY


def test_a_416_for_a_part_of_the_right_size_but_wrong_bytes_is_quarantined_not_trusted(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(bytes(len(BODY)))
    with serve({"f.bin": BODY}) as server:
        with pytest.raises(ChecksumError, match=rf"f.bin: SHA-256 of f.bin is [0-9a-f]{{64}}, expected {SHA}. The "
                                                r"file is kept as .*f.bin.corrupt and not used"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", sha256=SHA, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin.corrupt"]


def test_a_body_shorter_than_its_content_length_is_a_resumable_one_line_error(tmp_path):
    with serve({"f.bin": BODY}) as server:
        server.behaviour["f.bin"] = Behaviour(length_delta=500)  # promises 500 bytes more, then closes
        with pytest.raises(DownloadError) as caught:
            fetch(server.url("f.bin"), tmp_path / "f.bin", retries=0, **FAST)
        message = str(caught.value)
        assert "\n" not in message and "_Incomplete" not in message  # no internal class name
        assert (f"f.bin: download of {server.url('f.bin')} failed after 1 attempt(s) (the connection closed early: "
                f"{len(BODY)} of {len(BODY) + 500} bytes); the partial file ") in message
        assert message.endswith(f"f.bin.part ({len(BODY)} bytes) is kept and the next run resumes it")
        assert (tmp_path / "f.bin.part").read_bytes() == BODY
        fetch(server.url("f.bin"), tmp_path / "f.bin", **FAST)  # the next run: a 416 naming the true size
    assert server.requests[-1] == ("f.bin", f"bytes={len(BODY)}-") and (tmp_path / "f.bin").read_bytes() == BODY


def test_a_web_page_instead_of_the_archive_pins_nothing_and_keeps_the_part(tmp_path, kadid_zip):
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    (dest / ".archives").mkdir(parents=True)
    (dest / ".archives" / "kadid10k.zip.part").write_bytes(kadid_zip[:1000])
    with serve({"kadid10k.zip": b"<html>Sign in to continue</html>"}) as server:
        server.behaviour["kadid10k.zip"] = Behaviour(content_type="TEXT/HTML; charset=UTF-8", honour_range=False)
        with pytest.raises(DownloadError, match=r"^kadid10k: kadid10k.zip: http://\S+ answered with a web page "
                                                r"\(Content-Type text/html\), not the file.*kept. Check the dataset "
                                                r"homepage$"):
            download_spec(kadid_spec(server.url("kadid10k.zip")), dest, lock_path=lock, retries=3, **FAST)
    assert len(server.requests) == 1 and not lock.exists() and not (dest / ".iqabench-download.json").exists()
    assert (dest / ".archives" / "kadid10k.zip.part").read_bytes() == kadid_zip[:1000]


def test_a_part_that_cannot_be_opened_says_so_and_is_not_retried(tmp_path, monkeypatch):
    def denied(path, mode):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(dl, "open", denied, raising=False)
    with serve({"f.bin": BODY}) as server:
        with pytest.raises(DownloadError, match=r"^f.bin: cannot write .*f.bin.part \(Permission denied\); free space "
                                                r"on that disk \(or make the folder writable\), then run the download "
                                                r"again: the partial file \(0 bytes\) is kept"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", retries=3, **FAST)
    assert len(server.requests) == 1 and not (tmp_path / "f.bin").exists()


def test_a_plain_file_that_cannot_be_placed_is_one_line_and_kept(tmp_path, kadid_zip):
    # LIVE's .mat and CSIQ's .xlsx are plain files copied out of .archives; a failed copy was an OSError traceback.
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    (dest / "notes.txt").mkdir(parents=True)  # a folder in its place: the copy cannot land
    with serve({"kadid10k.zip": kadid_zip, "notes.txt": b"read me"}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"), Remote(server.url("notes.txt"), "notes.txt", extract=False))
        with pytest.raises(ExtractWriteError, match=r"^kadid10k: the download holds a file notes.txt, but "
                                                    r".*notes.txt is a folder; move that folder aside \(nothing was "
                                                    r"replaced\), then run again: the archive is kept and not "
                                                    r"downloaded again$"):
            download_spec(spec, dest, lock_path=lock, **FAST)
        assert not (dest / "dmos.csv").exists() and not (dest / "kadid10k").exists()  # all or nothing
        assert not lock.exists() and (dest / ".archives" / "notes.txt").read_bytes() == b"read me"
        (dest / "notes.txt").rmdir()
        download_spec(spec, dest, lock_path=lock, **FAST)
    assert (dest / "notes.txt").read_bytes() == b"read me"
    assert sorted(name for name, _ in server.requests) == ["kadid10k.zip", "notes.txt"]  # nothing fetched twice


def test_a_lock_file_that_cannot_be_written_is_one_line_and_the_download_is_kept(tmp_path, kadid_zip):
    dest, blocker = tmp_path / "raw" / "kadid10k", tmp_path / "checksums"
    blocker.write_text("")  # a file where the lock's folder should be
    lock = blocker / "kadid10k.lock.json"
    with serve({"kadid10k.zip": kadid_zip}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"))
        with pytest.raises(DownloadError, match=r"^kadid10k: cannot record the SHA-256 of kadid10k.zip in "
                                                r".*checksums/kadid10k.lock.json \(.*\); make that folder writable, "
                                                r"then run the download again: the download is kept and not "
                                                r"downloaded again$"):
            download_spec(spec, dest, lock_path=lock, **FAST)
        assert (dest / ".archives" / "kadid10k.zip").read_bytes() == kadid_zip
        blocker.unlink()
        download_spec(spec, dest, lock_path=lock, **FAST)
    assert len(server.requests) == 1
    assert json.loads(lock.read_text())["kadid10k/kadid10k.zip"]["sha256"] == hashlib.sha256(kadid_zip).hexdigest()


class _WrongOffsetHandler(http.server.BaseHTTPRequestHandler):
    """Answers any Range request with 206 and the whole file from byte 0 (a broken proxy or cache)."""
    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        ranged = self.headers.get("Range")
        self.seen.append(ranged)
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(BODY)))
        if ranged:
            self.send_header("Content-Range", f"bytes 0-{len(BODY) - 1}/{len(BODY)}")
        self.end_headers()
        self.wfile.write(BODY)


def test_a_206_from_the_wrong_offset_restarts_the_part_instead_of_failing_every_run(tmp_path):
    # It was retried and reported "the next run resumes it", and every next run failed the same way.
    (tmp_path / "f.bin.part").write_bytes(BODY[:100])
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WrongOffsetHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        fetch(f"http://127.0.0.1:{httpd.server_address[1]}/f.bin", tmp_path / "f.bin", sha256=SHA, retries=0, **FAST)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert _WrongOffsetHandler.seen == ["bytes=100-", None]
    assert (tmp_path / "f.bin").read_bytes() == BODY


def _self_signed_context(folder) -> "ssl.SSLContext":
    """A server context with a certificate nobody vouches for, as a dataset host's lapsed one is."""
    import datetime
    import ssl

    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


def test_a_certificate_that_does_not_verify_is_one_line_not_retried_and_never_skipped(tmp_path):
    with serve({"kadid10k.zip": BODY}, tls=_self_signed_context(tmp_path)) as server:
        url = server.url("kadid10k.zip")
        with pytest.raises(DownloadError) as err:
            fetch(url, tmp_path / "kadid10k.zip", retries=3, **FAST)
        assert server.requests == []  # the handshake failed: no request was made, so none was retried over
    message = str(err.value)
    assert "TLS certificate of 127.0.0.1 did not verify" in message and "retrying cannot help" in message
    assert f"curl -O {url.replace('https://', 'http://')}" in message and "datasets add NAME --from" in message
    assert not (tmp_path / "kadid10k.zip").exists()


def test_a_short_200_to_a_resume_keeps_the_partial_file(tmp_path):
    # A resume answered "200 Service temporarily unavailable" truncated the good partial file, and a plain file
    # was then placed and pinned as the download.
    target = tmp_path / "kadid10k.zip"
    part = target.with_name("kadid10k.zip.part")
    part.write_bytes(BODY[:5000])
    with serve({"kadid10k.zip": b"Service temporarily unavailable"}) as server:
        server.behaviour["kadid10k.zip"] = Behaviour(honour_range=False)
        with pytest.raises(DownloadError, match=r"whole body of 31 bytes \(status 200\), shorter than what is"):
            fetch(server.url("kadid10k.zip"), target, retries=1, **FAST)
    assert part.read_bytes() == BODY[:5000] and not target.exists()


def test_a_content_length_that_is_no_number_is_read_as_unknown():
    assert dl._content_length({"Content-Length": "abc"}) is None
    assert dl._content_length({"Content-Length": "-5"}) is None
    assert dl._content_length({"Content-Length": " 42 "}) == 42


@pytest.mark.parametrize("lock, message", [
    ("[]", "holds a JSON list, not a mapping of file names"),
    ('{"kadid10k/kadid10k.zip": "abc"}', "entry 'kadid10k/kadid10k.zip' is \"abc\", not a pin"),
    ('{"kadid10k/kadid10k.zip": {"sha256": 5}}', "is {\"sha256\": 5}, not a pin")])
def test_a_hand_edited_lock_file_is_named_before_any_download(tmp_path, lock, message):
    lock_path = tmp_path / "kadid10k.lock.json"
    lock_path.write_text(lock)
    with serve({"kadid10k.zip": BODY}) as server:
        with pytest.raises(DatasetError) as err:
            download_spec(kadid_spec(server.url("kadid10k.zip")), tmp_path / "kadid10k", lock_path=lock_path, **FAST)
        assert server.requests == []
    assert message in str(err.value) and "git checkout" in str(err.value)


def test_a_second_download_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    dest = tmp_path / "kadid10k"
    (dest / ".archives").mkdir(parents=True)
    with open(dest / ".archives" / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first download
        with pytest.raises(DatasetError, match="another download into .*kadid10k is running"):
            download_spec(kadid_spec("http://127.0.0.1:9/kadid10k.zip"), dest,
                          lock_path=tmp_path / "lock.json", **FAST)


def test_a_body_longer_than_the_known_size_stops_after_one_block(tmp_path):
    # 64 MiB were written before a file of known size 1000 was refused: a server could fill the disk.
    body = bytes(8 * dl.CHUNK)
    with serve({"big.bin": body}) as server:
        with pytest.raises(ChecksumError, match="expected 1000"):
            fetch(server.url("big.bin"), tmp_path / "big.bin", size=1000, retries=0, **FAST)
    assert (tmp_path / "big.bin.corrupt").stat().st_size <= 1000 + dl.CHUNK
