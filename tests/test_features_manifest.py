"""A features file must hold the manifest's images, in its order, with no dead column: a file left from an older
manifest paired one image's features with another's score, silently, and a column NaN on every image dropped every
image with advice about too few images. Each now stops evaluate and mixed in one line, before anything is written."""
from __future__ import annotations

import numpy as np
import pytest

from iqabench import features
from test_extract_errors import _workspace
from test_stage_input_errors import FEATURES, _files, _run

NAMES = ["img0.png", "img1.png", "img2.png"]


@pytest.mark.parametrize("names, arrays, says", [
    (["img1.png", "img0.png", "img2.png"], {"brisque": np.ones((3, 4))},
     "lists 3 images but the manifest 3, and at position 1 it has 'img1.png' where the manifest has 'img0.png': "
     "the features are from another version of the dataset"),
    (NAMES + ["img3.png"], {"brisque": np.ones((4, 4))},
     "lists 4 images but the manifest 3, and at position 4 it has 'img3.png' where the manifest has nothing"),
    (None, {"brisque": np.ones((3, 4))}, "records no image names (no 'images' array): it was not written by extract"),
    (NAMES, {"brisque": np.ones((2, 4))}, "'brisque' is a float64 array of shape (2, 4), not 3 x D real numbers"),
    (NAMES, {"brisque": np.ones(3)}, "'brisque' is a float64 array of shape (3,), not 3 x D real numbers"),
    (NAMES, {"brisque": np.ones((3, 2), complex)}, "'brisque' is a complex128 array of shape (3, 2), not 3 x D real"),
    (np.array("img0.png"), {"brisque": np.ones((3, 4))}, "lists 1 images but the manifest 3"),
    (NAMES, {"brisque": np.column_stack([np.ones(3), np.full(3, np.nan), np.ones(3)])},
     "'brisque' has no value (NaN) on any image in column(s) [1] of 3"),
])
@pytest.mark.parametrize("stage", ["evaluate", "mixed"])
def test_features_that_do_not_fit_the_manifest_stop_the_stage_in_one_line(tmp_path, monkeypatch, stage, names,
                                                                          arrays, says):
    _workspace(tmp_path, ["brisque"])
    if names is None:  # an npz of arrays only, as a user's own script might write
        (tmp_path / FEATURES).parent.mkdir(parents=True)
        np.savez(tmp_path / FEATURES, **arrays)
    else:
        features.save_file(tmp_path / FEATURES, names, arrays)
    before = _files(tmp_path)
    message = _run(monkeypatch, tmp_path, stage)
    assert message.startswith(f"error: {stage}: {FEATURES}") and says in message and "\n" not in message
    assert message.endswith("run `dvc repro extract@synthetic-single`")
    assert _files(tmp_path) == before


def test_features_of_the_manifest_load_by_file_name_in_order_without_the_names(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"image": [f"/elsewhere/sub/{n}" for n in NAMES]})  # the manifest holds absolute paths
    arrays = {"brisque": np.arange(12.0).reshape(3, 4), "niqe": np.array([[1.0], [np.nan], [3.0]])}
    features.save_file(tmp_path / "ds.npz", features.image_names(frame), arrays)
    loaded = features.load_for(tmp_path / "ds.npz", frame)
    assert sorted(loaded) == ["brisque", "niqe"]  # an image undefined in one row is kept: evaluate counts it
    np.testing.assert_array_equal(loaded["brisque"], arrays["brisque"])


def test_a_feature_function_with_a_dead_column_is_refused_at_extract_naming_the_column():
    import pandas as pd
    import torch

    def half_dead(x: torch.Tensor) -> torch.Tensor:
        out = torch.ones(len(x), 3)
        out[:, 2] = float("nan")
        return out

    frame = pd.DataFrame({"image": ["a.png", "b.png"], "reference": ["", ""]})
    with pytest.raises(ValueError, match=r"mine: feature column\(s\) \[2\] of 3 are NaN or infinite on every one of "
                                         r"the 2 images: the feature function returns a dimension with no value"):
        features.extract(half_dead, frame, description="mine", show_progress=False,
                         load=lambda p: torch.rand(3, 8, 8))
