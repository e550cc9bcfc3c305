"""Without libarchive, a RAR archive is listed and extracted by a tool (unrar, 7z/7zz or bsdtar). Its listing only
gave names, so the checks every other archive gets (a name given twice, a bomb, more than the disk holds) were
skipped there. Now each tool's technical listing gives names, kinds and sizes, checked before the tool writes.

The listings below are the tools' own formats (7zz and bsdtar as printed by 7-Zip 26.02 and bsdtar 3.6.2; unrar's
`lt` as in its list.cpp); the fake tools print them and record whether they were asked to extract."""
from __future__ import annotations

from pathlib import Path

import pytest

from iqabench.datasets import archives
from iqabench.datasets.archives import UnsafeArchiveError, extract

GIB = 1 << 30


def _listing(tool: str, members: list[tuple[str, bool, int]]) -> str:
    if tool == "bsdtar":
        return "".join(f"{'d' if d else '-'}rw-r--r--  0 0      0 {size:>11} Jan  1  2013 {name}{'/' if d else ''}\n"
                       for name, d, size in members)
    if tool == "7zz":
        return "".join(f"Path = {name}\nFolder = {'+' if d else '-'}\nSize = {size}\nPacked Size = {size}\n\n"
                       for name, d, size in members)
    return "\nArchive: x.rar\nDetails: RAR 4\n\n" + "".join(
        f"        Name: {name}\n        Type: {'Directory' if d else 'File'}\n        Size: {size}\n"
        f" Packed size: {size}\n\n" for name, d, size in members)


def _fake_tool(tmp_path: Path, monkeypatch, tool: str, members: list[tuple[str, bool, int]]) -> Path:
    """A tool on PATH that lists ``members`` and, asked to extract, writes ok.txt and leaves a mark."""
    script = tmp_path / "bin" / tool
    script.parent.mkdir(exist_ok=True)
    (tmp_path / "listing.txt").write_text(_listing(tool, members))
    listing, mark = tmp_path / "listing.txt", tmp_path / "extracted"
    list_arg = {"bsdtar": "-tvf", "7zz": "l", "unrar": "lt"}[tool]
    out_dir = {"bsdtar": '"$4"', "7zz": '"${3#-o}"', "unrar": '"$5"'}[tool]
    script.write_text(f'#!/bin/sh\nif [ "$1" = "{list_arg}" ]; then cat "{listing}"; exit 0; fi\n'
                      f'touch "{mark}"; echo fine > {out_dir}/ok.txt\n')
    script.chmod(0o755)
    monkeypatch.setattr(archives, "load_libarchive", lambda: (None, "not installed"))
    monkeypatch.setattr(archives.shutil, "which", lambda name: str(script) if name == tool else None)
    (tmp_path / "x.rar").write_bytes(b"Rar!\x1a\x07\x00" + bytes(100))
    return tmp_path / "x.rar"


TOOLS = ["bsdtar", "7zz", "unrar"]


@pytest.mark.parametrize("tool", TOOLS)
def test_a_member_listed_twice_is_refused_before_the_tool_extracts(tmp_path, monkeypatch, tool):
    archive = _fake_tool(tmp_path, monkeypatch, tool, [("d", True, 0), ("d/dmos.csv", False, 10),
                                                      ("d/./dmos.csv", False, 12)])
    with pytest.raises(UnsafeArchiveError, match=r"^x.rar: member 'd/./dmos.csv' appears twice"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "extracted").exists() and list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("tool", TOOLS)
def test_a_bomb_is_refused_before_the_tool_extracts(tmp_path, monkeypatch, tool):
    archive = _fake_tool(tmp_path, monkeypatch, tool, [("zeros.bin", False, 3 * GIB)])
    with pytest.raises(UnsafeArchiveError, match=r"^x.rar: declares 3221225472 bytes unpacked from 107 .*zip bomb"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "extracted").exists()


@pytest.mark.parametrize("tool", TOOLS)
def test_a_member_outside_the_target_is_refused_from_the_listing(tmp_path, monkeypatch, tool):
    archive = _fake_tool(tmp_path, monkeypatch, tool, [("../evil.txt", False, 4)])
    with pytest.raises(UnsafeArchiveError, match=r"^x.rar: member '../evil.txt' would be written outside"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "extracted").exists()


@pytest.mark.parametrize("tool", TOOLS)
def test_a_sound_listing_extracts(tmp_path, monkeypatch, tool):
    archive = _fake_tool(tmp_path, monkeypatch, tool, [("ok.txt", False, 5)])
    extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "ok.txt").read_text() == "fine\n" and (tmp_path / "extracted").exists()
