import numpy as np
import pandas as pd
import pytest
import torch

from iqabench import features as features_lib
from iqabench import manifest, mixed, mixed_report
from iqabench.evaluation.splits import random_splits

FAST = mixed.TrainConfig(steps=150, lr=3e-3)
FITTED = mixed.fit  # the real one, for tests that wrap or replace mixed.fit


def scaled_set(name, lo, hi, n=200, d=16, seed=0):
    """Images whose features carry one latent quality q on [lo, hi]; the dataset rates them on its own [0, 1].

    Two such sets with overlapping [lo, hi] share the latent quality but not the scale:
    the same q gets a high score in one and a low score in the other.
    """
    rng = np.random.default_rng(seed)
    quality = rng.uniform(lo, hi, n)
    direction = np.random.default_rng(123).normal(size=d)  # the same feature space for every set
    features = np.outer(quality, direction) + rng.normal(0, 0.3, (n, d))
    raw = (quality - lo) / (hi - lo) + rng.normal(0, 0.02, n)
    frame = manifest.make(name, [f"{name}{i}.png" for i in range(n)], raw, score_type="MOS", lo=-1, hi=2,
                          higher_is_better=True, score_source="test",
                          content_id=[f"{name}-ref{i // 5}" for i in range(n)])
    return features, frame


def test_transformer_is_strictly_increasing_whatever_its_parameters():
    q = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    for seed in range(5):
        torch.manual_seed(seed)
        transformer = mixed.MonotoneTransformer(hidden=(8, 5)).double()
        for parameter in transformer.parameters():
            torch.nn.init.normal_(parameter, std=3.0)  # far from the initialisation, including negative raw weights
        out = transformer(q).detach().numpy()
        assert np.all(np.diff(out) > 0)
        probe = (torch.randn(64, dtype=torch.float64) * 10).requires_grad_()
        (slope,) = torch.autograd.grad(transformer(probe).sum(), probe)
        assert torch.all(slope > 0)


def test_transformer_fits_concave_and_convex_scales():
    # An abs-weight ELU network (the reference code) is convex; the scale of a real dataset need not be.
    q = torch.linspace(-2, 2, 200)
    for target in (torch.sqrt(q + 2.0) / 2.0, ((q + 2.0) / 4.0) ** 3, torch.sigmoid(3.0 * q)):
        torch.manual_seed(0)
        transformer = mixed.MonotoneTransformer(hidden=(16,))
        optimiser = torch.optim.Adam(transformer.parameters(), lr=0.03)
        for _ in range(400):
            optimiser.zero_grad()
            loss = torch.nn.functional.mse_loss(transformer(q), target)
            loss.backward()
            optimiser.step()
        assert loss.item() < 5e-4


def test_norm_in_norm_ignores_scale_and_offset_and_is_zero_when_linear():
    torch.manual_seed(0)
    pred, target = torch.randn(50), torch.rand(50)
    base = mixed.norm_in_norm_loss(pred, target)
    assert mixed.norm_in_norm_loss(3.0 * pred + 7.0, target) == pytest.approx(base.item(), rel=1e-5)
    assert mixed.norm_in_norm_loss(2.0 * target - 1.0, target).item() == pytest.approx(0.0, abs=1e-6)
    assert base.item() > 0.1


def test_rank_hinge_counts_near_ties_as_ties_as_the_reference():
    # RankHingedLoss(margin=0.05, y_margin=0.01): a pair whose scores differ by less than 0.01 adds the margin,
    # whatever the predictions' order; a real difference predicted in order by more than the margin adds 0.
    pred = torch.tensor([0.0, 0.1])
    assert mixed.rank_hinge_loss(pred, torch.tensor([0.5, 0.505])).item() == pytest.approx(0.05)
    assert mixed.rank_hinge_loss(pred, torch.tensor([0.5, 0.6])).item() == pytest.approx(0.0)
    assert mixed.rank_hinge_loss(pred, torch.tensor([0.6, 0.5])).item() == pytest.approx(0.15)


