"""A local HTTP server with Range support and scripted failures, plus fake dataset layouts.

Tests serve archives they build in each dataset's published layout; the server
can cut the connection after N bytes, answer with an error status a number of
times, or ignore Range, so resume and retry paths run for real.
"""
from __future__ import annotations

import contextlib
import http.server
import io
import re
import ssl
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Behaviour:
    cut_after: int | None = None    # close the connection after this many body bytes ...
    cuts_left: int = 0              # ... on this many requests
    fail_status: int | None = None  # answer with this status ...
    fails_left: int = 0             # ... on this many requests
    honour_range: bool = True
    redirect_to: str | None = None  # answer 302 with this Location (a name on this server, or a full URL)
    content_type: str | None = None  # a Content-Type header to send (none by default)
    length_delta: int = 0           # added to the true Content-Length: a server that lies about the size
    refuse_range: bool = False      # answer any Range request with a bare 416 (no Content-Range)
    etag: str | None = None         # send this ETag and honour If-Range against it (RFC 9110 13.1.5) ...
    ignore_if_range: bool = False   # ... or send it and resume whatever If-Range says
    no_length: bool = False         # send no Content-Length: the body ends when the connection closes


@dataclass
class FakeServer:
    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    if_ranges: list[str | None] = field(default_factory=list)  # each request's If-Range header
    base_url: str = ""

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


def _handler(server_state: FakeServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            name = self.path.lstrip("/")
            server_state.requests.append((name, self.headers.get("Range")))
            server_state.if_ranges.append(self.headers.get("If-Range"))
            rule = server_state.behaviour.get(name, Behaviour())
            if rule.fail_status and rule.fails_left > 0:
                rule.fails_left -= 1
                self._status_only(rule.fail_status)
                return
            if rule.redirect_to is not None:
                self.send_response(302)
                self.send_header("Location", rule.redirect_to if "://" in rule.redirect_to
                                 else server_state.url(rule.redirect_to))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if rule.refuse_range and self.headers.get("Range"):
                self._status_only(416)
                return
            if name not in server_state.files:
                self._status_only(404)
                return
            body = server_state.files[name]
            start, status = 0, 200
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if_range = self.headers.get("If-Range")
            changed = rule.etag is not None and if_range is not None and if_range != rule.etag
            if match and rule.honour_range and not (changed and not rule.ignore_if_range):
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            chunk = body[start:]
            self.send_response(status)
            if rule.no_length:
                self.close_connection = True
                self.send_header("Connection", "close")
            else:
                self.send_header("Content-Length", str(len(chunk) + rule.length_delta))
            self.send_header("Accept-Ranges", "bytes")
            if rule.etag:
                self.send_header("ETag", rule.etag)
            if rule.content_type:
                self.send_header("Content-Type", rule.content_type)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            if rule.cut_after is not None and rule.cuts_left > 0:
                rule.cuts_left -= 1
                self.wfile.write(chunk[:rule.cut_after])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            self.wfile.write(chunk)
            if rule.length_delta > 0:  # promised more than it sent: the client sees the connection close early
                self.close_connection = True

        def _status_only(self, status: int):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextlib.contextmanager
def serve(files: dict[str, bytes] | None = None, tls: "ssl.SSLContext | None" = None):
    """The server on 127.0.0.1; with ``tls`` (a server context) it speaks https."""
    state = FakeServer(files=dict(files or {}))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    state.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---- fake dataset layouts -------------------------------------------------------------------

# The default is at least images.MIN_SIDE a side: registration refuses smaller images. Without a seed, the
# pixels follow the file name: two images are byte-identical copies (one content to a manifest) only if asked.
def write_image(path: Path, seed: int | None = None, mode: str = "RGB", size: tuple[int, int] = (40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = zlib.crc32(path.name.encode()) if seed is None else seed
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


KADID_LAYOUT_IMAGES = 3  # what kadid_layout writes: a fake spec's n_images


def kadid_layout(root: Path) -> dict[str, float]:
    """KADID-10k as in kadid10k.zip: kadid10k/dmos.csv and kadid10k/images/."""
    base = root / "kadid10k"
    scores = {"I01_01_01.png": 4.57, "I01_02_05.png": 1.23, "I02_25_03.png": 3.1}
    lines = ["dist_img,ref_img,dmos,var"]
    for i, (name, mos) in enumerate(scores.items()):
        write_image(base / "images" / name, seed=i)
        lines.append(f"{name},{name[:3]}.png,{mos},0.5")
    for ref in ("I01.png", "I02.png"):
        write_image(base / "images" / ref, seed=9)
    base.mkdir(parents=True, exist_ok=True)
    (base / "dmos.csv").write_text("\n".join(lines) + "\n")
    return scores


def zip_folder(folder: Path) -> bytes:
    """A zip of every file under ``folder``, names relative to it, in sorted order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def kadid_zip(folder: Path) -> bytes:
    """kadid10k.zip as published, built from :func:`kadid_layout` written into ``folder``."""
    kadid_layout(folder)
    return zip_folder(folder)
