"""Build RAR 4.x archives with stored (uncompressed) members, for extraction tests.

No RAR writer is free to use, so the blocks are laid out byte by byte as the
RAR 4 technical note describes them (fields checked against the note's tables
reproduced in ctf-wiki ``docs/misc/archive/rar.md`` and kaitai ``archive/rar.ksy``):

    marker   52 61 72 21 1A 07 00
    block    HEAD_CRC u16 | HEAD_TYPE u8 | HEAD_FLAGS u16 | HEAD_SIZE u16 | body
    main     type 0x73, body RESERVED1 u16 + RESERVED2 u32 (HEAD_SIZE 13)
    file     type 0x74, flags 0x8000 (ADD_SIZE present), body PACK_SIZE u32, UNP_SIZE u32,
             HOST_OS u8, FILE_CRC u32, FTIME u32 (DOS), UNP_VER u8, METHOD u8 (0x30 store),
             NAME_SIZE u16, ATTR u32, FILE_NAME; then PACK_SIZE bytes of data
    end      type 0x7B, flags 0x4000, HEAD_SIZE 7 (HEAD_CRC always 0x3DC4)

HEAD_CRC is the low 16 bits of the CRC32 of the header from HEAD_TYPE onward;
FILE_CRC is the CRC32 of the unpacked data. All integers are little-endian.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

MARKER = b"Rar!\x1a\x07\x00"
HOST_WIN32, HOST_UNIX = 2, 3
STORE = 0x30
DIRECTORY_FLAGS = 0x00E0        # dictionary bits all set: the entry is a directory
ADD_SIZE_PRESENT = 0x8000
DOS_TIME_2013 = (33 << 25) | (1 << 21) | (1 << 16)  # 2013-01-01 00:00:00
WIN_ARCHIVE_ATTR, WIN_DIRECTORY_ATTR = 0x20, 0x10
UNIX_FILE_MODE, UNIX_DIR_MODE, UNIX_SYMLINK_MODE = 0o100644, 0o040755, 0o120777


def _block(head_type: int, flags: int, body: bytes) -> bytes:
    header = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header


def main_header() -> bytes:
    return _block(0x73, 0, struct.pack("<HI", 0, 0))


def end_block() -> bytes:
    return _block(0x7B, 0x4000, b"")


def file_block(name: str, data: bytes = b"", *, host_os: int = HOST_WIN32, attr: int | None = None,
               directory: bool = False) -> bytes:
    """One member. Win32 archives separate folders with a backslash, as TID2013's does."""
    encoded = (name.replace("/", "\\") if host_os == HOST_WIN32 else name).encode("ascii")
    if attr is None:
        if host_os == HOST_WIN32:
            attr = WIN_DIRECTORY_ATTR if directory else WIN_ARCHIVE_ATTR
        else:
            attr = UNIX_DIR_MODE if directory else UNIX_FILE_MODE
    flags = ADD_SIZE_PRESENT | (DIRECTORY_FLAGS if directory else 0)
    body = struct.pack("<IIBIIBBHI", len(data), len(data), host_os, zlib.crc32(data), DOS_TIME_2013, 20,
                       STORE, len(encoded), attr) + encoded
    return _block(0x74, flags, body) + data


def rar4(members: list[tuple[str, bytes]], *, folder_entries: bool = True, extra_blocks: list[bytes] = ()) -> bytes:
    """A RAR 4 archive holding ``members`` (name, data); with ``folder_entries`` the folders
    the names imply come first as directory entries, as WinRAR writes them."""
    folders = sorted({"/".join(name.split("/")[:i]) for name, _ in members
                      for i in range(1, name.count("/") + 1)}) if folder_entries else []
    blocks = [file_block(folder, directory=True) for folder in folders]
    blocks += [file_block(name, data) for name, data in members]
    return MARKER + main_header() + b"".join(blocks) + b"".join(extra_blocks) + end_block()


def folder_members(folder: Path) -> list[tuple[str, bytes]]:
    return [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