def test_monotonic_beats_naive_pooling_when_scales_conflict():
    (xa, fa), (xb, fb) = scaled_set("low", 0.0, 1.2, seed=1), scaled_set("high", 0.8, 2.0, seed=2)
    per_split = mixed.run({"low": xa, "high": xb}, {"low": fa, "high": fb}, FAST, n_splits=2, seed=0,
                          logistic="none", methods=("monotonic", "pooled"), model="m")
    assert (per_split["n_missing"] == 0).all()
    summary = mixed_report.summarise(per_split).set_index(["dataset", "method"])["srcc"]
    for ds in ("low", "high"):
        assert summary[ds, "monotonic"] > 0.85
        assert summary[ds, "monotonic"] > summary[ds, "pooled"] + 0.05
    # Split s tests on exactly the protocol's split s of each dataset.
    expected = [len(s.test) for s in random_splits(fa["content_id"], n_splits=2, seed=0)]
    got = per_split[(per_split["dataset"] == "low") & (per_split["method"] == "pooled")]["n_test"].tolist()
    assert got == expected
    assert set(per_split["n_train"][per_split["dataset"] == "low"]) == {
        len(a.train) + len(b.train) for a, b in zip(random_splits(fa["content_id"], n_splits=2, seed=0),
                                                    random_splits(fb["content_id"], n_splits=2, seed=0))}


def test_training_is_deterministic_under_a_seed_and_leaves_the_global_rng_alone():
    (xa, fa), (xb, fb) = scaled_set("a", 0.0, 1.2, n=80, seed=1), scaled_set("b", 0.8, 2.0, n=80, seed=2)
    train = {"a": (xa, fa["score"].to_numpy()), "b": (xb, fb["score"].to_numpy())}
    cfg = mixed.TrainConfig(steps=30, batch_size=16)  # mini-batches and dropout both draw random numbers
    torch.manual_seed(99)
    before = torch.rand(3)
    torch.manual_seed(99)
    first = mixed.fit(train, cfg, monotonic=True, seed=5).predict(xa, "a")
    assert torch.equal(torch.rand(3), before)
    second = mixed.fit(train, cfg, monotonic=True, seed=5).predict(xa, "a")
    other = mixed.fit(train, cfg, monotonic=True, seed=6).predict(xa, "a")
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, other)


def _write_prepared(root, ds, frame, arrays):
    manifest.write(frame, root / "prepared" / ds / "manifest.csv")
    (root / "features").mkdir(exist_ok=True)
    features_lib.save_file(root / "features" / f"{ds}.npz", features_lib.image_names(frame), arrays)


def test_dataset_without_features_for_the_model_is_a_clear_error(tmp_path):
    xa, fa = scaled_set("a", 0.0, 1.0, n=20)
    _write_prepared(tmp_path, "a", fa, {"contrique": xa})
    _write_prepared(tmp_path, "b", fa.assign(dataset="b"), {"brisque": xa[:, :3]})
    features, _ = mixed.load_features(tmp_path / "features", tmp_path / "prepared", ["a"], "contrique")
    assert features["a"].shape == xa.shape
    with pytest.raises(mixed.MixedInputError, match=r"b\.npz has no features for model 'contrique'.*brisque"):
        mixed.load_features(tmp_path / "features", tmp_path / "prepared", ["a", "b"], "contrique")
    _write_prepared(tmp_path, "c", fa.assign(dataset="c"), {"contrique": xa[:10]})
    with pytest.raises(mixed.MixedInputError,
                       match=r"c\.npz: 'contrique' is a float\d+ array of shape \(10, 16\), not 20 x D"):
        mixed.load_features(tmp_path / "features", tmp_path / "prepared", ["c"], "contrique")
    manifest.write(fa.assign(dataset="d"), tmp_path / "prepared" / "d" / "manifest.csv")
    with pytest.raises(mixed.MixedInputError, match=r"d\.npz does not exist.*extract@d"):
        mixed.load_features(tmp_path / "features", tmp_path / "prepared", ["d"], "contrique")


