"""Every parser on a tiny copy of its dataset's published layout, against hand-written rows."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fakeserver import kadid_layout, write_image
from iqabench.datasets import DatasetError, UnknownDatasetError, build_manifest, get_spec, list_images


def rows(frame):
    """image file name -> (raw, score, content_id, distortion, level, split)."""
    return {Path(r.image).name: (r.raw_score, round(r.score, 6), r.content_id, r.distortion, r.level, r.split)
            for r in frame.itertuples()}


def test_unknown_name_lists_known_ones():
    with pytest.raises(UnknownDatasetError, match="known datasets: .*kadid10k.*koniq10k"):
        get_spec("konik")


def test_koniq_scores_file_uses_mos_zscore_not_the_five_point_mos(tmp_path):
    for name in ("1.jpg", "2.jpg"):
        write_image(tmp_path / "512x384" / name)
    # c1..c5 are rating counts, MOS the 1-5 mean, MOS_zscore the 0-100 score; fields may be quoted
    # (as in the lab's KonIQ++ metadata), which must not change what is read.
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text(
        '"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"\n'
        '"1.jpg",0,0,100,0,0,100,3.0,0.4,55.5\n"2.jpg",0,0,0,100,0,100,4.0,0.3,80.25\n')
    got = rows(build_manifest("koniq10k", tmp_path))
    assert got == {"1.jpg": (55.5, 0.555, "1", "", "", ""), "2.jpg": (80.25, 0.8025, "2", "", "", "")}


def test_koniq_unknown_set_names_line(tmp_path):
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n1.jpg,0,0,1,0,0,1,50,0.1,training\n"
        "2.jpg,0,0,1,0,0,1,50,0.1,holdout\n")
    with pytest.raises(DatasetError, match=r"line 3: unknown set 'holdout'"):
        build_manifest("koniq10k", tmp_path)


def test_spaq_annotations_xlsx_in_the_authors_layout(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("openpyxl", reason="openpyxl is needed to write/read SPAQ's .xlsx")
    # h4nwei/SPAQ dirtree.jpg: SPAQ/Annotations/*.xlsx beside 'SPAQ zip'/, where the split archive
    # SPAQ.zip (.z01..) unpacks TestImage/. Header and rows as in pyiqa meta_info_SPAQDataset.csv.
    base = tmp_path / "SPAQ"
    write_image(base / "SPAQ zip" / "TestImage" / "00001.jpg")
    write_image(base / "SPAQ zip" / "TestImage" / "00002.jpg")
    (base / "Annotations").mkdir(parents=True)
    pd.DataFrame({"Image name": ["00001.jpg", "00002.jpg"], "MOS": [48.86, 62.5], "Brightness": [47.43, 55.38],
                  "Colorfulness": [55.57, 67.13], "Contrast": [55.71, 53.13], "Noisiness": [37.86, 57.5],
                  "Sharpness": [42.57, 47.5]}).to_excel(base / "Annotations" / "MOS and Image attribute scores.xlsx",
                                                        index=False)
    got = rows(build_manifest("spaq", tmp_path))
    assert got == {"00001.jpg": (48.86, 0.4886, "00001", "", "", ""), "00002.jpg": (62.5, 0.625, "00002", "", "", "")}


def test_spaq_csv_errors_name_file_and_line(tmp_path):
    write_image(tmp_path / "TestImage" / "1.jpg")
    write_image(tmp_path / "TestImage" / "2.jpg")
    csv = tmp_path / "mos.csv"
    csv.write_text("Image name,MOS\n1.jpg,40\n2.jpg,\n")
    with pytest.raises(DatasetError, match=r"mos.csv line 3: 'MOS' is blank, not a number"):
        build_manifest("spaq", tmp_path)
    csv.write_text("Image name,MOS\n1.jpg,40\n1.jpg,41\n")
    with pytest.raises(DatasetError, match=r"line 3: image '1.jpg' is listed again \(first on line 2\)"):
        build_manifest("spaq", tmp_path)
    csv.write_text("Image,MOS\n1.jpg,40\n")
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['Image name'\]"):
        build_manifest("spaq", tmp_path)
    csv.write_text("Image name,MOS\n1.jpg,40\n3.jpg,41\n")
    with pytest.raises(DatasetError, match=r"1 of 2 listed image\(s\) are missing:\n  .*3.jpg"):
        build_manifest("spaq", tmp_path)


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


def test_clive_drops_the_seven_practice_images(tmp_path):
    base = tmp_path / "ChallengeDB_release"
    # 627 of the 1169 names end in .JPG (pyiqa meta_info_LIVEChallengeDataset.csv: 533.JPG ...).
    names = [f"t{i}.bmp" for i in range(1, 8)] + ["10.bmp", "533.JPG"]
    mos = [50.0] * 7 + [63.9, 25.5]
    for n in names[7:]:
        write_image(base / "Images" / n)
    (base / "Data").mkdir(parents=True)
    scipy.io.savemat(base / "Data" / "AllImages_release.mat",
                     {"AllImages_release": np.array([[n] for n in names], dtype=object)})
    scipy.io.savemat(base / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.array([mos])})
    got = rows(build_manifest("clive", tmp_path))
    assert got == {"10.bmp": (63.9, 0.639, "10", "", "", ""), "533.JPG": (25.5, 0.255, "533", "", "", "")}


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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the realigned span is the declared scale: no out-of-range warning
        frame = build_manifest("live", tmp_path)
    assert len(frame) == total - 1
    assert frame["score"].between(0, 1).all()
    assert Path(frame["image"].iloc[0]) == base / "jp2k" / "img2.bmp"
    assert frame["raw_score"].iloc[0] == pytest.approx(dmos[1])
    assert Path(frame["reference"].iloc[0]) == base / "refimgs" / "caps.bmp"
    (tmp_path / "dmos_realigned.mat").unlink()
    # The release's own dmos.mat ('dmos', 'orgs'; pyiqa scripts/process_live.py) is never a stand-in.
    scipy.io.savemat(base / "dmos.mat", {"dmos": dmos[None, :], "orgs": orgs[None, :]})
    with pytest.raises(DatasetError, match=r"dmos_realigned.mat' not found.*dmos.mat is the release's original "
                                           r"DMOS.*separate download \(https://live.ece.utexas.edu/.*/release2/"):
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


def test_tid2013_malformed_line_is_named(tmp_path):
    (tmp_path / "mos_with_names.txt").write_text("5.1 i01_01_1.bmp\nfive i01_01_2.bmp\n")
    with pytest.raises(DatasetError, match=r"mos_with_names.txt line 2: MOS 'five'"):
        build_manifest("tid2013", tmp_path)


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
        (tmp_path / "references" / f"cim{ref}.bmp").write_bytes(b"BM")
        for kind in range(1, 8):
            for level in range(1, 8):
                (tmp_path / "DistortedImages" / f"cim{ref}_{kind}_{level}.bmp").write_bytes(b"BM")
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


def test_flive_official_split_from_its_label_files(tmp_path):
    # Names and MOS from labels_image.csv / labels640.csv of baidut/PaQ-2-PiQ database/ (labels640 keeps
    # its patch columns before mos_image,name_image); labels=640_padded.csv (over 4 MiB) is read by column.
    db, a, b, c = (tmp_path / "database", "blur_dataset/motion0044.jpg", "EE371R/rq59.jpg",
                   "voc_emotic_ava/EMOTIC__cwpvmtkuw83q2or3za.jpg")
    for name in (a, b, c):
        write_image(db / name)
    (db / "labels_image.csv").write_text(f"name,mos\n{a},75.44372347614072\n{b},65.92692771874236\n"
                                         f"{c},59.648718683045665\n")
    (db / "labels640.csv").write_text(f"mos_patch_1,name_patch,mos_image,name_image,width_image\n"
                                      f"79.47,patches/{c.split('/')[1]},59.64871868,{c},1200\n")
    (db / "labels=640_padded.csv").write_text(f"name_image,mos_image,is_valid\n{a},75.44,False\n{b},65.93,True\n")
    got = rows(build_manifest("flive", tmp_path))
    assert got == {"motion0044.jpg": (75.44372347614072, 0.754437, "motion0044", "", "", "train"),
                   "rq59.jpg": (65.92692771874236, 0.659269, "rq59", "", "", "val"),
                   "EMOTIC__cwpvmtkuw83q2or3za.jpg": (59.648718683045665, 0.596487, "EMOTIC__cwpvmtkuw83q2or3za",
                                                      "", "", "test")}


def _csiq_sheet(path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("openpyxl", reason="openpyxl is needed to write/read CSIQ's .xlsx")
    # Sheet all_by_image: header on row 4, columns D..I (image, dst_idx, dst_type, dst_lev,
    # dmos_std, dmos); 1600 is stored as a number. Values from pyiqa meta_info_CSIQDataset.csv.
    pad = [None] * 3
    table = pd.DataFrame([pad + [None] * 6, pad + [None] * 6, pad + [None] * 6,
                          pad + ["image", "dst_idx", "dst_type", "dst_lev", "dmos_std", "dmos"],
                          pad + [1600, 1, "noise", 1, 0.02, 0.061989],
                          pad + ["aerial_city", 3, "jpeg 2000", 5, 0.1, 0.955908],
                          pad + [None] * 6])
    with pd.ExcelWriter(path) as writer:
        table.to_excel(writer, sheet_name="all_by_image", header=False, index=False)


# data.csv and AGIQA-3K.zip are separate downloads; public code reads the images from AGIQA-3K/,
# AGIQA-3k/Images/ beside data.csv, or the folder data.csv was dropped into.
@pytest.mark.parametrize("folder", ["AGIQA-3K", "Images", ""])
def test_agiqa3k_image_folder_beside_or_around_data_csv(tmp_path, folder):
    write_image(tmp_path / folder / "sd1.5_normal_000.jpg")
    write_image(tmp_path / folder / "AttnGAN_normal_000.jpg")
    (tmp_path / "data.csv").write_text("name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n"
                                       "AttnGAN_normal_000.jpg,statue of a man,,,,0.965602553,0.22,0.41,0.62\n"
                                       "sd1.5_normal_000.jpg,statue of a man,,,,2.5,0.5,4.0,0.3\n")
    frame = build_manifest("agiqa3k", tmp_path)
    assert sorted(Path(p).parent for p in frame["image"]) == [tmp_path / folder] * 2
    assert set(frame["content_id"]) == {"statue of a man"}
    # mos_quality is the quality MOS; mos_align (text alignment) must not be read.
    assert rows(frame)["AttnGAN_normal_000.jpg"][:2] == (0.965602553, round(0.965602553 / 5, 6))
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    (empty / "data.csv").write_text((tmp_path / "data.csv").read_text())
    with pytest.raises(DatasetError, match=r"2 of 2 listed image\(s\) are missing"):
        build_manifest("agiqa3k", empty)


def test_csiq_spreadsheet_layout(tmp_path):
    _csiq_sheet(tmp_path / "csiq.DMOS.xlsx")
    write_image(tmp_path / "dst_imgs" / "awgn" / "1600.AWGN.1.png")
    write_image(tmp_path / "dst_imgs" / "jpeg2000" / "aerial_city.jpeg2000.5.png")
    got = rows(build_manifest("csiq", tmp_path))
    assert got == {"1600.AWGN.1.png": (0.061989, 0.938011, "1600", "awgn", "1", ""),
                   "aerial_city.jpeg2000.5.png": (0.955908, 0.044092, "aerial_city", "jpeg2000", "5", "")}


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


def test_unlabelled_kadis_lists_images_and_refuses_a_manifest(tmp_path):
    for name in ("a.png", "b.png"):  # kadis700k.zip unpacks kadis700k/ref_imgs/ (ARNIQA README)
        write_image(tmp_path / "kadis700k" / "ref_imgs" / name)
    assert [p.name for p in list_images("kadis700k", tmp_path)] == ["a.png", "b.png"]
    with pytest.raises(DatasetError, match="no quality scores"):
        build_manifest("kadis700k", tmp_path)


def test_clive_refuses_a_names_file_not_starting_with_the_practice_images(tmp_path):
    base = tmp_path / "ChallengeDB_release"
    names = ["10.bmp"] + [f"t{i}.bmp" for i in range(1, 8)] + ["100.bmp"]
    (base / "Data").mkdir(parents=True)
    scipy.io.savemat(base / "Data" / "AllImages_release.mat",
                     {"AllImages_release": np.array([[n] for n in names], dtype=object)})
    scipy.io.savemat(base / "Data" / "AllMOS_release.mat", {"AllMOS_release": np.ones((1, len(names)))})
    with pytest.raises(DatasetError, match=r"should start with the 7 practice images"):
        build_manifest("clive", tmp_path)


def _bid_sheet(path, rows_):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("openpyxl", reason="openpyxl is needed to write/read BID's .xlsx")
    pd.DataFrame(rows_).to_excel(path, header=False, index=False)


def test_bid_reads_number_and_grade_by_position(tmp_path):
    base = tmp_path / "ImageDatabase"
    write_image(base / "DatabaseImage0001.JPG")
    write_image(base / "DatabaseImage0586.JPG")
    # Header as a pandas loader reads it by name; the columns are taken by position as most loaders do.
    _bid_sheet(base / "DatabaseGrades.xlsx", [["Image Number", "Average Subjective Grade"], [1, 4.2], [586, 0.5],
                                              [None, None]])
    got = rows(build_manifest("bid", tmp_path))
    assert got == {"DatabaseImage0001.JPG": (4.2, 0.84, "DatabaseImage0001", "", "", ""),
                   "DatabaseImage0586.JPG": (0.5, 0.1, "DatabaseImage0586", "", "", "")}


def test_bid_errors_name_the_line(tmp_path, monkeypatch):
    xlsx = tmp_path / "DatabaseGrades.xlsx"
    _bid_sheet(xlsx, [[1, 4.2], [2, 3.0]])
    with pytest.raises(DatasetError, match=r"row 1 holds numbers"):
        build_manifest("bid", tmp_path)
    _bid_sheet(xlsx, [["n", "grade"], [1, 4.2], [2, "4,1"]])
    with pytest.raises(DatasetError, match=r"line 3: 'grade \(column B\)' is '4,1', not a number"):
        build_manifest("bid", tmp_path)
    _bid_sheet(xlsx, [["n", "grade"], [1, 4.2], [1, 3.0]])
    with pytest.raises(DatasetError, match=r"line 3: image 'DatabaseImage0001.JPG' is listed again"):
        build_manifest("bid", tmp_path)
    # The legacy DatabaseGrades.xls (read by a public MATLAB loader) is found too, and needs xlrd.
    xlsx.rename(tmp_path / "DatabaseGrades.xls")
    monkeypatch.setitem(sys.modules, "xlrd", None)
    with pytest.raises(DatasetError, match=r"DatabaseGrades.xls needs the 'xlrd' package.*save it as DatabaseGrades"):
        build_manifest("bid", tmp_path)
