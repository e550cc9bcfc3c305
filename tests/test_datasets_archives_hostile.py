"""Archives built to escape, mislead or exhaust extraction: each refused with one line naming the archive and
the member, and nothing left in the target (members are unpacked in a staging folder, moved at the end).

Covers what test_datasets_archives.py and test_archives_faults.py do not: tar traversal, backslash and NUL
names, links written through, special files in tar, zip and from an external RAR tool, damaged compressed
data in every format (it was a zlib/lzma traceback, or a "free space there" misdiagnosis for bzip2), a
gzip/bzip2/xz stream whose check fails (it extracted: tarfile stops reading before the stream's CRC), a tar
bomb, a zip member larger than it declares, a full disk halfway through writing, and Python without
tarfile's data filter.
"""
from __future__ import annotations

import bz2
import dataclasses
import errno
import gzip
import io
import lzma
import random
import stat
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
from iqabench.datasets.download import ChecksumError, download_spec

FAST = dict(backoff=0.01, timeout=5, progress=False)
NOISE = random.Random(0).randbytes(3000) * 4  # compresses a little: damage lands in real compressed data


def zip_bytes(members, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as zf:
        for member in members:
            zf.writestr(*member) if isinstance(member, tuple) else zf.writestr(member, b"")
    return buffer.getvalue()


def tar_bytes(members, fmt=tarfile.GNU_FORMAT) -> bytes:
    """``members``: TarInfo (data-less) or (name, data) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def tar_info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def put(tmp_path: Path, name: str, data: bytes) -> Path:
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def assert_nothing_written(tmp_path: Path, target: Path) -> None:
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil-iqabench.txt").exists()


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil-iqabench.txt", "a/../../evil.txt", "..\\evil.txt",
                                    "a\\..\\..\\evil.txt", "C:/evil.txt"])
def test_a_member_outside_the_target_is_refused_in_zip_and_tar(tmp_path, kind, member):
    members = [("ok.txt", b"fine"), (member, b"evil")]
    archive = put(tmp_path, f"bad.{kind}", zip_bytes(members) if kind == "zip" else tar_bytes(members))
    with pytest.raises(UnsafeArchiveError, match=rf"^bad.{kind}: member {member!r} would be written outside the "
                                                 r"target folder".replace("\\", "\\\\")):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("kind", ["zip", "tar"])
@pytest.mark.parametrize("member", [".iqabench-download.json", ".iqabench-partial.json", ".archives/kadid10k.zip",
                                    "./.archives/x"])
def test_a_member_named_as_the_downloads_own_record_is_refused(tmp_path, kind, member):
    # A planted "done" marker or kept archive would be trusted by the next run.
    members = [("ok.txt", b"fine"), (member, b"{}")]
    archive = put(tmp_path, f"bad.{kind}", zip_bytes(members) if kind == "zip" else tar_bytes(members))
    with pytest.raises(UnsafeArchiveError, match=rf"^bad.{kind}: member .* would overwrite iqabench's own record"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("members, culprit, what", [
    ([tar_info("d", tarfile.SYMTYPE, "/tmp"), ("d/evil-iqabench.txt", b"x")], "d", "symbolic"),
    ([tar_info("images/x.png", tarfile.LNKTYPE, "/etc/passwd")], "images/x.png", "hard"),
    ([("ok.txt", b"x"), tar_info("h", tarfile.LNKTYPE, "ok.txt")], "h", "hard"),  # even inside the target
])
def test_tar_links_and_members_written_through_them_are_refused(tmp_path, members, culprit, what):
    archive = put(tmp_path, "links.tar.gz", gzip.compress(tar_bytes(members)))
    with pytest.raises(UnsafeArchiveError, match=rf"^links.tar.gz: member '{culprit}' is a {what} link; links are "
                                                 "refused"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_a_zip_symlink_and_a_member_written_through_it_are_refused(tmp_path):
    link = zipfile.ZipInfo("d")
    link.create_system, link.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
    archive = put(tmp_path, "link.zip", zip_bytes([("ok.txt", b"x"), (link, "/tmp"), ("d/evil-iqabench.txt", b"x")]))
    with pytest.raises(UnsafeArchiveError, match=r"^link.zip: member 'd' is a symbolic link"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_tar_device_and_fifo_members_are_refused(tmp_path, kind):
    archive = put(tmp_path, "dev.tar", tar_bytes([("ok.txt", b"x"), tar_info("dev/null0", kind)]))
    with pytest.raises(UnsafeArchiveError, match=r"^dev.tar: member 'dev/null0' is a device or special file"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("mode", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK])
def test_zip_members_marked_as_special_files_are_refused(tmp_path, mode):
    # zipfile would write them as plain files; a dataset never holds one, so the archive is not what it claims.
    info = zipfile.ZipInfo("fifo")
    info.create_system, info.external_attr = 3, (mode | 0o644) << 16
    archive = put(tmp_path, "special.zip", zip_bytes([("ok.txt", b"x"), (info, b"data")]))
    with pytest.raises(UnsafeArchiveError, match=r"^special.zip: member 'fifo' is a device or special file"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_a_tar_name_with_a_nul_is_refused_not_a_traceback(tmp_path):
    # A PAX header carries the name whole (NUL included); it was a ValueError ("embedded null byte") traceback.
    archive = put(tmp_path, "nul.tar", tar_bytes([("ok.txt", b"x"), ("dmos.csv\x00é.sh", b"x")],
                                                 fmt=tarfile.PAX_FORMAT))
    with pytest.raises(UnsafeArchiveError, match=r"^nul.tar: member 'dmos.csv\\x00é.sh' has a NUL byte in its name; "
                                                 "refusing"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_a_zip_name_with_a_nul_is_refused_under_its_whole_name(tmp_path):
    # zipfile cuts the name at the NUL ('dmos.csv'), so the member would have landed under another name.
    data = zip_bytes([("ok.txt", b"x"), ("dmos.csvX.exe", b"x")]).replace(b"dmos.csvX.exe", b"dmos.csv\x00.exe")
    archive = put(tmp_path, "nul.zip", data)
    with pytest.raises(UnsafeArchiveError, match=r"^nul.zip: member 'dmos.csv\\x00.exe' has a NUL byte in its name"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def damage(data: bytes, at: int, length: int = 64) -> bytes:
    out = bytearray(data)
    for i in range(at, min(at + length, len(out))):
        out[i] ^= 0x5A
    return bytes(out)


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_damaged_compressed_data_in_a_zip_is_corrupt_not_a_traceback_or_a_full_disk(tmp_path, compression):
    data = zip_bytes([("ok.txt", b"x"), ("a.bin", NOISE)], compression)
    archive = put(tmp_path, "a.zip", damage(data, data.index(b"a.bin") + 40))
    with pytest.raises(DatasetError, match=r"^a.zip: (cannot read the archive|member 'a.bin' fails its CRC check).*"
                                           r"corrupt.*delete it and download again$") as caught:
        extract(archive, tmp_path / "out")
    assert not isinstance(caught.value, KeptArchiveError)  # not "free space there": the archive is bad
    assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("ext, compress", [("tar.gz", gzip.compress), ("tar.bz2", bz2.compress),
                                           ("tar.xz", lzma.compress)])
@pytest.mark.parametrize("where", ["middle", "check", "cut"])
def test_damaged_or_cut_compressed_tar_is_corrupt_and_writes_nothing(tmp_path, ext, compress, where):
    packed = compress(tar_bytes([("a.bin", NOISE), ("b.bin", NOISE[::-1])]))
    # 'check': the stream's own CRC at its end; tarfile stops at the end-of-archive blocks and never read it.
    bad = {"middle": damage(packed, len(packed) // 2), "check": damage(packed, len(packed) - 6, 2),
           "cut": packed[: len(packed) * 3 // 4]}[where]
    archive = put(tmp_path, f"a.{ext}", bad)
    with pytest.raises(DatasetError, match=rf"^a.{ext}: cannot read the archive \(.*\); it is corrupt or truncated, "
                                           "delete it and download again$") as caught:
        extract(archive, tmp_path / "out")
    assert not isinstance(caught.value, KeptArchiveError)
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_a_truncated_zip_is_corrupt(tmp_path):
    data = zip_bytes([("ok.txt", b"x"), ("a.bin", NOISE)])
    archive = put(tmp_path, "a.zip", data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"^a.zip: cannot read the archive \(File is not a zip file\); it is "
                                           "corrupt or truncated"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_a_tar_bomb_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "RATIO_FROM_BYTES", 1 << 20)  # the real floor is a GiB
    archive = put(tmp_path, "bomb.tar.gz", gzip.compress(tar_bytes([("dmos.csv", b"a,b\n"), ("z", bytes(4 << 20))])))
    with pytest.raises(UnsafeArchiveError, match=rf"^bomb.tar.gz: declares {(4 << 20) + 4} bytes unpacked from "
                                                 rf"{archive.stat().st_size} \(\d+x its size, over 100x\); refused as "
                                                 "a likely zip bomb"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_a_zip_member_larger_than_it_declares_is_cut_at_its_size_and_refused(tmp_path):
    # The declared size passes the bomb check; zipfile reads no further than it, and the CRC then fails.
    data = bytearray(zip_bytes([("ok.txt", b"x"), ("zeros.bin", bytes(8 << 20))]))
    for start, size_at in ((data.rindex(b"PK\x03\x04"), 22), (data.rindex(b"PK\x01\x02"), 24)):  # zeros.bin's
        struct.pack_into("<I", data, start + size_at, 10)
    archive = put(tmp_path, "liar.zip", bytes(data))
    with pytest.raises(DatasetError, match=r"^liar.zip: (member 'zeros.bin' fails its CRC check|cannot read the "
                                           r"archive \(Bad CRC-32 for file 'zeros.bin'\)).*corrupt"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   PermissionError(errno.EACCES, "Permission denied")])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_a_write_failure_halfway_leaves_the_target_as_it_was(tmp_path, monkeypatch, error, kind):
    target = tmp_path / "out"
    (target / "kept").mkdir(parents=True)
    (target / "kept" / "old.txt").write_text("old")
    members = [("kept/new.txt", b"new"), ("images/a.png", b"a"), ("images/b.png", b"b")]
    archive = put(tmp_path, f"a.{kind}", zip_bytes(members) if kind == "zip" else tar_bytes(members))
    real_open, opened = open, []

    def failing_open(path, mode="r", *args, **kwargs):  # the disk fills on the second file written
        if "w" in mode and ".extracting" in str(path):
            opened.append(path)
            if len(opened) == 2:
                raise error
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr("builtins.open", failing_open)
    monkeypatch.setattr(tarfile, "bltn_open", failing_open)
    with pytest.raises(ExtractWriteError, match=rf"^{archive}: extracting into {target} failed \({error.strerror}\); "
                                                r"free space there \(or make it writable\), then run again: the "
                                                "archive is kept and not downloaded again$"):
        extract(archive, target)
    monkeypatch.undo()
    assert opened and sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["kept", "kept/old.txt"]


def test_tar_extraction_without_the_data_filter_still_normalises_modes(tmp_path, monkeypatch):
    # Python 3.10 before 3.10.12 (requires-python is >=3.10) has no tarfile.data_filter; a folder stored with mode
    # 000 must still be readable, and no set-uid bit survives.
    monkeypatch.delattr(tarfile, "data_filter")
    real = tarfile.TarFile.extractall

    def extractall_310(self, path=".", members=None, *, numeric_owner=False, **kwargs):
        assert not kwargs, "Python 3.10.11 has no filter argument"
        return real(self, path, members, numeric_owner=numeric_owner, filter="fully_trusted")
    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall_310)
    folder = tar_info("d", tarfile.DIRTYPE)
    folder.mode = 0
    tool = tarfile.TarInfo("d/tool")
    tool.size, tool.mode = 1, 0o4777
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        tf.addfile(folder)
        tf.addfile(tool, io.BytesIO(b"x"))
    extract(put(tmp_path, "a.tar", buffer.getvalue()), tmp_path / "out")
    assert (tmp_path / "out" / "d" / "tool").read_bytes() == b"x"
    assert not (tmp_path / "out" / "d" / "tool").stat().st_mode & (stat.S_ISUID | stat.S_IWOTH)
    assert stat.S_IMODE((tmp_path / "out" / "d").stat().st_mode) & 0o700 == 0o700


def test_a_damaged_unpinned_download_is_quarantined_not_a_traceback_for_ever(tmp_path):
    # First download, no published hash: a zlib error escaped as a traceback and the archive, left in .archives,
    # was reused (and failed again) on every later run.
    src = tmp_path / "src"
    fakeserver.kadid_layout(src)
    (src / "kadid10k" / "noise.bin").write_bytes(NOISE)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
    data = buffer.getvalue()
    bad = damage(data, data.index(b"kadid10k/noise.bin") + 40)
    dest, lock = tmp_path / "raw" / "kadid10k", tmp_path / "kadid10k.lock.json"
    with serve({"kadid10k.zip": bad}) as server:
        spec = dataclasses.replace(get_spec("kadid10k"), remotes=(Remote(server.url("kadid10k.zip"), "kadid10k.zip"),))
        with pytest.raises(ChecksumError, match=r"^kadid10k.zip: (cannot read the archive \(.*\)|member "
                                                r"'kadid10k/noise.bin' fails its CRC check); .*delete it and download "
                                                r"again. Nothing was pinned; the file is kept as "
                                                r".*kadid10k.zip.corrupt"):
            download_spec(spec, dest, lock_path=lock, **FAST)
    assert not lock.exists() and sorted(p.name for p in dest.rglob("*")) == [".archives", "kadid10k.zip.corrupt"]


def test_a_special_file_made_by_an_external_rar_tool_voids_the_archive(tmp_path, monkeypatch):
    # Without libarchive a tool extracts, and its listing does not say what a member is: staging is checked after.
    tool = tmp_path / "bin" / "bsdtar"
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\nif [ "$1" = "-tvf" ]; then printf "%s\\n%s\\n" "-rw-r--r--  0 0 0 3 Jan  1  2013 ok.txt" '
                    '"prw-r--r--  0 0 0 0 Jan  1  2013 pipe"; exit 0; fi\n'
                    'echo x > "$4/ok.txt" && mkfifo "$4/pipe"\n')
    tool.chmod(0o755)
    monkeypatch.setattr(archives, "load_libarchive", lambda: (None, "not installed"))
    monkeypatch.setattr(archives.shutil, "which", lambda name: str(tool) if name == "bsdtar" else None)
    archive = put(tmp_path, "tid2013.rar", b"Rar!\x1a\x07\x00")
    with pytest.raises(UnsafeArchiveError, match=r"^tid2013.rar: member 'pipe' is a device or special file"):
        extract(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_an_archive_file_over_a_users_folder_replaces_nothing(tmp_path):
    # A member `notes` (a file) deleted the folder `notes/` of a --dest that held the user's own files.
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("notes", b"from the archive")
        zf.writestr("dmos.csv", b"x")
    target = tmp_path / "dest"
    (target / "notes").mkdir(parents=True)
    (target / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(ExtractWriteError, match=r"holds a file notes, but .*notes is a folder; move that folder"):
        extract(archive, target)
    assert (target / "notes" / "mine.txt").read_text() == "keep me" and not (target / "dmos.csv").exists()


def test_a_member_no_file_system_can_create_is_the_archives_fault_not_the_disks(tmp_path):
    # A name over 255 bytes was "extracting failed (File name too long); free space there", archive kept, reused.
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x" * 300 + ".png", b"x")
    with pytest.raises(DatasetError, match="cannot read the archive") as err:
        extract(archive, tmp_path / "dest")
    assert not isinstance(err.value, KeptArchiveError)
