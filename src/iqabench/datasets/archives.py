"""Safe, all-or-nothing extraction of zip, tar(.gz/.bz2/.xz) and rar archives.

Every member is checked before anything is written: absolute paths, ``..``
components, drive letters, NUL bytes, symbolic and hard links and device files
are refused, so an archive cannot write outside the target folder (zip-slip).
A compressed tar's gzip/bzip2/xz check is read too (tarfile stops before it),
and damaged compressed data is reported as a corrupt archive, not a disk error.
Members are unpacked into a staging folder inside the target and moved into
place only once the whole archive has been read, so a refused, corrupt or
interrupted archive leaves the target as it was. A member named twice, a name
that is both a file and a folder, and an archive that declares far more bytes
than it holds (a zip bomb) or than the disk has free are refused before any
byte is written.

RAR is read through libarchive (the ``libarchive-c`` binding over the system
library) when it loads, else through an external tool (unrar, 7z, bsdtar);
which one is used, or what to install, is decided up front, before a long
download starts.
"""
from __future__ import annotations

import errno
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from types import ModuleType

from .scorefiles import DatasetError

RAR_TOOLS = ("unrar", "7z", "7zz", "bsdtar")  # 7zz: Debian 12's 7zip package
LIBARCHIVE = "libarchive"
STAGING_SUFFIX = ".extracting"


# Errors of this machine (the disk, the folder's rights), not of the archive: the archive is kept for a rerun.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EMFILE,
                  errno.ENFILE}


class UnsafeArchiveError(DatasetError):
    """An archive member that would land outside the target folder, or an archive built to harm (a bomb)."""


class KeptArchiveError(DatasetError):
    """An archive that is not corrupt but cannot be extracted here (encrypted, disk full): keep it, don't
    download it again."""


class ExtractWriteError(KeptArchiveError):
    """The target cannot take the extracted files (disk full, not writable)."""


# A zip bomb declares far more than it holds; image datasets barely compress (JPEG, PNG: ~1x; BMP: ~3x).
MAX_RATIO = 100
RATIO_FROM_BYTES = 1 << 30  # below a GiB unpacked the ratio is not checked: a CSV of zeros is no bomb
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def archive_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz")):
        return "tar"
    if name.endswith(".rar"):
        return "rar"
    return None


def load_libarchive() -> tuple[ModuleType | None, str]:
    """The ``libarchive`` module, or None and why it did not load."""
    try:
        import libarchive
    except ImportError as err:
        return None, f"the Python package libarchive-c is not installed ({err})"
    except (OSError, AttributeError, TypeError) as err:
        # The binding loads the C library at import; a missing or too old one fails here.
        return None, f"libarchive-c is installed but the system libarchive does not load ({err})"
    return libarchive, ""


def rar_extractor() -> str:
    """``"libarchive"`` or the path of the first RAR tool found; else an error saying what to install."""
    module, why_not = load_libarchive()
    if module is not None:
        return LIBARCHIVE
    for tool in RAR_TOOLS:
        found = shutil.which(tool)
        if found:
            return found
    raise DatasetError(
        f"extracting .rar archives needs libarchive or one of the tools {', '.join(RAR_TOOLS)}, and none is "
        f"available: {why_not}, and no tool is on PATH. Install either the Python package and its system "
        f"library (`pip install libarchive-c` plus `apt-get install libarchive13` or `brew install "
        f"libarchive`), or a tool (`apt-get install unrar`, 7zip, p7zip-full or libarchive-tools), then run the "
        f"command again")


# The download's own bookkeeping in a dataset folder: kept archives, and the marker that says it is complete. A
# member of that name would plant a file the next run trusts (a "done" marker, an archive it reuses).
ARCHIVE_DIR = ".archives"
DONE_MARKER = ".iqabench-download.json"
PARTIAL_MARKER = ".iqabench-partial.json"  # a download accepted with --partial: how many images it holds


def check_member(name: str, archive: Path) -> PurePosixPath:
    """Refuse names that are absolute, climb out of the target or hold a NUL; return the relative path."""
    if "\0" in name:  # no file system takes one: tarfile dies with a ValueError, zipfile cuts the name there
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} has a NUL byte in its name; refusing to extract "
                                 "this archive (it may be malicious or corrupt)")
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if not clean or clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or ".." in path.parts:
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} would be written outside the target "
                                 f"folder; refusing to extract this archive (it may be malicious or corrupt)")
    if path.parts and path.parts[0] in (ARCHIVE_DIR, DONE_MARKER, PARTIAL_MARKER):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} would overwrite iqabench's own record of the "
                                 f"download ({path.parts[0]}); refusing to extract this archive (it may be "
                                 "malicious or corrupt)")
    return path


