"""The leaderboard, the combined cross-dataset table and the files behind `dvc plots`."""
from __future__ import annotations

import pandas as pd
from matplotlib.collections import PathCollection

from iqabench import reporting

WITHIN = pd.DataFrame({"model": ["contrique", "contrique", "fr:gmsd", "brisque", "brisque"],
                       "dataset": ["single", "mixed", "single", "single", "mixed"],
                       "srcc": [0.44, 0.53, 0.81, 0.62, 0.58]})


def test_leaderboard_marks_the_best_of_each_column_and_leaves_missing_cells_visible():
    table = reporting.leaderboard(WITHIN)
    assert list(table.index) == ["contrique", "fr:gmsd", "brisque"] and list(table.columns) == ["single", "mixed"]
    lines = reporting.leaderboard_markdown(WITHIN, full_reference={"fr:gmsd"}).splitlines()
    # The winners come first (MLflow folds a long note); a full-reference winner also names the best NR row.
    assert lines[0] == "Best: single **fr:gmsd** 0.810 (no-reference: brisque 0.620); mixed **brisque** 0.580."
    assert lines[2] == "| model | single | mixed |"
    # Rows best first, by their mean over the datasets they have (as the MLflow columns and srcc.png).
    assert lines[4] == "| fr:gmsd | **0.810** | — |"      # no reference on "mixed": a dash, not a zero
    assert lines[5] == "| brisque | 0.620 | **0.580** |"
    assert lines[6] == "| contrique | 0.440 | 0.530 |"


def test_the_mlflow_copy_of_results_names_its_figures_instead_of_linking_them():
    text = "# r\n\n![within-dataset SRCC, its spread](srcc.png)\n\n| a | b |\n![cross](cross_srcc.png)\n"
    assert reporting.without_images(text) == (
        "# r\n\n*Figure `srcc.png` (an artifact of this run): within-dataset SRCC, its spread.*\n\n| a | b |\n"
        "*Figure `cross_srcc.png` (an artifact of this run): cross.*\n")


def test_cross_wide_puts_every_pair_of_a_model_on_one_row():
    cross = pd.DataFrame({"model": ["a", "a", "a", "a"], "train": ["x", "x", "y", "y"],
                          "test": ["y", "x", "x", "y"], "srcc": [0.3, 0.9, 0.2, 0.8]})
    wide = reporting.cross_wide(cross)
    assert list(wide.columns) == ["x->x", "x->y", "y->x", "y->y"]
    assert wide.loc["a"].tolist() == [0.9, 0.3, 0.2, 0.8]


def test_plot_data_writes_one_file_per_dataset_and_pair_and_drops_stale_ones(tmp_path):
    stale = tmp_path / "plots" / "scatter" / "gone--model.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("score,prediction\n")
    predictions = pd.DataFrame({"model": ["fr:gmsd"] * 3, "dataset": ["single"] * 3, "split": [0, 0, 1],
                                "image": ["a", "b", "c"], "score": [0.1, 0.5, 0.9], "prediction": [0.2, 0.4, 0.8]})
    written = reporting.plot_data(WITHIN, predictions, tmp_path / "plots")
    names = sorted(str(p.relative_to(tmp_path / "plots")) for p in written)
    assert names == ["scatter/single--fr-gmsd.csv", "srcc/mixed.csv", "srcc/single.csv"]
    assert not stale.exists()
    scatter = pd.read_csv(tmp_path / "plots" / "scatter" / "single--fr-gmsd.csv")
    assert scatter["image"].tolist() == ["a", "b"]  # test split 0 only
    assert pd.read_csv(tmp_path / "plots" / "srcc" / "single.csv")["model"].tolist() == ["contrique", "fr:gmsd", "brisque"]


def test_plot_data_holds_no_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the repository a stage runs in
    predictions = pd.DataFrame({"model": ["contrique"] * 2, "dataset": ["single"] * 2, "split": [0, 0],
                                "image": [str(tmp_path / "data/prepared/single/images/a.png"), "/elsewhere/b.png"],
                                "score": [0.1, 0.5], "prediction": [0.2, 0.4]})
    reporting.plot_data(WITHIN, predictions, tmp_path / "plots")
    scatter = pd.read_csv(tmp_path / "plots" / "scatter" / "single--contrique.csv")
    assert scatter["image"].tolist() == ["data/prepared/single/images/a.png", "b.png"]


def test_srcc_figure_ranks_each_dataset_and_draws_the_seed_whisker_only_where_measured(tmp_path, monkeypatch):
    shown = {}
    real_save = reporting._save
    monkeypatch.setattr(reporting, "_save", lambda fig, path: shown.setdefault("fig", fig) and real_save(fig, path))
    within = WITHIN.assign(srcc_q25=WITHIN["srcc"] - 0.05, srcc_q75=WITHIN["srcc"] + 0.03)
    variance = pd.DataFrame({"metric": ["within.brisque.single.srcc", "within.contrique.single.srcc"],
                             "std": [0.08, 0.04]})
    path = reporting.srcc_figure(within, tmp_path / "srcc.png", variance, full_reference={"fr:gmsd"})
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size < 200_000
    single, mixed = shown["fig"].axes
    assert [t.get_text() for t in single.get_yticklabels()] == ["contrique", "brisque", "fr:gmsd"]  # best on top
    assert [t.get_text() for t in mixed.get_yticklabels()] == ["contrique", "brisque"]
    whiskers = single.containers[0].lines[2][0].get_segments()  # the errorbar's horizontal segments, in row order
    assert [round(float(seg[1][0] - seg[0][0]) / 2, 3) for seg in whiskers] == [0.04, 0.08, 0.0]  # fr:gmsd: none
    assert "seed std" in shown["fig"]._suptitle.get_text()
    # Full-reference rows are hollow: white face.
    dots = [c for c in single.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    hollow = [c for c in dots if tuple(c.get_facecolor()[0][:3]) == (1.0, 1.0, 1.0)]
    assert [tuple(c.get_offsets()[0]) for c in hollow] == [(0.81, 2.0)]


def test_cross_tables_show_each_cells_seed_std_where_it_was_measured():
    cross = pd.DataFrame({"model": ["a"] * 4, "train": ["x", "x", "y", "y"], "test": ["x", "y", "x", "y"],
                          "srcc": [0.9, 0.3, 0.2, 0.8]})
    variance = pd.DataFrame({"metric": ["within.a.x.srcc", "cross.a.x->y.srcc", "cross.a.y->x.srcc"],
                             "std": [0.01, 0.07, 0.0]})
    lines = reporting.cross_markdown(cross, variance).splitlines()
    assert "± = std over the seeds of reports/variance.csv" in lines[0]
    assert lines[4] == "| x | 0.900 ± 0.010 | 0.300 ± 0.070 |"
    # y -> x: the seeds move nothing, so no "± 0.000"; y's within std was not measured: no ± either.
    assert lines[5] == "| y | 0.200 | 0.800 |"
    assert "±" not in reporting.cross_markdown(cross)
