"""A checksum is pinned only after the archive verified and extracted; a self-pinned hash is explained."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

import fakeserver
from fakeserver import KADID_LAYOUT_IMAGES, serve
from iqabench.datasets import Remote, get_spec
from iqabench.datasets.download import ChecksumError, download_spec
from iqabench.datasets.scorefiles import DatasetError

FAST = dict(backoff=0.01, timeout=5, progress=False)


@pytest.fixture
def kadid_zip(tmp_path) -> bytes:
    return fakeserver.kadid_zip(tmp_path / "src")


def _spec(url: str):
    return dataclasses.replace(get_spec("kadid10k"), remotes=(Remote(url, "kadid10k.zip"),),
                               n_images=KADID_LAYOUT_IMAGES)


def test_bad_first_download_is_not_pinned_and_the_good_one_is(tmp_path, kadid_zip):
    lock, dest = tmp_path / "kadid10k.lock.json", tmp_path / "raw" / "kadid10k"
    broken = b"<html>503: try again later</html>"  # served with status 200, as misconfigured mirrors do
    with serve({"kadid10k.zip": broken}) as server:
        spec = _spec(server.url("kadid10k.zip"))
        with pytest.raises(ChecksumError, match=r"Nothing was pinned; the file is kept as .*kadid10k.zip.corrupt"):
            download_spec(spec, dest, lock_path=lock, **FAST)
        assert not lock.exists() and not (dest / ".iqabench-download.json").exists()
        server.files["kadid10k.zip"] = kadid_zip  # "delete it and download again"
        download_spec(spec, dest, lock_path=lock, **FAST)
    assert json.loads(lock.read_text())["kadid10k/kadid10k.zip"]["sha256"] == hashlib.sha256(kadid_zip).hexdigest()
    assert (dest / "kadid10k" / "dmos.csv").is_file()


def test_mismatch_with_a_self_pinned_hash_says_the_pin_may_be_wrong(tmp_path, kadid_zip):
    lock = tmp_path / "kadid10k.lock.json"
    lock.write_text(json.dumps({"kadid10k/kadid10k.zip": {"url": "x", "size": 1, "sha256": "0" * 64}}))
    with serve({"kadid10k.zip": kadid_zip}) as server:
        with pytest.raises(ChecksumError) as err:
            download_spec(_spec(server.url("kadid10k.zip")), tmp_path / "raw" / "kadid10k", lock_path=lock, **FAST)
    message = str(err.value)
    assert "pin itself may be wrong" in message and "'kadid10k/kadid10k.zip'" in message and str(lock) in message
    assert json.loads(lock.read_text())["kadid10k/kadid10k.zip"]["sha256"] == "0" * 64  # never rewritten silently
    assert not (tmp_path / "raw" / "kadid10k" / "kadid10k").exists()


def test_published_hash_mismatch_does_not_blame_the_pin(tmp_path, kadid_zip):
    with serve({"kadid10k.zip": kadid_zip}) as server:
        spec = dataclasses.replace(get_spec("kadid10k"), remotes=(
            Remote(server.url("kadid10k.zip"), "kadid10k.zip", sha256="1" * 64),))
        with pytest.raises(ChecksumError) as err:
            download_spec(spec, tmp_path / "raw" / "kadid10k", lock_path=tmp_path / "l.json", **FAST)
    assert "pin itself may be wrong" not in str(err.value) and not (tmp_path / "l.json").exists()


def test_a_lock_that_pins_one_file_twice_is_refused_before_any_transfer(tmp_path, kadid_zip):
    # json keeps the last of two equal keys: the pin a reviewer reads in `git diff` would not be the one checked.
    lock = tmp_path / "kadid10k.lock.json"
    good = {"url": "x", "size": 1, "sha256": hashlib.sha256(kadid_zip).hexdigest()}
    lock.write_text('{"kadid10k/kadid10k.zip": %s, "kadid10k/kadid10k.zip": %s}'
                    % (json.dumps({**good, "sha256": "0" * 64}), json.dumps(good)))
    with serve({"kadid10k.zip": kadid_zip}) as server:
        with pytest.raises(DatasetError, match=r"the key 'kadid10k/kadid10k.zip' appears twice in one object") as err:
            download_spec(_spec(server.url("kadid10k.zip")), tmp_path / "raw" / "kadid10k", lock_path=lock, **FAST)
        assert server.requests == []
    assert str(err.value).startswith(f"{lock}: ")
