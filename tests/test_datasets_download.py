"""Downloads against a local server: resume, retry, checksums, pinning, safe extraction."""
from __future__ import annotations

import dataclasses
import hashlib
import io as pyio
import json
import tarfile
import zipfile

import pytest

import fakeserver
from fakeserver import KADID_LAYOUT_IMAGES, Behaviour, serve
from iqabench.datasets import DatasetError, Remote, build_from_spec, get_spec
from iqabench.datasets.archives import UnsafeArchiveError, extract
from iqabench.datasets.download import ChecksumError, DownloadError, download_spec, fetch

FAST = dict(backoff=0.01, timeout=5, progress=False)


@pytest.fixture
def kadid_zip(tmp_path) -> bytes:
    return fakeserver.kadid_zip(tmp_path / "src")


def zipped(members: dict[str, str | bytes]) -> bytes:
    """A zip archive of ``members`` (name -> content), built in memory."""
    buffer = pyio.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def kadid_spec(url: str, sha256=None):
    return dataclasses.replace(get_spec("kadid10k"), n_images=KADID_LAYOUT_IMAGES,
                               remotes=(Remote(url, "kadid10k.zip", sha256=sha256),))


def test_interrupted_download_resumes_with_range_and_parses(tmp_path, kadid_zip):
    with serve({"kadid10k.zip": kadid_zip}) as server:
        server.behaviour["kadid10k.zip"] = Behaviour(cut_after=len(kadid_zip) // 3, cuts_left=1)
        spec = kadid_spec(server.url("kadid10k.zip"), hashlib.sha256(kadid_zip).hexdigest())
        dest = download_spec(spec, tmp_path / "raw" / "kadid10k", **FAST)
    ranges = [r for name, r in server.requests if name == "kadid10k.zip"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(kadid_zip) // 3}-"
    frame = build_from_spec(spec, dest)
    assert len(frame) == 3 and frame["raw_score"].max() == pytest.approx(4.57)
    assert not (dest / ".archives").exists()


def test_partial_file_is_kept_when_retries_run_out_and_next_run_resumes(tmp_path, kadid_zip):
    dest = tmp_path / "raw" / "kadid10k"
    with serve({"kadid10k.zip": kadid_zip}) as server:
        server.behaviour["kadid10k.zip"] = Behaviour(cut_after=1000, cuts_left=1)
        spec = kadid_spec(server.url("kadid10k.zip"))
        with pytest.raises(DownloadError, match=r"partial file .*kadid10k.zip.part \(1000 bytes\) is kept"):
            download_spec(spec, dest, retries=0, **FAST)
        assert (dest / ".archives" / "kadid10k.zip.part").stat().st_size == 1000
        download_spec(spec, dest, retries=0, **FAST)
    assert server.requests[-1] == ("kadid10k.zip", "bytes=1000-")
    assert (dest / "kadid10k" / "dmos.csv").is_file()


def test_server_errors_are_retried_and_404_is_not(tmp_path, kadid_zip):
    with serve({"kadid10k.zip": kadid_zip}) as server:
        server.behaviour["kadid10k.zip"] = Behaviour(fail_status=500, fails_left=2)
        download_spec(kadid_spec(server.url("kadid10k.zip")), tmp_path / "a", **FAST)
        assert len(server.requests) == 3
        with pytest.raises(DownloadError, match=r"HTTP 404 for .*/missing.zip"):
            download_spec(kadid_spec(server.url("missing.zip")), tmp_path / "b", **FAST)
        assert sum(1 for name, _ in server.requests if name == "missing.zip") == 1


def test_corrupted_byte_fails_checksum_and_is_quarantined(tmp_path, kadid_zip):
    corrupted = bytearray(kadid_zip)
    corrupted[len(corrupted) // 2] ^= 0xFF
    with serve({"kadid10k.zip": bytes(corrupted)}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"), hashlib.sha256(kadid_zip).hexdigest())
        dest = tmp_path / "raw" / "kadid10k"
        with pytest.raises(ChecksumError, match=r"SHA-256 of kadid10k.zip is [0-9a-f]{64}, expected"):
            download_spec(spec, dest, **FAST)
    assert (dest / ".archives" / "kadid10k.zip.corrupt").stat().st_size == len(kadid_zip)
    assert not (dest / ".archives" / "kadid10k.zip").exists()
    assert not (dest / "kadid10k").exists()


def test_first_download_pins_checksum_and_later_change_is_caught(tmp_path, kadid_zip):
    lock = tmp_path / "checksums.lock.json"
    with serve({"kadid10k.zip": kadid_zip}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"))
        download_spec(spec, tmp_path / "first", lock_path=lock, **FAST)
        pinned = json.loads(lock.read_text())["kadid10k/kadid10k.zip"]
        assert pinned["sha256"] == hashlib.sha256(kadid_zip).hexdigest() and pinned["size"] == len(kadid_zip)
        server.files["kadid10k.zip"] = kadid_zip[:-10] + b"0123456789"
        with pytest.raises(ChecksumError):
            download_spec(spec, tmp_path / "second", lock_path=lock, **FAST)


def test_completed_download_is_not_fetched_again(tmp_path, kadid_zip):
    with serve({"kadid10k.zip": kadid_zip}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"))
        download_spec(spec, tmp_path / "d", **FAST)
        download_spec(spec, tmp_path / "d", **FAST)
    assert len(server.requests) == 1


def test_truncated_response_without_resume_support_never_counts_as_complete(tmp_path):
    body = bytes(range(256)) * 64
    with serve({"f.bin": body}) as server:
        server.behaviour["f.bin"] = Behaviour(cut_after=100, cuts_left=5, honour_range=False)
        with pytest.raises(DownloadError, match="failed after 3 attempt"):
            fetch(server.url("f.bin"), tmp_path / "f.bin", retries=2, **FAST)
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.part").stat().st_size == 100


def test_no_public_url_points_to_add(tmp_path):
    with pytest.raises(DatasetError, match=r"datasets add spaq --from PATH"):
        download_spec(get_spec("spaq"), tmp_path)


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt"])
def test_path_traversal_zip_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(zipped({"ok.txt": "fine", member: "evil"}))
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("images/link.png")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract(archive, tmp_path / "out")


def test_traversal_archive_served_over_http_is_refused(tmp_path):
    with serve({"kadid10k.zip": zipped({"../../outside.txt": "evil"})}) as server:
        with pytest.raises(UnsafeArchiveError):
            download_spec(kadid_spec(server.url("kadid10k.zip")), tmp_path / "raw" / "kadid10k", **FAST)
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "raw" / "outside.txt").exists()


def test_an_archive_refused_as_unsafe_is_set_aside_and_the_next_run_fetches_it_again(tmp_path, kadid_zip):
    # It was kept as .archives/kadid10k.zip and reused by every later run: refused for good, with no word why.
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    with serve({"kadid10k.zip": zipped({"kadid10k/../../x": "evil"})}) as server:
        with pytest.raises(UnsafeArchiveError, match=r"outside the target folder.*Nothing was pinned; the file is "
                                                     r"kept as .*kadid10k.zip.corrupt and not used"):
            download_spec(kadid_spec(server.url("kadid10k.zip")), dest, lock_path=lock, **FAST)
        server.files["kadid10k.zip"] = kadid_zip  # the server fixed
        download_spec(kadid_spec(server.url("kadid10k.zip")), dest, lock_path=lock, **FAST)
    assert len(server.requests) == 2 and (dest / ".archives" / "kadid10k.zip.corrupt").is_file()
    assert len(build_from_spec(get_spec("kadid10k"), dest)) == 3


def test_a_valid_archive_of_something_else_is_not_pinned_and_the_real_one_is(tmp_path, kadid_zip):
    # A server that zips a login page (or a moved file): the zip extracts cleanly, but holds no dmos.csv.
    # It was once pinned and marked done, so the real archive was refused afterwards.
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    with serve({"kadid10k.zip": zipped({"readme.txt": "please log in"})}) as server:
        with pytest.raises(ChecksumError, match=r"kadid10k: the download holds no score file 'dmos.csv' under .* so it "
                                                r"is not kadid10k as published and nothing was pinned; .* kept as "
                                                r".*kadid10k.zip.corrupt"):
            download_spec(kadid_spec(server.url("kadid10k.zip")), dest, lock_path=lock, **FAST)
        assert not lock.exists() and not (dest / ".iqabench-download.json").exists()
        assert (dest / ".archives" / "kadid10k.zip.corrupt").is_file()
        # Its files never reached the dataset folder (they were left there, beside the real set's, once).
        assert sorted(p.name for p in dest.iterdir()) == [".archives"]
        assert sorted(p.name for p in (dest / ".archives").iterdir()) == ["kadid10k.zip.corrupt"]
        server.files["kadid10k.zip"] = kadid_zip
        download_spec(kadid_spec(server.url("kadid10k.zip")), dest, lock_path=lock, **FAST)
    assert json.loads(lock.read_text())["kadid10k/kadid10k.zip"]["sha256"] == hashlib.sha256(kadid_zip).hexdigest()
    assert len(build_from_spec(get_spec("kadid10k"), dest)) == 3


def test_a_file_as_the_destination_is_named_before_any_transfer(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(DatasetError, match=r"kadid10k: cannot download into .*afile \(it is a file, not a folder\); "
                                           r"give a folder you can write to"):
        download_spec(kadid_spec("http://127.0.0.1:9/never-asked"), tmp_path / "afile", **FAST)


def _images_zip_and_scores(tmp_path) -> tuple[bytes, bytes]:
    """KADID-10k's files split as some sets publish them (SPAQ, KonIQ): an images archive and a score file."""
    fakeserver.kadid_layout(tmp_path / "src")
    images = zipped({f"images/{path.name}": path.read_bytes()
                     for path in sorted((tmp_path / "src" / "kadid10k" / "images").iterdir())})
    return images, (tmp_path / "src" / "kadid10k" / "dmos.csv").read_bytes()


def test_a_score_file_from_a_second_remote_completes_the_layout_and_a_wrong_one_leaves_nothing(tmp_path):
    # The layout check spans both remotes, and a download that is not the set moves nothing into the folder.
    images, scores = _images_zip_and_scores(tmp_path)
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    with serve({"images.zip": images, "dmos.csv": scores}) as server:
        spec = dataclasses.replace(get_spec("kadid10k"), n_images=KADID_LAYOUT_IMAGES, remotes=(
            Remote(server.url("images.zip"), "images.zip"), Remote(server.url("dmos.csv"), "dmos.csv", extract=False)))
        wrong = dataclasses.replace(spec, score_file="scores/dmos.csv")  # not where the plain file lands
        with pytest.raises(ChecksumError, match="holds no score file 'scores/dmos.csv'"):
            download_spec(wrong, dest, lock_path=lock, **FAST)
        assert sorted(p.name for p in dest.iterdir()) == [".archives"] and not lock.exists()
        for name in ("images.zip", "dmos.csv"):  # the refused files are kept aside; fetched again here
            (dest / ".archives" / f"{name}.corrupt").unlink()
        download_spec(spec, dest, lock_path=lock, **FAST)
    assert (dest / "dmos.csv").read_bytes() == scores and len(build_from_spec(spec, dest)) == KADID_LAYOUT_IMAGES
    assert sorted(json.loads(lock.read_text())) == ["kadid10k/dmos.csv", "kadid10k/images.zip"]
    assert not (dest / ".archives").exists()


def test_a_remote_done_by_an_earlier_run_counts_towards_the_layout_and_the_count(tmp_path, kadid_zip):
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    with serve({"kadid10k.zip": kadid_zip, "notes.txt": b"notes", "more.txt": b"more"}) as server:
        spec = kadid_spec(server.url("kadid10k.zip"))
        download_spec(spec, dest, lock_path=lock, **FAST)
        notes = Remote(server.url("notes.txt"), "notes.txt", extract=False)
        download_spec(dataclasses.replace(spec, remotes=(*spec.remotes, notes)), dest, lock_path=lock, **FAST)
        assert (dest / "notes.txt").read_bytes() == b"notes"
        assert [name for name, _ in server.requests] == ["kadid10k.zip", "notes.txt"]  # the zip: done before
        more = dataclasses.replace(spec, n_images=4, remotes=(*spec.remotes, notes,
                                                                Remote(server.url("more.txt"), "more.txt", extract=False)))
        with pytest.raises(DatasetError, match="the download holds 3 rated image"):  # counted where it lies
            download_spec(more, dest, lock_path=lock, **FAST)
    assert "kadid10k/more.txt" not in json.loads(lock.read_text())


def test_a_download_whose_score_file_lists_absent_images_is_set_aside(tmp_path):
    fakeserver.kadid_layout(tmp_path / "src")
    (tmp_path / "src" / "kadid10k" / "images" / "I01_02_05.png").unlink()
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    with serve({"kadid10k.zip": fakeserver.zip_folder(tmp_path / "src")}) as server:
        with pytest.raises(ChecksumError, match=r"(?s)kadid10k: 1 of 3 listed image\(s\) are missing.*So the "
                                                r"download is not kadid10k as published and nothing was pinned; .* "
                                                r"kept as .*kadid10k.zip.corrupt"):
            download_spec(kadid_spec(server.url("kadid10k.zip")), dest, lock_path=lock, **FAST)
    assert sorted(p.name for p in dest.iterdir()) == [".archives"] and not lock.exists()


def test_a_download_with_fewer_images_than_published_is_not_ready_unless_partial(tmp_path, kadid_zip):
    # 3 of KADID-10k's 10,125 images were called "ready" and pinned.
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    with serve({"kadid10k.zip": kadid_zip}) as server:
        spec = dataclasses.replace(kadid_spec(server.url("kadid10k.zip")), n_images=10125)
        with pytest.raises(DatasetError, match=r"^kadid10k: the download holds 3 rated image\(s\); the published "
                                               r"dataset has 10125, so it is a cut or other release and nothing was "
                                               r"pinned .* run the download again with --partial$"):
            download_spec(spec, dest, lock_path=lock, **FAST)
        assert sorted(p.name for p in dest.iterdir()) == [".archives"] and not lock.exists()
        download_spec(spec, dest, lock_path=lock, allow_partial=True, **FAST)
    assert len(server.requests) == 1 and len(build_from_spec(spec, dest)) == 3 and lock.exists()
