import numpy as np
import pandas as pd
import pytest
import torch

from iqabench import manifest, mixed
from iqabench.evaluation.splits import random_splits

FAST = mixed.TrainConfig(steps=150, lr=3e-3)


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
    frame = manifest.make(name, [f"{name}{i}.png" for i in range(n)], raw, kind="MOS", lo=-1, hi=2,
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


def test_monotonic_beats_naive_pooling_when_scales_conflict():
    (xa, fa), (xb, fb) = scaled_set("low", 0.0, 1.2, seed=1), scaled_set("high", 0.8, 2.0, seed=2)
    per_split = mixed.run({"low": xa, "high": xb}, {"low": fa, "high": fb}, FAST, n_splits=2, seed=0,
                          logistic="none", methods=("monotonic", "pooled"))
    summary = mixed.summarise(per_split).set_index(["dataset", "method"])["srcc"]
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
    np.savez(root / "features" / f"{ds}.npz", **arrays)


def test_dataset_without_features_for_the_model_is_a_clear_error(tmp_path):
    xa, fa = scaled_set("a", 0.0, 1.0, n=20)
    _write_prepared(tmp_path, "a", fa, {"contrique": xa})
    _write_prepared(tmp_path, "b", fa.assign(dataset="b"), {"brisque": xa[:, :3]})
    features, _ = mixed.load_features(tmp_path / "features", tmp_path / "prepared", ["a"], "contrique")
    assert features["a"].shape == xa.shape
    with pytest.raises(mixed.MixedInputError, match=r"b\.npz has no features for model 'contrique'.*brisque"):
        mixed.load_features(tmp_path / "features", tmp_path / "prepared", ["a", "b"], "contrique")
    _write_prepared(tmp_path, "c", fa.assign(dataset="c"), {"contrique": xa[:10]})
    with pytest.raises(mixed.MixedInputError, match=r"c\.npz.*shape \(10, 16\).*20 rows"):
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
    paired = mixed.paired_srcc(pd.DataFrame(rows)).set_index("dataset")
    assert set(paired["method"]) == {CORRECTED_T}
    assert (paired["p_holm"] >= paired["p"]).all()
    assert paired.loc["a", "significant"] and not paired.loc["b", "significant"]
    text = mixed.markdown(mixed.summarise(pd.DataFrame(rows).assign(plcc=0.5, krcc=0.4, rmse=0.1)),
                          paired.reset_index(), model="m", logistic="5pl")
    assert "corrected resampled t-test" in text and "Wilcoxon" not in text
