"""Every parser of an authentic-distortion set (photos rated as they are, no pristine reference: KonIQ, SPAQ,
CLIVE, FLIVE, BID, AGIQA-3K) on a tiny copy of its dataset's published layout, against hand-written rows.
The sets made by distorting references are in test_datasets_parsers_synthetic.py."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from fakeserver import write_image
from iqabench.datasets import DatasetError, UnknownDatasetError, build_manifest, get_spec


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


def test_koniq_sets_file_gives_the_0_100_mos_and_the_official_split(tmp_path):
    # koniq10k_distributions_sets.csv as published: its MOS is already on 0-100; set names spelled out.
    for name in ("10004473376.jpg", "2.jpg", "3.jpg"):
        write_image(tmp_path / "512x384" / name)
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n10004473376.jpg,0,1,4,10,2,17,77.38,12.1,training\n"
        "2.jpg,0,0,1,0,0,1,50,0.1,validation\n3.jpg,3,1,0,0,0,4,10.5,0.2,test\n")
    got = rows(build_manifest("koniq10k", tmp_path))
    assert got == {"10004473376.jpg": (77.38, 0.7738, "10004473376", "", "", "train"),
                   "2.jpg": (50.0, 0.5, "2", "", "", "val"), "3.jpg": (10.5, 0.105, "3", "", "", "test")}


def test_koniq_unknown_set_names_line(tmp_path):
    (tmp_path / "koniq10k_distributions_sets.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n1.jpg,0,0,1,0,0,1,50,0.1,training\n"
        "2.jpg,0,0,1,0,0,1,50,0.1,holdout\n")
    with pytest.raises(DatasetError, match=r"line 3: unknown set 'holdout'"):
        build_manifest("koniq10k", tmp_path)


def test_koniq_blank_set_names_file_line_and_column(tmp_path):
    sets = tmp_path / "koniq10k_distributions_sets.csv"  # it said "unknown set nan"
    sets.write_text("image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,set\n1.jpg,0,0,1,0,0,1,50,0.1,training\n"
                    "2.jpg,0,0,1,0,0,1,50,0.1,\n")
    with pytest.raises(DatasetError) as err:
        build_manifest("koniq10k", tmp_path)
    assert str(err.value) == f"koniq10k: {sets} line 3: 'set' is blank (1 such row(s))"


def test_koniq_score_file_given_as_the_dataset_folder_names_its_folder(tmp_path):
    from typer.testing import CliRunner
    from iqabench.datasets.cli import app

    sets = tmp_path / "koniq 10k" / "koniq10k_distributions_sets.csv"  # it said "... --from PATH", the command typed
    write_image(sets.parent / "512x384" / "1.jpg")
    sets.write_text("image_name,MOS,set\n1.jpg,50,training\n")
    result = CliRunner().invoke(app, ["--registry", str(tmp_path / "registry.json"), "add", "koniq10k", "--from",
                                      str(sets)])
    assert result.exit_code == 1 and not (tmp_path / "registry.json").exists() and result.output == (
        f"error: koniq10k: {sets} is a file, not the dataset's folder; give the folder that holds it: "
        f"`iqabench datasets add koniq10k --from '{sets.parent}'`\n")


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


def test_flive_official_split_from_its_label_files(tmp_path):
    # Names and MOS from labels_image.csv / labels640.csv of baidut/PaQ-2-PiQ database/ (labels640 keeps
    # its patch columns before mos_image,name_image); labels=640_padded.csv (over 4 MiB) is read by column.
    db, a, b, c = (tmp_path / "database", "blur_dataset/motion0044.jpg", "EE371R/rq59.jpg",
                   "voc_emotic_ava/EMOTIC__cwpvmtkuw83q2or3za.jpg")
    for name in (a, b, c):
        write_image(db / name)
    # Both files are published with CRLF line endings (written here as they are).
    (db / "labels_image.csv").write_bytes(f"name,mos\r\n{a},75.44372347614072\r\n{b},65.92692771874236\r\n"
                                          f"{c},59.648718683045665\r\n".encode())
    (db / "labels640.csv").write_bytes(f"mos_patch_1,name_patch,mos_image,name_image,width_image\r\n"
                                       f"79.47,patches/{c.split('/')[1]},59.64871868,{c},1200\r\n".encode())
    (db / "labels=640_padded.csv").write_text(f"name_image,mos_image,is_valid\n{a},75.44,False\n{b},65.93,True\n")
    got = rows(build_manifest("flive", tmp_path))
    assert got == {"motion0044.jpg": (75.44372347614072, 0.754437, "motion0044", "", "", "train"),
                   "rq59.jpg": (65.92692771874236, 0.659269, "rq59", "", "", "val"),
                   "EMOTIC__cwpvmtkuw83q2or3za.jpg": (59.648718683045665, 0.596487, "EMOTIC__cwpvmtkuw83q2or3za",
                                                      "", "", "test")}


@pytest.mark.parametrize("valid, says", [("", "'is_valid' is blank (1 such row(s))"),
                                         ("yes", "'is_valid' is 'yes'; expected True or False, as in the published "
                                                 "file")])  # both made the image train, silently
def test_flive_split_file_with_a_blank_or_unknown_is_valid_is_named(tmp_path, valid, says):
    name = "blur_dataset/motion0044.jpg"
    write_image(tmp_path / "database" / name)
    (tmp_path / "database" / "labels_image.csv").write_text(f"name,mos\n{name},75.4\n")
    (tmp_path / "database" / "labels640.csv").write_text("mos_image,name_image\n")
    padded = tmp_path / "database" / "labels=640_padded.csv"
    padded.write_text(f"name_image,mos_image,is_valid\n{name},75.4,{valid}\n")
    with pytest.raises(DatasetError) as err:
        build_manifest("flive", tmp_path)
    assert str(err.value) == f"flive: {padded} line 2: {says}"


def test_flive_in_arniqas_layout_labels_beside_the_database_folder(tmp_path):
    # ARNIQA's README: FLIVE/labels_image.csv with the images under FLIVE/database/ (no inner copy).
    name = "voc_emotic_ava/VOC2012__2008_002218.jpg"
    write_image(tmp_path / "database" / name)
    (tmp_path / "labels_image.csv").write_bytes(f"name,mos\r\n{name},71.5\r\n".encode())
    got = rows(build_manifest("flive", tmp_path))
    assert got == {"VOC2012__2008_002218.jpg": (71.5, 0.715, "VOC2012__2008_002218", "", "", "")}


def test_flive_with_only_one_split_file_is_refused_naming_the_other(tmp_path):
    name = "blur_dataset/motion0044.jpg"
    write_image(tmp_path / "database" / name)
    (tmp_path / "database" / "labels_image.csv").write_text(f"name,mos\n{name},75.4\n")
    (tmp_path / "database" / "labels640.csv").write_text(f"mos_image,name_image\n75.4,{name}\n")
    with pytest.raises(DatasetError, match=r"not labels=640_padded\.csv: the official split needs both.*PaQ-2-PiQ"):
        build_manifest("flive", tmp_path)


# data.csv and AGIQA-3K.zip are separate downloads; public code reads the images from AGIQA-3K/,
# AGIQA-3k/Images/ beside data.csv, or the folder data.csv was dropped into.
@pytest.mark.parametrize("folder", ["AGIQA-3K", "Images", ""])
def test_agiqa3k_image_folder_beside_or_around_data_csv(tmp_path, folder):
    write_image(tmp_path / folder / "sd1.5_normal_000.jpg")
    write_image(tmp_path / folder / "AttnGAN_normal_000.jpg")
    # Header and first row as in lcysyzxdxc/AGIQA-3k-Database data.csv, which has CRLF line endings.
    (tmp_path / "data.csv").write_bytes(b"name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\r\n"
                                        b"AttnGAN_normal_000.jpg,statue of a man,,,,0.965602553,0.223270101,"
                                        b"0.40889324,0.615607722\r\n"
                                        b"sd1.5_normal_000.jpg,statue of a man,,,,2.5,0.5,4.0,0.3\r\n")
    frame = build_manifest("agiqa3k", tmp_path)
    assert sorted(Path(p).parent for p in frame["image"]) == [tmp_path / folder] * 2
    assert set(frame["content_id"]) == {"statue of a man"}
    # mos_quality is the quality MOS; mos_align (text alignment) must not be read.
    assert rows(frame)["AttnGAN_normal_000.jpg"][:2] == (0.965602553, round(0.965602553 / 5, 6))
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    (empty / "data.csv").write_bytes((tmp_path / "data.csv").read_bytes())
    with pytest.raises(DatasetError, match=r"2 of 2 listed image\(s\) are missing"):
        build_manifest("agiqa3k", empty)
    # A blank prompt said "agiqa3k manifest from ...: empty 'content_id' in row 3", naming neither file nor column.
    (tmp_path / "data.csv").write_bytes((tmp_path / "data.csv").read_bytes().replace(b",statue of a man,", b",,", 1))
    with pytest.raises(DatasetError) as err:
        build_manifest("agiqa3k", tmp_path)
    assert str(err.value) == f"agiqa3k: {tmp_path / 'data.csv'} line 2: 'prompt' is blank (1 such row(s))"


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


# HyperIQA-style loaders read the images beside DatabaseGrades.xlsx; another reads them from Image/.
@pytest.mark.parametrize("folder", ["ImageDatabase", "", "Image"])
def test_bid_reads_number_and_grade_by_position(tmp_path, folder):
    base = tmp_path / "BID"
    write_image(base / folder / "DatabaseImage0001.JPG")
    write_image(base / folder / "DatabaseImage0586.JPG")
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
