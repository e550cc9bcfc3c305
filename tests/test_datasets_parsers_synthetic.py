"""Every parser of a synthetic-distortion set (distorted copies of pristine references: KADID, LIVE, TID2013,
PIPAL, SIQAD, SCID, CSIQ, KADIS) on a tiny copy of its dataset's published layout, against hand-written rows."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fakeserver import kadid_layout, write_image
from iqabench.datasets import DatasetError, build_manifest, list_images
from test_datasets_parsers import rows


def test_kadid_dmos_column_is_a_mos_on_one_to_five(tmp_path):
    kadid_layout(tmp_path)
    got = rows(build_manifest("kadid10k", tmp_path))
    assert got == {
        "I01_01_01.png": (4.57, 0.8925, "I01", "gaussian blur", "1", ""),
        "I01_02_05.png": (1.23, 0.0575, "I01", "lens blur", "5", ""),
        "I02_25_03.png": (3.1, 0.525, "I02", "contrast change", "3", ""),
    }
    frame = build_manifest("kadid10k", tmp_path)
    assert Path(frame["reference"].iloc[0]).name == "I01.png"


def test_kadid_extra_column_is_refused(tmp_path):
    kadid_layout(tmp_path)
    csv = tmp_path / "kadid10k" / "dmos.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0] + ",extra"] + [line + ",0" for line in lines[1:]]) + "\n")
    with pytest.raises(DatasetError, match=r"unexpected column\(s\) \['extra'\]"):
        build_manifest("kadid10k", tmp_path)


@pytest.mark.parametrize("ref, says", [
    ("", "line 3: 'ref_img' is blank (1 such row(s))"),  # was a TypeError traceback (PosixPath / float)
    ("I03.png", "line 3: ref_img 'I03.png' does not match dist_img 'I01_02_05.png'; use the score file as "
                "published by the dataset authors"),  # was accepted: the image joined content I03
    ("i01.png", "line 3: ref_img 'i01.png' does not match dist_img 'I01_02_05.png'")])
def test_kadid_row_whose_reference_is_blank_or_another_is_named(tmp_path, ref, says):
    kadid_layout(tmp_path)
    csv = tmp_path / "kadid10k" / "dmos.csv"
    csv.write_text(csv.read_text().replace("I01_02_05.png,I01.png", f"I01_02_05.png,{ref}"))
    with pytest.raises(DatasetError) as err:
        build_manifest("kadid10k", tmp_path)
    assert str(err.value).startswith(f"kadid10k: {csv} {says}")


def test_live_drops_reference_copies_and_maps_folders(tmp_path):
    base = tmp_path / "databaserelease2"
    counts = [227, 233, 174, 174, 174]
    total = sum(counts)
    dmos = np.linspace(10, 90, total)
    orgs = np.zeros(total, dtype=int)
    orgs[1] = 1                      # jp2k/img2.bmp is a reference copy
    orgs[227 + 232] = 1              # jpeg/img233.bmp too
    refnames = np.array([["bikes.bmp" if i % 2 else "parrots.bmp"] for i in range(total)], dtype=object).T
    base.mkdir(parents=True)
    scipy.io.savemat(base / "dmos_realigned.mat", {"dmos_new": dmos[None, :], "orgs": orgs[None, :],
                                                   "dmos_std": np.ones((1, total))})
    scipy.io.savemat(base / "refnames_all.mat", {"refnames_all": refnames})
    for folder, count in zip(["jp2k", "jpeg", "wn", "gblur", "fastfading"], counts):
        for i in range(1, count + 1):
            (base / folder).mkdir(exist_ok=True)
            (base / folder / f"img{i}.bmp").write_bytes(b"BM")  # existence is what the parser checks
    frame = build_manifest("live", tmp_path)
    assert len(frame) == total - 2
    by_path = {str(Path(p).relative_to(base)): r for p, r in zip(frame["image"], frame.itertuples())}
    assert "jp2k/img2.bmp" not in by_path and "jpeg/img233.bmp" not in by_path
    first_wn = by_path["wn/img1.bmp"]
    assert first_wn.raw_score == pytest.approx(dmos[460])
    assert first_wn.score == pytest.approx((112 - dmos[460]) / 115)  # DMOS flipped on the declared [-3, 112]
    assert first_wn.distortion == "wn" and first_wn.content_id == "parrots"
    assert Path(first_wn.reference) == base / "refimgs" / "parrots.bmp"


def test_live_realigned_file_beside_the_release_folder(tmp_path):
    # dmos_realigned.mat is its own download (release2/dmos_realigned.mat on the LIVE site); the
    # databaserelease2.zip readme lists only dmos.mat, so it usually sits next to the folder.
    base = tmp_path / "databaserelease2"
    total = 982
    dmos = np.linspace(-2.6, 111.7, total)  # realigned values leave [0, 100] a little
    orgs = np.zeros(total, dtype=int)
    orgs[0] = 1
    refnames = np.array([["caps.bmp"] for _ in range(total)], dtype=object).T
    base.mkdir()
    scipy.io.savemat(tmp_path / "dmos_realigned.mat", {"dmos_new": dmos[None, :], "orgs": orgs[None, :]})
    scipy.io.savemat(base / "refnames_all.mat", {"refnames_all": refnames})
    for folder, count in zip(["jp2k", "jpeg", "wn", "gblur", "fastfading"], [227, 233, 174, 174, 174]):
        (base / folder).mkdir()
        for i in range(1, count + 1):
            (base / folder / f"img{i}.bmp").write_bytes(b"BM")
    (base / "refimgs").mkdir()
    (base / "refimgs" / "caps.bmp").write_bytes(b"BM")  # a reference missing would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the realigned span is the declared scale: no out-of-range warning
        frame = build_manifest("live", tmp_path)
    assert len(frame) == total - 1
    assert frame["score"].between(0, 1).all()
    assert Path(frame["image"].iloc[0]) == base / "jp2k" / "img2.bmp"
    assert frame["raw_score"].iloc[0] == pytest.approx(dmos[1])
    assert Path(frame["reference"].iloc[0]) == base / "refimgs" / "caps.bmp"
    assert set(frame["score_source"]) == {"human DMOS (LIVE IQA, realigned)"}
    (tmp_path / "dmos_realigned.mat").unlink()
    with pytest.raises(DatasetError, match=r"neither 'dmos_realigned.mat' nor the release's 'dmos.mat'.*"
                                           r"https://live.ece.utexas.edu/.*/release2/dmos_realigned.mat"):
        build_manifest("live", tmp_path)
    # databaserelease2.zip's own dmos.mat ('dmos', 'orgs'; pyiqa scripts/process_live.py) is read when it is
    # all there is, with a warning, and the manifest says which DMOS it holds: the two scales differ.
    original = dmos + 5.0
    scipy.io.savemat(base / "dmos.mat", {"dmos": original[None, :], "orgs": orgs[None, :]})
    with pytest.warns(UserWarning, match=r"live: reading the release's original .*dmos.mat.*realigned DMOS, a "
                                         r"separate download \(https://live.ece.utexas.edu/.*/release2/"):
        frame = build_manifest("live", tmp_path)
    assert len(frame) == total - 1 and frame["raw_score"].iloc[0] == pytest.approx(original[1])
    assert set(frame["score_source"]) == {"human DMOS (LIVE IQA, the release's original dmos.mat, not realigned)"}


def test_a_mat_file_re_saved_as_matlab_v73_is_named(tmp_path):
    # The releases publish MATLAB v5 files, which scipy.io.loadmat reads; a copy re-saved as v7.3 (HDF5) is
    # refused with what to do. Header as MATLAB writes it: 116 bytes text, 8 subsystem bytes, version 0x0200.
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + bytes(8) + b"\x00\x02IM"
    (tmp_path / "dmos_realigned.mat").write_bytes(header + bytes(512))
    scipy.io.savemat(tmp_path / "refnames_all.mat", {"refnames_all": np.array([["caps.bmp"]], dtype=object)})
    with pytest.raises(DatasetError, match=r"live: cannot read MATLAB file .*dmos_realigned.mat: it is a v7.3 "
                                           r"\(HDF5\) file .*use the release's own file"):
        build_manifest("live", tmp_path)


def test_tid2013_case_quirks_and_reference_from_name(tmp_path):
    base = tmp_path
    # Case differs between list and disk: pyiqa's scripts/process_tid.py keeps the list's name, or
    # swaps i -> I when distorted_images/<name> is missing, and its meta_info_TID2013Dataset.csv has
    # I01_01_1.bmp, i01_01_2.bmp, I01_11_1.BMP and references I01.BMP .. I24.BMP, i25.bmp.
    write_image(base / "distorted_images" / "i01_01_1.bmp")
    write_image(base / "distorted_images" / "I01_11_1.BMP")
    write_image(base / "distorted_images" / "I25_24_5.BMP")
    write_image(base / "reference_images" / "I01.BMP")
    write_image(base / "reference_images" / "i25.bmp")
    (base / "mos_with_names.txt").write_text("5.51429 I01_01_1.bmp\n5.91429 I01_11_1.BMP\n2.25 i25_24_5.bmp\n")
    frame = build_manifest("tid2013", base)
    got = rows(frame)
    assert got == {"i01_01_1.bmp": (5.51429, round(5.51429 / 9, 6), "i01", "additive gaussian noise", "1", ""),
                   "I01_11_1.BMP": (5.91429, round(5.91429 / 9, 6), "i01", "jpeg2000", "1", ""),
                   "I25_24_5.BMP": (2.25, 0.25, "i25", "sparse sampling and reconstruction", "5", "")}
    assert sorted(Path(r).name for r in frame["reference"]) == ["I01.BMP", "I01.BMP", "i25.bmp"]


def test_a_copy_without_some_references_registers_and_warns_naming_them(tmp_path):
    # Some public copies ship the distorted images only: the no-reference rows work, the fr: rows cannot.
    from typer.testing import CliRunner
    from iqabench.datasets.cli import app

    for name in ("I01_01_1.bmp", "I04_01_1.bmp"):
        write_image(tmp_path / "distorted_images" / name)
    write_image(tmp_path / "reference_images" / "I01.BMP")
    (tmp_path / "mos_with_names.txt").write_text("5.51429 I01_01_1.bmp\n4.5 I04_01_1.bmp\n")
    registry = tmp_path / "registry.json"
    result = CliRunner().invoke(app, ["--registry", str(registry), "add", "tid2013", "--from", str(tmp_path),
                                      "--partial", "--skip-pixels"])
    out = " ".join(result.output.split())
    assert result.exit_code == 0 and registry.exists() and "Traceback" not in out, out
    assert (f"warning: tid2013: 1 of 2 reference image(s) are missing ({tmp_path / 'reference_images' / 'I04.BMP'}); "
            "the full-reference rows (fr:*) cannot be computed on this copy: add them (reference_images/)") in out


# The lists are ASCII as published (ARNIQA reads mos_with_names.txt with sep=" ", no header); a copy
# re-saved on Windows gains CRLF and a UTF-8 byte order mark, which once glued itself to the first MOS.


@pytest.mark.parametrize("encode", [
    lambda text: text.encode("ascii"),
    lambda text: b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("ascii")])
def test_tid2013_and_scid_lists_with_a_byte_order_mark_or_crlf(tmp_path, encode):
    write_image(tmp_path / "tid" / "distorted_images" / "I01_01_1.bmp")
    write_image(tmp_path / "tid" / "reference_images" / "I01.BMP")
    (tmp_path / "tid" / "mos_with_names.txt").write_bytes(encode("5.51429 I01_01_1.bmp\n"))
    assert rows(build_manifest("tid2013", tmp_path / "tid"))["I01_01_1.bmp"][:3] == (5.51429, 0.612699, "i01")
    write_image(tmp_path / "scid" / "DistortedSCIs" / "SCI01_1_1.bmp")
    write_image(tmp_path / "scid" / "ReferenceSCIs" / "SCI01.bmp")
    (tmp_path / "scid" / "MOS_SCID.txt").write_bytes(encode("SCI01 SCI01_1_1 54.72015352\n"))
    assert rows(build_manifest("scid", tmp_path / "scid"))["SCI01_1_1.bmp"][:3] == (54.72015352, 0.547202, "SCI01")


def test_a_utf16_list_is_named_not_misread(tmp_path):
    (tmp_path / "mos_with_names.txt").write_text("5.51429 I01_01_1.bmp\n", encoding="utf-16")
    with pytest.raises(DatasetError, match=r"mos_with_names.txt is UTF-16 text; save it as ASCII or UTF-8"):
        build_manifest("tid2013", tmp_path)


def test_tid2013_malformed_line_is_named(tmp_path):
    (tmp_path / "mos_with_names.txt").write_text("5.1 i01_01_1.bmp\nfive i01_01_2.bmp\n")
    with pytest.raises(DatasetError, match=r"mos_with_names.txt line 2: MOS 'five'"):
        build_manifest("tid2013", tmp_path)


@pytest.mark.parametrize("name, file, line, expected", [
    ("tid2013", "mos_with_names.txt", "nan i01_01_1.bmp", r"mos_with_names.txt line 1: MOS 'nan' is not a number"),
    ("scid", "MOS_SCID.txt", "SCI01 SCI01_1_1 inf", r"MOS_SCID.txt line 1: MOS 'inf' is not a finite number"),
    ("pipal", "Train_Label/A0001.txt", "A0001_00_00.bmp,NaN", r"A0001.txt line 1: Elo score 'NaN' is not a number"),
])
def test_a_nan_or_infinite_score_in_a_text_list_names_its_line(tmp_path, name, file, line, expected):
    # float() reads 'nan' and 'inf' without complaint; a score must be a finite number.
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file).write_text(line + "\n")
    with pytest.raises(DatasetError, match=expected):
        build_manifest(name, tmp_path)


# NTIRE release (pyiqa scripts/process_pipal.py) and the authors' README (PIPAL-dataset codes/data).


@pytest.mark.parametrize("dist_dirs, ref_dir, label_dir", [
    (("Train_Dis", "Train_Dis"), "Train_Ref", "Train_Label"),
    (("Distortion/Distortion_1", "Distortion/Distortion_2"), "Reference_train", "MOS_Scores_train")])
def test_pipal_elo_labels_and_reference(tmp_path, dist_dirs, ref_dir, label_dir):
    write_image(tmp_path / dist_dirs[0] / "A0001_00_00.bmp")
    write_image(tmp_path / dist_dirs[1] / "A0002_06_26.bmp")
    write_image(tmp_path / ref_dir / "A0001.bmp")
    write_image(tmp_path / ref_dir / "A0002.bmp")
    (tmp_path / label_dir).mkdir()
    # Values from pyiqa's meta_info_PIPALDataset.csv (generated from Train_Label/*.txt).
    (tmp_path / label_dir / "A0001.txt").write_text("A0001_00_00.bmp,1520.0648\n")
    (tmp_path / label_dir / "A0002.txt").write_text("\ufeffA0002_06_26.bmp,1313.9093\n", "utf-8")  # re-saved: BOM
    frame = build_manifest("pipal", tmp_path)
    assert rows(frame) == {
        "A0001_00_00.bmp": (1520.0648, round((1520.0648 - 800) / 1100, 6), "A0001", "", "", ""),
        "A0002_06_26.bmp": (1313.9093, round((1313.9093 - 800) / 1100, 6), "A0002", "", "", "")}
    assert sorted(Path(r).relative_to(tmp_path).as_posix() for r in frame["reference"]) == [
        f"{ref_dir}/A0001.bmp", f"{ref_dir}/A0002.bmp"]


# The 49 x 20 matrix the MATLAB evaluation scripts read, and the 980 x 1 vector DMOS(:) that a public
# Python loader indexes as ref*49 + type*7 + level: both must give the same rows.


@pytest.mark.parametrize("stored", ["matrix", "vector"])
def test_siqad_matrix_is_type_level_by_reference(tmp_path, stored):
    dmos = np.arange(49 * 20, dtype=float).reshape(49, 20) / 10
    on_disk = dmos if stored == "matrix" else dmos.ravel(order="F")[:, None]
    scipy.io.savemat(tmp_path / "DMOS_SIQAD.mat", {"DMOS": on_disk})
    (tmp_path / "DistortedImages").mkdir()
    (tmp_path / "references").mkdir()
    # Public evaluation scripts pair MATLAB's DMOS(:) (column-major) with these loops.
    in_script_order = []
    for ref in range(1, 21):
        (tmp_path / "references" / f"cim{ref}.bmp").write_bytes(f"BM {ref}".encode())
        for kind in range(1, 8):
            for level in range(1, 8):  # existence is what the parser checks; distinct bytes, as distinct images
                name = f"cim{ref}_{kind}_{level}.bmp"
                (tmp_path / "DistortedImages" / name).write_bytes(f"BM {name}".encode())
                in_script_order.append(f"cim{ref}_{kind}_{level}.bmp")
    frame = build_manifest("siqad", tmp_path)
    got = rows(frame)
    assert {name: got[name][0] for name in in_script_order} == dict(zip(in_script_order, dmos.ravel(order="F")))
    # cim3, type 2 (gaussian blur), level 4 -> row (2-1)*7 + 3 = 10, column 2
    assert got["cim3_2_4.bmp"] == (dmos[10, 2], round(1 - dmos[10, 2] / 100, 6), "cim3", "gaussian blur", "4", "")
    assert all(Path(r).is_file() for r in frame["reference"])


def test_scid_text_file(tmp_path):
    write_image(tmp_path / "DistortedSCIs" / "SCI01_1_1.bmp")
    write_image(tmp_path / "DistortedSCIs" / "SCI40_9_5.bmp")
    write_image(tmp_path / "ReferenceSCIs" / "SCI01.bmp")
    write_image(tmp_path / "ReferenceSCIs" / "SCI40.bmp")
    # No header; whitespace-separated reference, image name without extension, MOS.
    (tmp_path / "MOS_SCID.txt").write_text("SCI01 SCI01_1_1 78.5\r\nSCI40\tSCI40_9_5\t20.25\r\n")
    frame = build_manifest("scid", tmp_path)
    assert rows(frame) == {"SCI01_1_1.bmp": (78.5, 0.785, "SCI01", "gaussian noise", "1", ""),
                           "SCI40_9_5.bmp": (20.25, 0.2025, "SCI40", "color quantization with dithering", "5", "")}
    assert all(Path(r).is_file() for r in frame["reference"])


def test_scid_line_whose_reference_disagrees_with_the_image_is_refused(tmp_path):
    (tmp_path / "MOS_SCID.txt").write_text("SCI01 SCI01_1_1 78.5\nSCI02 SCI03_1_1 50\n")
    with pytest.raises(DatasetError, match=r"MOS_SCID.txt line 2: reference 'SCI02' does not match"):
        build_manifest("scid", tmp_path)


def _csiq_sheet(path, extra=()):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("openpyxl", reason="openpyxl is needed to write/read CSIQ's .xlsx")
    # Sheet all_by_image: header on row 4, columns D..I (image, dst_idx, dst_type, dst_lev,
    # dmos_std, dmos); 1600 is stored as a number. Values from pyiqa meta_info_CSIQDataset.csv.
    pad, more = [None] * 3, list(extra)
    table = pd.DataFrame([pad + [None] * (6 + len(more))] * 3 +
                         [pad + ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"] + more,
                          pad + [1600, 1, "noise", 1, 0.02, 0.061989] + [0.5] * len(more),
                          pad + ["aerial_city", 3, "jpeg 2000", 5, 0.1, 0.955908] + [0.5] * len(more),
                          pad + [None] * (6 + len(more))])
    with pd.ExcelWriter(path) as writer:
        table.to_excel(writer, sheet_name="all_by_image", header=False, index=False)


def test_csiq_spreadsheet_layout(tmp_path):
    _csiq_sheet(tmp_path / "csiq.DMOS.xlsx")
    write_image(tmp_path / "dst_imgs" / "awgn" / "1600.AWGN.1.png")
    write_image(tmp_path / "dst_imgs" / "jpeg2000" / "aerial_city.jpeg2000.5.png")
    got = rows(build_manifest("csiq", tmp_path))
    assert got == {"1600.AWGN.1.png": (0.061989, 0.938011, "1600", "awgn", "1", ""),
                   "aerial_city.jpeg2000.5.png": (0.955908, 0.044092, "aerial_city", "jpeg2000", "5", "")}


def test_csiq_blank_dst_type_is_named_not_called_unknown_nan(tmp_path):
    _csiq_sheet(tmp_path / "csiq.DMOS.xlsx")
    pd = pytest.importorskip("pandas")
    sheet = pd.read_excel(tmp_path / "csiq.DMOS.xlsx", sheet_name="all_by_image", header=None)
    sheet.iloc[5, 5] = None  # aerial_city's dst_type, on line 6 under the header of line 4
    with pd.ExcelWriter(tmp_path / "csiq.DMOS.xlsx") as writer:
        sheet.to_excel(writer, sheet_name="all_by_image", header=False, index=False)
    with pytest.raises(DatasetError) as err:
        build_manifest("csiq", tmp_path)
    assert str(err.value) == f"csiq: {tmp_path / 'csiq.DMOS.xlsx'} line 6: 'dst_type' is blank (1 such row(s))"


def test_csiq_sheet_with_a_column_named_twice_is_refused_by_name(tmp_path):
    # A second "dmos" right of the table was a TypeError traceback from pandas.
    _csiq_sheet(tmp_path / "csiq.DMOS.xlsx", extra=["dmos"])
    write_image(tmp_path / "dst_imgs" / "awgn" / "1600.AWGN.1.png")
    with pytest.raises(DatasetError, match=r"csiq: .*csiq.DMOS.xlsx has the column 'dmos' more than once; keep one"):
        build_manifest("csiq", tmp_path)


# dst_imgs.zip and src_imgs.zip have no top folder (public scripts unzip them into dst_imgs/ and
# src_imgs/ themselves), so `datasets download` leaves awgn/... and 1600.png beside the sheet;
# the icbcbicc/IQA-Dataset repack spells the folders AWGN/, JPEG/, and some copies are lower-cased.


@pytest.mark.parametrize("awgn, jp2k, refs", [
    ("awgn/1600.AWGN.1.png", "jpeg2000/aerial_city.jpeg2000.5.png", ""),
    ("dst_imgs/AWGN/1600.awgn.1.png", "dst_imgs/jpeg2000/aerial_city.jpeg2000.5.png", "src_imgs/")])
def test_csiq_archives_unpacked_without_their_folders(tmp_path, awgn, jp2k, refs):
    _csiq_sheet(tmp_path / "csiq.DMOS.xlsx")
    write_image(tmp_path / awgn)
    write_image(tmp_path / jp2k)
    write_image(tmp_path / f"{refs}1600.png")
    write_image(tmp_path / f"{refs}aerial_city.png")
    frame = build_manifest("csiq", tmp_path)
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in frame["image"]) == sorted([awgn, jp2k])
    assert dict(zip(frame["content_id"], frame["raw_score"])) == {"1600": 0.061989, "aerial_city": 0.955908}
    assert sorted(Path(r).relative_to(tmp_path).as_posix() for r in frame["reference"]) == [
        f"{refs}1600.png", f"{refs}aerial_city.png"]


@pytest.mark.parametrize("folder", ["dst_imgs", "dst_imgs_all"])
def test_csiq_with_every_distorted_image_in_one_folder(tmp_path, folder):
    # pyiqa's csiq.tgz keeps dst_imgs/ flat (1600.AWGN.1.png directly in it); HyperIQA's copies use dst_imgs_all/.
    _csiq_sheet(tmp_path / "csiq.DMOS.xlsx")
    write_image(tmp_path / folder / "1600.AWGN.1.png")
    write_image(tmp_path / folder / "aerial_city.JPEG2000.5.png")
    frame = build_manifest("csiq", tmp_path)
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in frame["image"]) == [
        f"{folder}/1600.AWGN.1.png", f"{folder}/aerial_city.JPEG2000.5.png"]
    assert list(frame["distortion"]) == ["awgn", "jpeg2000"]


def test_csiq_without_the_authors_sheet_names_it_and_the_derived_list(tmp_path):
    write_image(tmp_path / "dst_imgs_all" / "1600.AWGN.1.png")
    (tmp_path / "csiq_label.txt").write_text("1600.AWGN.1.png 0.062\n")
    with pytest.raises(DatasetError, match=r"csiq: 'csiq.DMOS.xlsx' not found .*csiq_label.txt is HyperIQA's list "
                                           r".*https://s2.smu.edu/~eclarson/csiq/csiq.DMOS.xlsx"):
        build_manifest("csiq", tmp_path)


def test_unlabelled_kadis_lists_images_and_refuses_a_manifest(tmp_path):
    for name in ("a.png", "b.png"):  # kadis700k.zip unpacks kadis700k/ref_imgs/ (ARNIQA README)
        write_image(tmp_path / "kadis700k" / "ref_imgs" / name)
    assert [p.name for p in list_images("kadis700k", tmp_path)] == ["a.png", "b.png"]
    with pytest.raises(DatasetError, match="no quality scores"):
        build_manifest("kadis700k", tmp_path)
    with pytest.raises(DatasetError, match=r"kadis700k: .*a.png is a file, not the dataset's folder; give the folder "):
        list_images("kadis700k", tmp_path / "kadis700k" / "ref_imgs" / "a.png")


def test_live_mat_variables_that_are_not_the_published_vectors_are_named(tmp_path):
    base = tmp_path / "databaserelease2"
    total = 982
    base.mkdir()
    scipy.io.savemat(base / "refnames_all.mat", {"refnames_all": np.array([["caps.bmp"]] * total, dtype=object).T})
    cases = [({"dmos_new": np.ones((2, total // 2)), "orgs": np.zeros((1, total))}, r"'dmos_new' is a float64 array "
              r"of shape \(2, 491\), not the published vector"),   # flattened, it would interleave the scores
             ({"dmos_new": np.array(["abc"] * total)[None], "orgs": np.zeros((1, total))}, r"'dmos_new' is a <U3"),
             ({"dmos_new": np.ones((1, total)), "orgs": np.full((1, total), 0.7)},
              r"'orgs' holds \[0.7\]; the release marks each image 0 .* or 1")]
    for content, message in cases:
        scipy.io.savemat(base / "dmos_realigned.mat", content)
        with pytest.raises(DatasetError, match=message):
            build_manifest("live", tmp_path)
    names = np.array([["caps.bmp"]] * total, dtype=object).T
    names[0, 5] = ""  # its reference was the refimgs/ folder, its content 'refimgs'
    scipy.io.savemat(base / "refnames_all.mat", {"refnames_all": names})
    scipy.io.savemat(base / "dmos_realigned.mat", {"dmos_new": np.ones((1, total)), "orgs": np.zeros((1, total))})
    with pytest.raises(DatasetError, match=r"live: .*refnames_all.mat: 'refnames_all' entry 6 is blank \(1 such "):
        build_manifest("live", tmp_path)
