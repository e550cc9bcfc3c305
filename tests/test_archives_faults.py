"""Archives built to break extraction, found by a fault-injection audit: each refused before any byte lands.

Before: a duplicated member was extracted silently (last copy wins), a file-and-folder clash and an encrypted
or AES/Deflate64 zip were tracebacks (NotADirectoryError, RuntimeError, NotImplementedError), a zip bomb was
written out in full, a tar cut at a member boundary extracted as a smaller dataset, and a full disk while
extracting renamed a good archive ``.corrupt``.
"""
from __future__ import annotations

import dataclasses
import errno
import io
import json
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

import fakeserver
from fakeserver import serve
from iqabench.datasets import DatasetError, Remote, get_spec
from iqabench.datasets import archives
from iqabench.datasets.archives import ExtractWriteError, KeptArchiveError, UnsafeArchiveError, extract
from iqabench.datasets.download import download_spec

FAST = dict(backoff=0.01, timeout=5, progress=False)


def make_zip(path: Path, members) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def patch_zip(path: Path, *, flag: int = 0, method: int | None = None) -> Path:
    """Set general-purpose flag bits (bit 0: encrypted) or the compression method in both headers of the
    first member (zipfile's writer clears the encryption bit, so it cannot build one)."""
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    for flags_at in (6, central + 8):
        data[flags_at:flags_at + 2] = struct.pack("<H", struct.unpack_from("<H", data, flags_at)[0] | flag)
        if method is not None:
            data[flags_at + 2:flags_at + 4] = struct.pack("<H", method)
    path.write_bytes(bytes(data))
    return path


def written(target: Path) -> list[str]:
    return sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) if target.exists() else []


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_a_member_named_twice_is_refused(tmp_path, maker):
    archive = maker(tmp_path / ("a.zip" if maker is make_zip else "a.tar"),
                    [("dmos.csv", b"real"), ("images/x.png", b"x"), ("./dmos.csv", b"forged")])
    with pytest.raises(UnsafeArchiveError, match=r"member './dmos.csv' appears twice, so which copy is meant is "
                                                  "unknown; refusing"):
        extract(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_a_name_that_is_a_file_and_a_folder_is_a_clear_error(tmp_path, maker):
    archive = maker(tmp_path / ("a.zip" if maker is make_zip else "a.tar"), [("images", b"1"), ("images/x.png", b"2")])
    with pytest.raises(DatasetError, match=r"member 'images' is both a file and a folder; the archive is corrupt"):
        extract(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_a_zip_bomb_is_refused_before_writing(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "bomb.zip", [("dmos.csv", b"a,b\n"), ("zeros.bin", bytes(5 << 20))])
    monkeypatch.setattr(archives, "RATIO_FROM_BYTES", 1 << 20)  # the real floor is a GiB
    with pytest.raises(UnsafeArchiveError, match=rf"bomb.zip: declares {(5 << 20) + 4} bytes unpacked from "
                                                 rf"{archive.stat().st_size} \(\d+x its size, over 100x\); refused as "
                                                 "a likely zip bomb"):
        extract(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_an_archive_larger_than_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "a.zip", [("dmos.csv", b"x" * 5000)])
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda path: type("U", (), {"free": 100})())
    with pytest.raises(ExtractWriteError, match=r"a.zip unpacks to 5000 bytes and only 100 are free under .*out; free "
                                                "space there"):
        extract(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []


@pytest.mark.parametrize("patch, why", [(dict(flag=0x1), "is encrypted \\(password-protected\\)"),
                                        (dict(method=99), "uses compression method 99, which Python's zipfile cannot "
                                                          "read")])
def test_an_encrypted_or_unreadable_zip_says_to_extract_it_by_hand(tmp_path, patch, why):
    archive = patch_zip(make_zip(tmp_path / "a.zip", [("dmos.csv", b"secret")]), **patch)
    with pytest.raises(KeptArchiveError, match=rf"a.zip: member 'dmos.csv' {why}. Extract the archive yourself .* "
                                               r"`iqabench datasets add NAME --from PATH`"):
        extract(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_a_plain_tar_cut_at_a_member_boundary_is_truncated_not_smaller(tmp_path):
    whole = make_tar(tmp_path / "whole.tar", [("a.txt", b"a" * 600), ("b.txt", b"b" * 600)]).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[:512 + 1024])  # a's header and data: b and the end-of-archive blocks are gone
    with pytest.raises(DatasetError, match=r"cut.tar: ends without tar's end-of-archive marker, after 1 member\(s\); "
                                           "it is truncated"):
        extract(cut, tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_a_full_disk_while_extracting_keeps_the_archive_and_pins_nothing(tmp_path, monkeypatch):
    zipped = fakeserver.kadid_zip(tmp_path / "src")
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "lock.json"

    def full(source, target):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(archives, "_move_into", full)
    with serve({"kadid10k.zip": zipped}) as server:
        spec = dataclasses.replace(get_spec("kadid10k"), remotes=(Remote(server.url("kadid10k.zip"), "kadid10k.zip"),),
                                   n_images=fakeserver.KADID_LAYOUT_IMAGES)
        with pytest.raises(ExtractWriteError, match=r"kadid10k.zip: extracting into .*kadid10k/.archives/.extracted failed \(No space left "
                                                    r"on device\); free space there .* the archive is kept"):
            download_spec(spec, dest, lock_path=lock, **FAST)
        assert written(dest) == [".archives", ".archives/kadid10k.zip"]  # not renamed .corrupt, nothing pinned
        assert not lock.exists()
        monkeypatch.undo()
        download_spec(spec, dest, lock_path=lock, **FAST)
    assert len(server.requests) == 1  # the kept archive is used, not downloaded again
    assert json.loads(lock.read_text())["kadid10k/kadid10k.zip"]["size"] == len(zipped)
