import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from iqabench import rows
from iqabench.evaluation.ridge import (SplitPredictions, alpha_grid,
                                       fit_predict, resolve_device, ridge_path, select_alpha)
from iqabench.evaluation.splits import random_splits

ALPHAS = [1e-3, 0.1, 1.0, 1e3]


def make_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    # Unequal feature scales make standardisation matter.
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d) + rng.normal(size=d)
    y = X @ rng.normal(size=d) / d + rng.normal(0, 0.1, n)
    return X, y


@pytest.mark.parametrize("n,d", [(90, 12), (60, 150)])  # primal (d < n) and dual (n <= d) paths
@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("device", [None, "cpu"])  # NumPy, and the torch path a GPU runs, here on the CPU
def test_matches_sklearn_ridge_on_every_split_and_alpha(n, d, standardize, device):
    X, y = make_data(n, d)
    splits = random_splits(np.arange(n) // 3, n_splits=3, test_frac=0.2, val_frac=0.1, seed=2)
    predictions = fit_predict(X, y, splits, ALPHAS, standardize=standardize, device=device)
    for split, val_pred, test_pred in zip(splits, predictions.val, predictions.test):
        assert test_pred.shape == (len(ALPHAS), len(split.test))
        for i, alpha in enumerate(ALPHAS):
            model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)) if standardize else Ridge(alpha=alpha)
            model.fit(X[split.train], y[split.train])
            np.testing.assert_allclose(test_pred[i], model.predict(X[split.test]), rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(val_pred[i], model.predict(X[split.val]), rtol=1e-6, atol=1e-8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n,d", [(300, 40), (120, 500)])
def test_cuda_path_agrees_with_numpy(n, d):
    X, y = make_data(n, d, seed=3)
    on_gpu = ridge_path(X[:-20], y[:-20], [X[-20:]], ALPHAS, device="cuda")[0]
    on_cpu = ridge_path(X[:-20], y[:-20], [X[-20:]], ALPHAS, device=None)[0]
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-6, atol=1e-8)


def test_auto_device_is_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") is None and resolve_device(None) is None
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="ridge device"):
        resolve_device("tpu-please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_constant_feature_is_left_unscaled_like_standard_scaler():
    X, y = make_data(40, 5)
    X[:, 2] = 3.0
    (pred,) = ridge_path(X[:30], y[:30], [X[30:]], [0.5], standardize=True)
    expected = make_pipeline(StandardScaler(), Ridge(alpha=0.5)).fit(X[:30], y[:30]).predict(X[30:])
    np.testing.assert_allclose(pred[0], expected, rtol=1e-6, atol=1e-8)


def test_published_alpha_settings():
    assert rows.CONTRIQUE_PROTOCOL["alphas"] == [0.1]
    arniqa = rows.ARNIQA_PROTOCOL["alphas"]
    assert len(arniqa) == 100 and arniqa[0] == pytest.approx(1e-3) and arniqa[-1] == pytest.approx(1e3)
    assert alpha_grid(13)[6] == pytest.approx(1.0)


def test_select_alpha_picks_best_validation_srcc():
    y = np.linspace(0, 1, 12)
    splits = random_splits(np.arange(12), n_splits=2, test_frac=0.25, val_frac=0.4, seed=0)
    good, bad = y, -y
    # Split 0 ranks val perfectly at alpha 10, split 1 at alpha 1.
    val = [np.stack([bad[s.val], good[s.val] if k == 1 else bad[s.val], good[s.val] if k == 0 else bad[s.val]])
           for k, s in enumerate(splits)]
    predictions = SplitPredictions(alphas=np.array([0.1, 1.0, 10.0]), val=val, test=[v for v in val])
    assert select_alpha(predictions, y, splits, rule="per_split").tolist() == [2, 1]
    # The median over two splits ties alpha 1 and 10; the tie goes to the alpha listed first, as ARNIQA's argmax
    # over its ascending grid (the smallest there), whichever order the list is in.
    assert select_alpha(predictions, y, splits, rule="median").tolist() == [1, 1]
    flipped = SplitPredictions(alphas=predictions.alphas[::-1], val=[v[::-1] for v in val], test=val)
    assert select_alpha(flipped, y, splits, rule="median").tolist() == [0, 0]  # alpha 10, now listed first


def test_select_alpha_needs_validation_images():
    X, y = make_data(30, 4)
    splits = random_splits(np.arange(30), n_splits=1, val_frac=0.0)
    predictions = fit_predict(X, y, splits, ALPHAS)
    with pytest.raises(ValueError, match="val_frac"):
        select_alpha(predictions, y, splits)


def test_bad_input_is_named():
    X, y = make_data(20, 4)
    with pytest.raises(ValueError, match="20 rows but there are 19 scores"):
        ridge_path(X, y[:19], [X], [1.0])
    with pytest.raises(ValueError, match="positive"):
        ridge_path(X, y, [X], [0.0])
    with pytest.raises(ValueError, match="feature columns"):
        ridge_path(X, y, [X[:, :3]], [1.0])
    X[5, 1] = np.inf
    with pytest.raises(ValueError, match="row 5"):
        ridge_path(X, y, [X], [1.0])


@pytest.mark.parametrize("device", [None, "cpu"])
def test_an_alpha_that_makes_every_weight_vanish_is_refused_not_scored_zero(device):
    # evaluate.alphas: [1e300] reported SRCC 0.000 for every row: the predictions were the training mean.
    X, y = make_data(40, 5)
    top = float(np.linalg.eigvalsh(np.cov(X.T, bias=True) * len(X)).max())
    with pytest.raises(ValueError, match=r"ridge alpha 1e\+300 is more than 1e\+10 times the largest eigenvalue "
                                         r"\(\d.*\) of the training features' Gram matrix: every weight vanishes"):
        ridge_path(X, y, [X], [0.1, 1e300], device=device)
    pred = ridge_path(X, y, [X], [top * 1e9], device=device)[0][0]  # heavily shrunk, still a ranking
    assert np.ptp(pred) > 0 and stats.spearmanr(pred, y).statistic > 0.5
    constant = np.ones_like(X)  # nothing to rank at any alpha: the metrics' 0.0 applies, no error
    assert np.ptp(ridge_path(constant, y, [constant], [1e300], device=device)[0]) == 0


@pytest.mark.parametrize("standardize", [False, True])
def test_the_saved_regressor_predicts_what_the_protocol_fitted(standardize, tmp_path):
    # iqabench.regressor (behind `iqabench score`) and ridge_path are one model: unpenalised
    # intercept, penalty alpha * ||w||^2, scaler (if any) from the training rows only.
    from iqabench import regressor

    X, y = make_data(50, 8)
    X = X * np.geomspace(0.01, 100, 8)  # features on very different scales
    (expected,) = ridge_path(X[:40], y[:40], [X[40:]], [0.3], standardize=standardize)
    fitted = regressor.fit(X[:40], y[:40], alpha=0.3, standardize=standardize, dataset="toy")
    np.testing.assert_allclose(fitted.predict(X[40:]), expected[0], rtol=1e-7, atol=1e-9)
    loaded = regressor.load(fitted.save(tmp_path / "toy.npz"))
    np.testing.assert_allclose(loaded.predict(X[40:]), expected[0], rtol=1e-7, atol=1e-9)