def check_listing(archive: Path, entries: list[tuple[str, bool, int]], target: Path) -> None:
    """Refuse, before anything is written, ``(name, is_folder, size)`` entries that name a file twice (which copy
    lands is the extractor's whim), name a file and a folder alike (extraction dies halfway), or unpack to more
    than the disk has free or far more than the archive holds."""
    files, folders, total = set(), set(), 0
    for name, is_dir, size in entries:
        key = check_member(name, archive).as_posix()  # 'a/./b' and 'a//b' are 'a/b'
        if is_dir:
            folders.add(key)
            continue
        if key in files:
            raise UnsafeArchiveError(f"{archive.name}: member {name!r} appears twice, so which copy is meant is "
                                     "unknown; refusing to extract this archive (it may be malicious or corrupt). If you trust "
                                     "the file, extract it yourself and register the folder with `iqabench datasets add "
                                     "NAME --from PATH`")
        files.add(key)
        total += max(size, 0)
    clash = sorted(files & (folders | {p.as_posix() for f in files for p in PurePosixPath(f).parents}))
    if clash:
        raise DatasetError(f"{archive.name}: member {clash[0]!r} is both a file and a folder; the archive is "
                           "corrupt, delete it and download again")
    packed = archive.stat().st_size
    if total > RATIO_FROM_BYTES and total > MAX_RATIO * packed:
        raise UnsafeArchiveError(f"{archive.name}: declares {total} bytes unpacked from {packed} ({total // packed}x "
                                 f"its size, over {MAX_RATIO}x); refused as a likely zip bomb. If you trust the file, "
                                 "extract it yourself and register the folder with `iqabench datasets add NAME "
                                 "--from PATH`")
    free = shutil.disk_usage(target).free
    if total > free:
        raise ExtractWriteError(f"{archive} unpacks to {total} bytes and only {free} are free under {target}; free "
                                "space there (or download to another --dest), then run again: the archive is kept "
                                "and not downloaded again")


def _link_error(archive: Path, name: str, symbolic: bool) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{archive.name}: member {name!r} is a {'symbolic' if symbolic else 'hard'} "
                              f"link; links are refused because they can point outside the target")


def _special_error(archive: Path, name: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{archive.name}: member {name!r} is a device or special file; refusing to extract "
                              "this archive (it may be malicious or corrupt)")


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            check_member(info.orig_filename, archive)  # as stored: zipfile's filename is cut at a NUL
            kind = stat.S_IFMT(info.external_attr >> 16)  # a Unix mode, where the zip was made on Unix (else 0)
            if kind == stat.S_IFLNK:
                raise _link_error(archive, info.filename, symbolic=True)
            if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                # zipfile would write it as a plain file; no dataset holds a device or FIFO, so the archive lies.
                raise _special_error(archive, info.filename)
            if info.flag_bits & 0x1 or info.compress_type not in ZIP_METHODS:
                # zipfile stops with a RuntimeError or NotImplementedError, after earlier members were written.
                why = ("is encrypted (password-protected)" if info.flag_bits & 0x1 else
                       f"uses compression method {info.compress_type}, which Python's zipfile cannot read")
                raise KeptArchiveError(f"{archive}: member {info.filename!r} {why}. Extract the archive yourself "
                                       "(7z or unzip, with its password if it has one), then register the folder with "
                                       "`iqabench datasets add NAME --from PATH`")
        check_listing(archive, [(i.filename, i.is_dir(), i.file_size) for i in zf.infolist()], staging.parent)
        bad = zf.testzip()
        if bad is not None:
            raise DatasetError(f"{archive.name}: member {bad!r} fails its CRC check; the archive is corrupt, "
                               f"delete it and download again")
        zf.extractall(staging)