def test_bad_settings_name_the_value():
    with pytest.raises(mixed.MixedInputError, match="huber"):
        mixed.TrainConfig.from_params({"loss": ["mse", "huber"], "model": "contrique"})
    with pytest.raises(mixed.MixedInputError, match="unknown key.*'stpes'"):
        mixed.TrainConfig.from_params({"stpes": 10})
    assert mixed.TrainConfig.from_params({"transformer_hidden": [4, 4], "seed": 0}).transformer_hidden == (4, 4)
    with pytest.raises(mixed.MixedInputError, match="same D"):
        mixed.fit({"a": (np.zeros((4, 3)), np.zeros(4)), "b": (np.zeros((4, 2)), np.zeros(4))}, FAST, monotonic=True)


def test_paired_comparison_uses_the_corrected_t_test_with_holm_across_datasets():
    from iqabench.evaluation.significance import CORRECTED_T

    rng = np.random.default_rng(0)
    rows = []
    for ds, gap in (("a", 0.10), ("b", 0.0)):
        for split in range(10):
            base = 0.6 + rng.normal(0, 0.02)
            for method, shift in (("monotonic", gap), ("pooled", 0.0)):
                rows.append({"dataset": ds, "method": method, "split": split, "n_train": 400, "n_test": 100,
                             "srcc": base + shift + rng.normal(0, 0.01)})
    paired = mixed_report.paired_srcc(pd.DataFrame(rows)).set_index("dataset")
    assert set(paired["method"]) == {CORRECTED_T}
    assert (paired["p_holm"] >= paired["p"]).all()
    assert paired.loc["a", "significant"] and not paired.loc["b", "significant"]
    text = mixed_report.markdown(mixed_report.summarise(pd.DataFrame(rows).assign(plcc=0.5, krcc=0.4, rmse=0.1,
                                                                                  n_missing=0)),
                                 paired.reset_index(), model="m", logistic="5pl")
    assert "corrected resampled t-test" in text and "Wilcoxon" not in text
    assert "undefined" not in text  # nothing was left out: no line about it


def _with_holes(features, rows, value=np.nan):
    holes = features.copy()
    holes[rows, 1] = value
    return holes


def test_undefined_images_are_dropped_from_the_protocols_splits_and_counted(monkeypatch):
    from iqabench.evaluation.protocol import run_splits

    (xa, fa), (xb, fb) = scaled_set("low", 0.0, 1.2, n=80, seed=1), scaled_set("high", 0.8, 2.0, n=80, seed=2)
    dropped = {"low": [3, 17, 50], "high": [8]}
    features = {"low": _with_holes(xa, dropped["low"]), "high": _with_holes(xb, dropped["high"], np.inf)}
    manifests = {"low": fa, "high": fb}
    fits = []
    monkeypatch.setattr(mixed, "fit", lambda train, *a, **k: fits.append(train) or FITTED(train, *a, **k))
    per_split = mixed.run(features, manifests, mixed.TrainConfig(steps=40), n_splits=2, seed=3, logistic="none",
                          model="m")
    assert len(fits) == 2 * 4  # monotonic, pooled and single on each of the two datasets, per split
    assert all(np.isfinite(x).all() for train in fits for x, _ in train.values())
    assert np.isfinite(per_split[mixed.METRIC_COLUMNS].to_numpy()).all()
    # The protocol's splits less the undefined images, the same as `evaluate` scores this model on.
    for ds, frame in manifests.items():
        protocol = run_splits(features[ds], frame, n_splits=2, seed=3).splits
        rows = per_split[per_split["dataset"] == ds]
        assert (rows["n_missing"] == len(dropped[ds])).all()
        for s, split in enumerate(protocol):
            assert set(rows[rows["split"] == s]["n_test"]) == {len(split.test)}
            assert rows[(rows["split"] == s) & (rows["method"] == "single")]["n_train"].item() == len(split.train)
        kept, n_missing = mixed.drop_missing(features, mixed.dataset_splits(manifests, n_splits=2, test_frac=0.2,
                                                                            seed=3), model="m")
        assert n_missing[ds] == len(dropped[ds])
        for ours, theirs in zip(kept[ds], protocol):
            np.testing.assert_array_equal(ours.train, theirs.train)
            np.testing.assert_array_equal(ours.test, theirs.test)
    summary = mixed_report.summarise(per_split).set_index(["dataset", "method"])
    assert summary.loc[("low", "pooled"), "n_missing"] == 3 and summary.loc[("high", "single"), "n_missing"] == 1
    text = mixed_report.markdown(summary.reset_index(), pd.DataFrame(), model="m", logistic="none")
    assert "features of m are undefined" in text and "low: 3 image(s); high: 1 image(s)" in text


