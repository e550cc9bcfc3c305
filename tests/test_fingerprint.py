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
