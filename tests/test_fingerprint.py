"""Fingerprints change with the data a stage reads, and only with it (not with mtimes or the registration time)."""
from __future__ import annotations

import os

from fakeserver import write_image
from iqabench.datasets import fingerprint
from iqabench.datasets.local import register_generic


def _folder(tmp_path):
    root = tmp_path / "set"
    for i in range(3):
        write_image(root / "img" / f"{i}.png", seed=i)
    (root / "scores.csv").write_text("image,MOS\nimg/0.png,1\nimg/1.png,2\nimg/2.png,3\n")
    return root


def test_folder_fingerprint_follows_content_not_mtimes(tmp_path):
    root = _folder(tmp_path)
    before = fingerprint.folder(root)
    assert before["images"] == 3 and before["other_files"] == 1
    os.utime(root / "img" / "0.png", (1, 1))  # a copy or `dvc checkout` changes mtimes only
    assert fingerprint.folder(root) == before
    (root / "scores.csv").write_text("image,MOS\nimg/0.png,1\nimg/1.png,2\nimg/2.png,4\n")  # same size, new score
    assert fingerprint.folder(root)["other_files_sha256"] != before["other_files_sha256"]
    write_image(root / "img" / "2.png", seed=9, size=(9, 6))
    assert fingerprint.folder(root)["images_sha256"] != before["images_sha256"]


def test_registered_dataset_fingerprint_covers_an_outside_csv_but_not_the_registration_time(tmp_path):
    root = _folder(tmp_path)
    csv = tmp_path / "elsewhere.csv"
    csv.write_text("image,MOS\nimg/0.png,1\nimg/1.png,2\nimg/2.png,3\n")
    registry = tmp_path / "registry.json"
    register_generic("mine", root, csv, "image", "MOS", 1, 5, True, registry_path=registry, check_pixels=False,
                     progress=False)
    first = fingerprint.dataset("mine", "shared", registry_path=registry, data_root=tmp_path / "raw")
    assert first["source"] == "registered"
    register_generic("mine", root, csv, "image", "MOS", 1, 5, True, registry_path=registry, check_pixels=False,
                     progress=False)  # re-registered, same data: prepare need not re-run
    assert fingerprint.dataset("mine", "shared", registry_path=registry, data_root=tmp_path / "raw") == first
    csv.write_text("image,MOS\nimg/0.png,5\nimg/1.png,2\nimg/2.png,3\n")
    assert fingerprint.dataset("mine", "shared", registry_path=registry, data_root=tmp_path / "raw") != first


def test_a_download_wins_over_a_registration_as_prepare_reads_it(tmp_path):
    (tmp_path / "raw" / "kadid10k").mkdir(parents=True)
    source, root, _ = fingerprint.locate("kadid10k", "shared", data_root=tmp_path / "raw",
                                         registry_path=tmp_path / "none.json")
    assert source == "download" and root == tmp_path / "raw" / "kadid10k"
    assert fingerprint.locate("synthetic-single", "shared", data_root=tmp_path / "raw",
                              registry_path=tmp_path / "none.json")[0] == "missing"


# Hostile names and files in a dataset folder: the always-run fingerprint stage must neither crash nor hang,
# and a folder of UTF-8 names must keep the bytes it had (DVC hashes them: dvc.lock must not change).

def _utf8_folder(tmp_path):
    """Nested images, odd-case suffixes, non-ASCII UTF-8 names, other files and kept archives (skipped)."""
    root = tmp_path / "set"
    for i, name in enumerate(["a.png", "B.JPG", "café.bmp", "sub/z.tif", "日本.png"]):
        (root / "img" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "img" / name).write_bytes(bytes([i]) * (10 + i))
    (root / "scores.csv").write_text("image,MOS\na.png,1\n")
    (root / "readme_é.txt").write_text("hello")
    (root / "data.mat").write_bytes(b"\x00\x01" * 100)
    (root / "_archives").mkdir()
    (root / "_archives" / "x.zip").write_bytes(b"zip")
    (root / ".archives").mkdir()  # download's kept archives: pinned by checksum, not listed
    (root / ".archives" / "y.zip").write_bytes(b"zip")
    return root


