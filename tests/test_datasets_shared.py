"""The real KonIQ-10k and SPAQ subsets in ../shared go through the real parsers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iqabench import manifest
from iqabench.datasets import build_manifest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
KONIQ = SHARED / "koniq10k-subset"
SPAQ = SHARED / "spaq-subset"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared datasets not present at {SHARED} "
                                  "(a fresh clone has no ../shared; nothing to check)")


@needs_shared
def test_koniq_subset_keeps_published_mos_and_official_split():
    published = pd.read_csv(KONIQ / "koniq10k_distributions_sets.csv")
    frame = build_manifest("koniq10k", KONIQ)
    assert len(frame) == len(published) == 200
    by_name = frame.set_index(frame["image"].map(lambda p: Path(p).name))
    row = published.iloc[0]
    assert by_name.loc[row["image_name"], "raw_score"] == pytest.approx(row["MOS"])
    assert by_name.loc[row["image_name"], "score"] == pytest.approx(row["MOS"] / 100)
    expected_split = published["set"].map({"training": "train", "validation": "val", "test": "test"})
    assert by_name.loc[published["image_name"], "split"].tolist() == expected_split.tolist()
    assert frame["split"].value_counts().to_dict() == {"train": 146, "val": 25, "test": 29}
    assert all(Path(p).parent.name == "512x384" for p in frame["image"])
    assert frame["raw_scale"].iloc[0] == "MOS [0, 100], higher is better"


@needs_shared
def test_spaq_subset_mos_csv_parses_with_full_precision():
    published = pd.read_csv(SPAQ / "mos.csv")
    frame = build_manifest("spaq", SPAQ)
    assert len(frame) == 200
    np.testing.assert_allclose(frame["raw_score"], published["MOS"])
    np.testing.assert_allclose(frame["score"], published["MOS"] / 100)
    assert (frame["split"] == "").all()
    assert frame["score_source"].iloc[0].startswith("human MOS")


@needs_shared
def test_shared_manifest_round_trips_through_write_and_read(tmp_path):
    frame = build_manifest("koniq10k", KONIQ)
    path = manifest.write(frame, tmp_path / "koniq.csv")
    back = manifest.read(path)
    assert back["image"].tolist() == [str(Path(p).resolve()) for p in frame["image"]]
    np.testing.assert_allclose(back["score"], frame["score"])