def _extract_tar(archive: Path, staging: Path) -> None:
    with tarfile.open(archive) as tf:
        for member in tf.getmembers():
            check_member(member.name, archive)
            if member.issym() or member.islnk():
                raise _link_error(archive, member.name, symbolic=member.issym())
            if not (member.isfile() or member.isdir()):
                raise _special_error(archive, member.name)
        if archive.name.lower().endswith(".tar"):
            # A plain tar cut at a member boundary reads as a shorter archive; it lacks the end-of-archive
            # blocks. (A compressed one fails in the decompressor instead.)
            tf.fileobj.seek(tf.offset)
            if tf.fileobj.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                raise DatasetError(f"{archive.name}: ends without tar's end-of-archive marker, after "
                                   f"{len(tf.getmembers())} member(s); it is truncated, delete it and download again")
        else:
            # tarfile stops at the end-of-archive blocks, before the gzip/bzip2/xz check that follows them, so a
            # damaged stream would extract; reading on from where the listing stopped (no seek back, which would
            # decompress it all again) runs the check.
            while tf.fileobj.read(1 << 20):
                pass
        check_listing(archive, [(m.name, m.isdir(), m.size) for m in tf.getmembers()], staging.parent)
        if hasattr(tarfile, "data_filter"):
            tf.extractall(staging, filter="data")
        else:  # Python 3.10 before 3.10.12: what the data filter would do, by hand (links are refused above)
            for member in tf.getmembers():
                member.mode = 0o755 if member.isdir() or member.mode & 0o100 else 0o644
                member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
            tf.extractall(staging, numeric_owner=True)


def _extract_rar_libarchive(archive: Path, staging: Path, libarchive: ModuleType) -> None:
    # First pass: headers only, so a bad member stops the archive before any byte is written.
    listing = []
    with libarchive.file_reader(str(archive)) as entries:
        for entry in entries:
            name = entry.pathname or ""
            check_member(name, archive)
            if entry.issym or entry.islnk:
                raise _link_error(archive, name, symbolic=entry.issym)
            if not (entry.isfile or entry.isdir):
                raise _special_error(archive, name)
            listing.append((name, entry.isdir, entry.size or 0))
    check_listing(archive, listing, staging.parent)
    # Second pass: the data, written only to the checked relative paths (never by libarchive itself).
    with libarchive.file_reader(str(archive)) as entries:
        for entry in entries:
            out = staging / check_member(entry.pathname or "", archive)
            if entry.isdir:
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "wb") as fh:
                for block in entry.get_blocks():
                    fh.write(block)
            if entry.size is not None and out.stat().st_size != entry.size:
                raise DatasetError(f"{archive.name}: member {entry.pathname!r} gave {out.stat().st_size} bytes, "
                                   f"its header says {entry.size}; the archive is corrupt, delete it and "
                                   f"download again")


def _rar_tool_listing(archive: Path, tool: str) -> list[tuple[str, bool, int]]:
    """``(name, is_folder, size)`` of every member, from the tool's technical listing: what
    :func:`check_listing` needs to refuse a bomb or a name given twice before the tool writes anything."""
    name = Path(tool).name
    cmd = {"unrar": [tool, "lt", "-c-", str(archive)], "7z": [tool, "l", "-slt", "-ba", str(archive)],
           "7zz": [tool, "l", "-slt", "-ba", str(archive)]}.get(name, [tool, "-tvf", str(archive)])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise DatasetError(f"{archive.name}: {name} cannot list the archive: {out.stderr.strip()[:300]}")
    entries: list[list] = []
    try:
        for line in out.stdout.splitlines():
            if name == "bsdtar":  # ls -l style: mode links owner group size month day time-or-year name
                fields = line.split(maxsplit=8)
                if len(fields) == 9:
                    entries.append([fields[8].rstrip("/"), fields[0].startswith("d"), int(fields[4])])
                continue
            key, sep, value = line.strip().partition(" = " if name != "unrar" else ": ")
            if not sep:
                continue
            if key in ("Path", "Name"):  # 7z, unrar: a new member
                entries.append([value, False, 0])
            elif entries and key in ("Folder", "Type"):
                entries[-1][1] = value in ("+", "Directory")
            elif entries and key == "Size":
                entries[-1][2] = int(value.replace(",", "").replace(" ", ""))
    except ValueError:
        raise DatasetError(f"{archive.name}: {name}'s listing gives a size that is not a number; extract the archive "
                           "yourself and register the folder with `iqabench datasets add NAME --from PATH`") from None
    return [(member, is_dir, size) for member, is_dir, size in entries]