def _old_formula(root):
    """The fingerprint as computed before names were hashed as bytes (str.encode of each line)."""
    import hashlib
    from pathlib import Path

    from iqabench.io import sha256_file
    images, others, n_images, n_others, total = hashlib.sha256(), hashlib.sha256(), 0, 0, 0
    for parent, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".archives")
        for name in sorted(files):
            path = Path(parent) / name
            size = path.stat().st_size
            rel = path.relative_to(root).as_posix()
            total += size
            if path.suffix.lower() in fingerprint.IMAGE_SUFFIXES:
                n_images += 1
                images.update(f"{rel}\t{size}\n".encode())
            else:
                n_others += 1
                others.update(f"{rel}\t{sha256_file(path)}\n".encode())
    return {"path": str(root), "images": n_images, "other_files": n_others, "bytes": total,
            "images_sha256": images.hexdigest(), "other_files_sha256": others.hexdigest()}


def test_a_utf8_named_folder_keeps_the_fingerprint_it_had(tmp_path):
    root = _utf8_folder(tmp_path)
    now = fingerprint.folder(root)
    assert now == _old_formula(root)
    # Computed by the code before the change (str lines), pinned: the bytes DVC hashed stay the same.
    assert (now["images"], now["other_files"], now["bytes"]) == (5, 4, 286)
    assert now["images_sha256"] == "3483ae6836c88aa4e05b30d2add6ffb00332b3f8c0d59bdcc17a0253303c3896"
    assert now["other_files_sha256"] == "1a88469827cd53d0ca2b83c21cb51386cd5074c74c1eb1885a1ab1762f8a5e19"


def test_a_name_that_is_not_utf8_is_fingerprinted_by_its_bytes(tmp_path):
    # A Windows zip's 'café' in Latin-1: was UnicodeEncodeError "surrogates not allowed" in the fingerprint stage.
    import hashlib
    import json

    from iqabench import io
    root = tmp_path / "raw" / "mine"
    root.mkdir(parents=True)
    with open(os.fsencode(root) + b"/readme_caf\xe9.txt", "w") as handle:
        handle.write("notes")
    with open(os.fsencode(root) + b"/img_\xff.png", "wb") as handle:
        handle.write(b"12345")
    first = fingerprint.folder(root)
    assert (first["images"], first["other_files"], first["bytes"]) == (1, 1, 10)
    assert first["images_sha256"] == hashlib.sha256(b"img_\xff.png\t5\n").hexdigest()
    notes = hashlib.sha256(b"notes").hexdigest()
    assert first["other_files_sha256"] == hashlib.sha256(b"readme_caf\xe9.txt\t" + notes.encode() + b"\n").hexdigest()
    os.rename(os.fsencode(root) + b"/readme_caf\xe9.txt", os.fsencode(root) + b"/readme_caf\xe8.txt")
    assert fingerprint.folder(root)["other_files_sha256"] != first["other_files_sha256"]  # a rename is seen
    # What the stage writes for a downloaded folder holding such names: JSON, as for any other.
    written = io.write_json(tmp_path / "fp.json", fingerprint.dataset("mine", "shared", data_root=tmp_path / "raw",
                                                                      registry_path=tmp_path / "none.json"))
    assert json.loads(written.read_text())["folder"]["images"] == 1


def test_fifos_and_devices_in_a_folder_are_skipped_not_read(tmp_path):
    # sha256 of a FIFO waited forever for a writer: the always-run stage hung. An alarm fails the test instead.
    import signal

    root = _folder(tmp_path)
    clean = fingerprint.folder(root)
    os.mkfifo(root / "pipe.txt")
    os.mkfifo(root / "img" / "pipe.png")
    (root / "null.csv").symlink_to(os.devnull)  # a character device behind a link
    (root / "gone.csv").symlink_to(root / "nowhere")  # a dangling link, skipped as before

    def hung(*_):
        raise TimeoutError("fingerprint.folder read a FIFO")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        assert fingerprint.folder(root) == clean
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
