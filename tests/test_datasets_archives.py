"""RAR extraction (TID2013 ships as .rar) and all-or-nothing extraction for every format."""
from __future__ import annotations

import dataclasses
import hashlib
import zipfile
from pathlib import Path

import pytest

from fakeserver import serve, write_image
from iqabench.datasets import DatasetError, Remote, build_from_spec, get_spec
from iqabench.datasets import archives
from iqabench.datasets.archives import UnsafeArchiveError, extract, load_libarchive, rar_extractor
from iqabench.datasets.download import download_spec
from rarbuilder import (HOST_UNIX, MARKER, UNIX_SYMLINK_MODE, end_block, file_block, folder_members,
                        main_header, rar4)

needs_libarchive = pytest.mark.skipif(load_libarchive()[0] is None,
                                      reason=f"libarchive cannot be loaded: {load_libarchive()[1]}")


def tid2013_folder(root: Path) -> Path:
    """TID2013 as tid2013.rar unpacks: mos_with_names.txt next to distorted_images/ and
    reference_images/, names in the release's mixed case (see test_datasets_parsers_synthetic)."""
    write_image(root / "distorted_images" / "i01_01_1.bmp", seed=1)
    write_image(root / "distorted_images" / "I01_11_1.BMP", seed=2)
    write_image(root / "reference_images" / "I01.BMP", seed=3)
    (root / "mos_with_names.txt").write_text("5.51429 I01_01_1.bmp\n5.91429 I01_11_1.BMP\n")
    return root


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@needs_libarchive
def test_tid2013_rar_downloads_extracts_and_parses(tmp_path):
    source = tid2013_folder(tmp_path / "src")
    archive = rar4(folder_members(source))
    with serve({"tid2013.rar": archive}) as server:
        spec = dataclasses.replace(get_spec("tid2013"), n_images=2, remotes=(
            Remote(server.url("tid2013.rar"), "tid2013.rar", sha256=hashlib.sha256(archive).hexdigest()),))
        dest = download_spec(spec, tmp_path / "raw" / "tid2013", backoff=0.01, timeout=5, progress=False)
    assert {k: v for k, v in files_under(dest).items() if not k.startswith(".")} == files_under(source)
    frame = build_from_spec(spec, dest)
    assert sorted(frame["raw_score"]) == [5.51429, 5.91429]
    assert set(frame["distortion"]) == {"additive gaussian noise", "jpeg2000"}
    assert all(Path(p).is_file() for p in frame["image"]) and all(Path(r).is_file() for r in frame["reference"])


@needs_libarchive
@pytest.mark.parametrize("member, host_os", [("../evil.txt", 2), ("/abs/evil.txt", HOST_UNIX),
                                             ("a/../../evil.txt", HOST_UNIX)])
def test_rar_member_outside_the_target_is_refused_before_anything_is_written(tmp_path, member, host_os):
    # A harmless member first: it must not be written either.
    archive = tmp_path / "bad.rar"
    archive.write_bytes(MARKER + main_header() + file_block("ok.txt", b"fine")
                        + file_block(member, b"evil", host_os=host_os) + end_block())
    target = tmp_path / "deep" / "out"
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        extract(archive, target)
    assert list(target.iterdir()) == []
    assert [p for p in tmp_path.rglob("evil.txt")] == [] and not Path("/abs/evil.txt").exists()


@needs_libarchive
def test_rar_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.rar"
    archive.write_bytes(MARKER + main_header() + file_block("ok.txt", b"fine")
                        + file_block("images/x.bmp", b"/etc/passwd", host_os=HOST_UNIX, attr=UNIX_SYMLINK_MODE)
                        + end_block())
    with pytest.raises(UnsafeArchiveError, match="'images/x.bmp' is a symbolic link"):
        extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@needs_libarchive
def test_corrupt_rar_header_is_a_clear_error_and_writes_nothing(tmp_path):
    data = bytearray(rar4([("first.txt", b"a" * 50), ("second.txt", b"b" * 50)], folder_entries=False))
    data[data.index(b"second.txt")] ^= 0x01  # the name is covered by the header CRC
    archive = tmp_path / "tid2013.rar"
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"tid2013.rar: cannot read the archive .*delete it and download again"):
        extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_no_rar_extractor_says_what_to_install_before_downloading(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "load_libarchive", lambda: (None, "the Python package libarchive-c is not installed"))
    monkeypatch.setattr(archives.shutil, "which", lambda tool: None)
    with pytest.raises(DatasetError, match=r"pip install libarchive-c.*apt-get install unrar"):
        extract(tmp_path / "tid2013.rar", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with serve({"tid2013.rar": b"never fetched"}) as server:
        spec = dataclasses.replace(get_spec("tid2013"), remotes=(Remote(server.url("tid2013.rar"), "tid2013.rar"),))
        with pytest.raises(DatasetError, match="libarchive-c is not installed, and no tool is on PATH"):
            download_spec(spec, tmp_path / "raw", progress=False)
    assert server.requests == []


def test_without_libarchive_the_first_tool_on_path_is_used(monkeypatch):
    monkeypatch.setattr(archives, "load_libarchive", lambda: (None, "not installed"))
    monkeypatch.setattr(archives.shutil, "which", lambda tool: f"/opt/bin/{tool}" if tool in ("7z", "bsdtar") else None)
    assert rar_extractor() == "/opt/bin/7z"


def test_archives_sharing_a_folder_merge_and_a_refused_one_leaves_it_untouched(tmp_path):
    # CSIQ unpacks dst_imgs.zip and src_imgs.zip into the same dataset folder.
    for name, members in {"dst_imgs.zip": {"dst_imgs/awgn/1600.AWGN.1.png": b"d"},
                          "src_imgs.zip": {"src_imgs/1600.png": b"s", "dst_imgs/blur/1600.BLUR.1.png": b"b"},
                          "bad.zip": {"dst_imgs/new.png": b"n", "../escape.png": b"e"}}.items():
        with zipfile.ZipFile(tmp_path / name, "w") as zf:
            for member, data in members.items():
                zf.writestr(member, data)
    target = tmp_path / "csiq"
    extract(tmp_path / "dst_imgs.zip", target)
    extract(tmp_path / "src_imgs.zip", target)
    expected = {"dst_imgs/awgn/1600.AWGN.1.png": b"d", "dst_imgs/blur/1600.BLUR.1.png": b"b",
                "src_imgs/1600.png": b"s"}
    assert files_under(target) == expected
    with pytest.raises(UnsafeArchiveError):
        extract(tmp_path / "bad.zip", target)
    assert files_under(target) == expected and sorted(p.name for p in target.iterdir()) == ["dst_imgs", "src_imgs"]


def test_rar_builder_writes_the_technote_fixed_blocks():
    # The RAR 4 note's fixed bytes: a main header with no flags, and the end-of-archive block.
    assert MARKER + main_header() == bytes.fromhex("526172211a0700" "cf907300000d00000000000000")
    assert end_block() == bytes.fromhex("c43d7b00400700")