def _extract_rar_tool(archive: Path, staging: Path, tool: str) -> None:
    check_listing(archive, _rar_tool_listing(archive, tool), staging.parent)  # names, twice-named, bomb, disk
    name = Path(tool).name
    if name == "unrar":
        cmd = [tool, "x", "-o+", "-y", str(archive), str(staging) + os.sep]
    elif name in ("7z", "7zz"):
        cmd = [tool, "x", "-y", f"-o{staging}", str(archive)]
    else:
        cmd = [tool, "-xf", str(archive), "-C", str(staging)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise DatasetError(f"{archive.name}: {name} failed to extract: {out.stderr.strip()[:300]}")
    # The tools' listings do not say which members are links or special files; one found in staging voids the
    # archive (bsdtar run as root makes FIFOs and device nodes as the archive says).
    for path in staging.rglob("*"):
        if path.is_symlink():
            raise _link_error(archive, path.relative_to(staging).as_posix(), symbolic=True)
        if not (path.is_file() or path.is_dir()):
            raise _special_error(archive, path.relative_to(staging).as_posix())


def _extract_rar(archive: Path, staging: Path) -> None:
    extractor = rar_extractor()
    if extractor == LIBARCHIVE:
        module, _ = load_libarchive()
        try:
            _extract_rar_libarchive(archive, staging, module)
        except module.ArchiveError as err:
            raise DatasetError(f"{archive.name}: cannot read the archive ({err}); it is corrupt or truncated, "
                               f"delete it and download again") from err
    else:
        _extract_rar_tool(archive, staging, extractor)


def move_into(source: Path, target: Path, what: str) -> None:
    """Move the extracted files under ``source`` into ``target`` by renames, after checking that no folder of
    the target stands where they have a file (``what`` names their origin); an OSError is the caller's to name."""
    clash = _clash(source, target)
    if clash is not None:
        raise ExtractWriteError(f"{what} holds a file {clash.relative_to(target).as_posix()}, "
                                f"but {clash} is a folder; move that folder aside (nothing was replaced), then "
                                "run again: the archive is kept and not downloaded again")
    _move_into(source, target)


def _move_into(source: Path, target: Path) -> None:
    """Move everything under ``source`` into ``target``, replacing files of the same name (:func:`_clash` has
    checked that no folder of the target stands where the archive has a file)."""
    for item in source.iterdir():
        dest = target / item.name
        if item.is_dir() and dest.is_dir() and not dest.is_symlink():
            _move_into(item, dest)
            continue
        os.replace(item, dest)


def _clash(source: Path, target: Path) -> Path | None:
    """A folder of ``target`` where ``source`` has a file (moving it in would delete the folder and all it
    holds: the user's own files, under a --dest that held them), or None."""
    for item in source.iterdir():
        dest = target / item.name
        if dest.is_dir() and not dest.is_symlink():
            if not item.is_dir():
                return dest
            found = _clash(item, dest)
            if found is not None:
                return found
    return None


def extract(archive: Path, target: Path) -> None:
    """Extract ``archive`` into ``target`` after checking every member; all or nothing."""
    archive, target = Path(archive), Path(target)
    kind = archive_format(archive)
    if kind is None:
        raise DatasetError(f"{archive.name}: not a zip, tar or rar archive")
    if kind == "rar":
        rar_extractor()  # says what to install before anything is created
    # Inside the target, so the final moves are renames on one file system.
    staging = target / f".{archive.name}{STAGING_SUFFIX}"
    try:
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
        staging.mkdir()
        try:
            {"zip": _extract_zip, "tar": _extract_tar, "rar": _extract_rar}[kind](archive, staging)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
            if isinstance(err, OSError) and err.errno in MACHINE_ERRNOS:
                raise  # the disk or the folder: handled below
            # Damaged compressed data: zlib and lzma raise their own errors, gzip and bzip2 an OSError with no errno;
            # a member no file system can create (a name over 255 bytes, one named ".", a size of 1e15) is the
            # archive's fault too, though the OSError has an errno: staging is a fresh, empty, writable folder.
            why = " ".join(str(err).split())  # tarfile's "could not be opened" lists one line per method
            raise DatasetError(f"{archive.name}: cannot read the archive ({why}); it is corrupt or truncated, "
                               f"delete it and download again") from err
        move_into(staging, target, f"{archive}: the archive")
    except OSError as err:  # a full disk, a read-only target: this machine, not the archive
        raise ExtractWriteError(f"{archive}: extracting into {target} failed ({err.strerror or err}); free space "
                                "there (or make it writable), then run again: the archive is kept and not "
                                "downloaded again") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
