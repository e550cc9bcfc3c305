"""A resumed download never splices two versions of a file: the Range request carries If-Range (the ETag of the
first answer), so a file that changed on the server since comes back whole. Without it, the old prefix and the new
file's tail were joined and, where no checksum is published, accepted as the download."""
from __future__ import annotations

import pytest

from fakeserver import Behaviour, serve
from iqabench.datasets.download import DownloadError, fetch

FAST = dict(backoff=0.01, timeout=5, progress=False)
OLD, NEW = bytes(range(256)) * 64, bytes(reversed(range(256))) * 64  # the same size: only the bytes tell
CUT = 5000


def _interrupted(tmp_path, server) -> None:
    """A first download of OLD (ETag "v1") that closes after CUT bytes: a part and its validator are kept."""
    server.behaviour["f.bin"] = Behaviour(etag='"v1"', cut_after=CUT, cuts_left=1)
    with pytest.raises(DownloadError, match="the partial file .* is kept and the next run resumes it"):
        fetch(server.url("f.bin"), tmp_path / "f.bin", retries=0, **FAST)
    assert (tmp_path / "f.bin.part").stat().st_size == CUT
    assert (tmp_path / "f.bin.part.validator").read_text() == '"v1"'


@pytest.mark.parametrize("ignores_if_range", [False, True])
def test_a_file_that_changed_on_the_server_is_fetched_whole_not_spliced(tmp_path, ignores_if_range):
    with serve({"f.bin": OLD}) as server:
        _interrupted(tmp_path, server)
        server.files["f.bin"] = NEW
        server.behaviour["f.bin"] = Behaviour(etag='"v2"', ignore_if_range=ignores_if_range)
        fetch(server.url("f.bin"), tmp_path / "f.bin", retries=0, **FAST)
    assert (tmp_path / "f.bin").read_bytes() == NEW
    assert server.requests[1] == ("f.bin", f"bytes={CUT}-") and server.if_ranges[1] == '"v1"'
    # A server that honours If-Range answers 200 with all of it; one that does not sends a 206 naming "v2",
    # which is refused, and the file is asked for again from the start.
    assert [r for _, r in server.requests[2:]] == ([None] if ignores_if_range else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no part, no validator left


def test_an_unchanged_file_resumes_from_where_it_stopped(tmp_path):
    with serve({"f.bin": OLD}) as server:
        _interrupted(tmp_path, server)
        server.behaviour["f.bin"] = Behaviour(etag='"v1"')
        fetch(server.url("f.bin"), tmp_path / "f.bin", retries=0, **FAST)
    assert (tmp_path / "f.bin").read_bytes() == OLD
    assert server.requests[1:] == [("f.bin", f"bytes={CUT}-")] and server.if_ranges[1] == '"v1"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


@pytest.mark.parametrize("etag", ['W/"weak"', None])
def test_without_a_strong_validator_the_resume_is_a_plain_range_request(tmp_path, etag):
    # A weak ETag may not be used in If-Range; with none, the size and SHA-256 checks stay the guard.
    with serve({"f.bin": OLD}) as server:
        server.behaviour["f.bin"] = Behaviour(etag=etag, cut_after=CUT, cuts_left=1)
        fetch(server.url("f.bin"), tmp_path / "f.bin", retries=1, **FAST)
    assert (tmp_path / "f.bin").read_bytes() == OLD
    assert server.requests[1] == ("f.bin", f"bytes={CUT}-") and server.if_ranges == [None, None]
