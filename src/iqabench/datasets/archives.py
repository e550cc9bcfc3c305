"""Safe extraction of zip, tar(.gz/.bz2/.xz) and rar archives.

Every member is checked before anything is written: absolute paths, ``..``
components, drive letters, symbolic and hard links and device files are
refused, so an archive cannot write outside the target folder (zip-slip).
RAR needs an external tool; which one is found (or which to install) is
decided up front, before a long download starts.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from .scorefiles import DatasetError

RAR_TOOLS = ("unrar", "7z", "bsdtar")


class UnsafeArchiveError(DatasetError):
    """An archive member that would land outside the target folder."""


def archive_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")):
        return "tar"
    if name.endswith(".rar"):
        return "rar"
    return None


def rar_tool() -> str:
    """The first available RAR extractor, or an error that says what to install."""
    for tool in RAR_TOOLS:
        found = shutil.which(tool)
        if found:
            return found
    raise DatasetError("extracting .rar archives needs one of: unrar, 7z, bsdtar. Install one, e.g. "
                       "`apt-get install unrar` (or p7zip-full, or libarchive-tools), "
                       "`brew install libarchive`, then run the command again")


def check_member(name: str, archive: Path) -> PurePosixPath:
    """Refuse names that are absolute or climb out of the target; return the relative path."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if not clean or clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or ".." in path.parts:
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} would be written outside the target "
                                 f"folder; refusing to extract this archive (it may be malicious or corrupt)")
    return path


def _check_zip(archive: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for info in members:
            check_member(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is a symbolic link; "
                                         f"links are refused because they can point outside the target")
        bad = zf.testzip()
        if bad is not None:
            raise DatasetError(f"{archive.name}: member {bad!r} fails its CRC check; the archive is corrupt, "
                               f"delete it and download again")
    return members


def _check_tar(archive: Path) -> None:
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            check_member(member.name, archive)
            if member.issym() or member.islnk():
                raise UnsafeArchiveError(f"{archive.name}: member {member.name!r} is a "
                                         f"{'symbolic' if member.issym() else 'hard'} link; links are refused")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(f"{archive.name}: member {member.name!r} is a device or special file")


def _rar_members(archive: Path, tool: str) -> list[str]:
    name = Path(tool).name
    if name == "unrar":
        cmd = [tool, "lb", str(archive)]
    elif name == "7z":
        cmd = [tool, "l", "-slt", "-ba", str(archive)]
    else:
        cmd = [tool, "-tf", str(archive)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise DatasetError(f"{archive.name}: {name} cannot list the archive: {out.stderr.strip()[:300]}")
    lines = out.stdout.splitlines()
    if name == "7z":
        return [line[len("Path = "):] for line in lines if line.startswith("Path = ")]
    return [line for line in lines if line.strip()]


def _extract_rar(archive: Path, target: Path) -> None:
    tool = rar_tool()
    for member in _rar_members(archive, tool):
        check_member(member, archive)
    name = Path(tool).name
    if name == "unrar":
        cmd = [tool, "x", "-o+", "-y", str(archive), str(target) + os.sep]
    elif name == "7z":
        cmd = [tool, "x", "-y", f"-o{target}", str(archive)]
    else:
        cmd = [tool, "-xf", str(archive), "-C", str(target)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise DatasetError(f"{archive.name}: {name} failed to extract: {out.stderr.strip()[:300]}")
    # Listing formats differ between tools; a link that slipped through is removed here.
    for path in target.rglob("*"):
        if path.is_symlink():
            path.unlink()
            raise UnsafeArchiveError(f"{archive.name}: member {path.relative_to(target)} is a link; refused")


def extract(archive: Path, target: Path) -> None:
    """Extract ``archive`` into ``target`` after checking every member."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    kind = archive_format(archive)
    try:
        if kind == "zip":
            _check_zip(archive)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(target)
        elif kind == "tar":
            _check_tar(archive)
            with tarfile.open(archive) as tf:
                tf.extractall(target, filter="data")
        elif kind == "rar":
            _extract_rar(archive, target)
        else:
            raise DatasetError(f"{archive.name}: not a zip, tar or rar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
        raise DatasetError(f"{archive.name}: cannot read the archive ({err}); it is corrupt or truncated, "
                           f"delete it and download again") from err