def test_too_few_defined_images_stop_before_training_naming_dataset_model_and_counts(monkeypatch):
    (xa, fa), (xb, fb) = scaled_set("a", 0.0, 1.0, n=40, seed=1), scaled_set("b", 0.0, 1.0, n=40, seed=2)
    monkeypatch.setattr(mixed, "fit", lambda *a, **k: pytest.fail("trained before checking the splits"))
    with pytest.raises(mixed.MixedInputError, match=r"dataset 'b' \(40 images\), features of model 'contrique': "
                       r"after dropping the 36 image\(s\).*keeps \d+ train and \d+ test images"):
        mixed.run({"a": xa, "b": _with_holes(xb, slice(0, 36))}, {"a": fa, "b": fb}, FAST, n_splits=2,
                  model="contrique")
    with pytest.raises(mixed.MixedInputError, match=r"dataset 'a'.*1 training row\(s\) with undefined"):
        FITTED({"a": (_with_holes(xa, [4]), fa["score"].to_numpy())}, FAST, monotonic=False)


def test_stage_reports_n_missing_and_writes_nothing_when_too_few_are_left(tmp_path, monkeypatch):
    import runpy
    import shutil
    from pathlib import Path

    from stage_cmd import args as dvc_args

    stage = Path(__file__).resolve().parents[1] / "stages" / "mixed.py"
    a, b = "synthetic-single", "synthetic-mixed"  # registered names: params validation knows them
    (xa, fa), (xb, fb) = scaled_set(a, 0.0, 1.2, n=60, seed=1), scaled_set(b, 0.8, 2.0, n=60, seed=2)
    _write_prepared(tmp_path / "data", a, fa, {"contrique": _with_holes(xa, [0, 9])})
    _write_prepared(tmp_path / "data", b, fb, {"contrique": xb})
    (tmp_path / "params.yaml").write_text(
        f"seed: 0\ndatasets: [{a}, {b}]\nevaluate:\n  n_splits: 2\n  logistic: none\n"
        "mixed:\n  model: contrique\n  methods: [monotonic, pooled]\n  steps: 20\n")
    monkeypatch.chdir(tmp_path)
    main = runpy.run_path(str(stage))["main"]
    main([*dvc_args("mixed"), "--params", "params.yaml"])
    table = pd.read_csv(tmp_path / "reports" / "mixed.csv").set_index(["dataset", "method"])
    assert table.loc[(a, "monotonic"), "n_missing"] == 2 and table.loc[(b, "pooled"), "n_missing"] == 0
    assert np.isfinite(table["srcc"]).all()
    assert f"{a}: 2 image(s)." in (tmp_path / "reports" / "mixed.md").read_text()
    shutil.rmtree(tmp_path / "reports")
    _write_prepared(tmp_path / "data", b, fb, {"contrique": _with_holes(xb, slice(0, 55))})
    # The stage ends in one line (stage_errors.one_line), not a traceback.
    with pytest.raises(SystemExit, match=rf"^error: mixed: dataset '{b}' \(60 images\), features of model 'contrique'"):
        main([*dvc_args("mixed"), "--params", "params.yaml"])
    assert not (tmp_path / "reports").exists()  # not even the stage's timing
