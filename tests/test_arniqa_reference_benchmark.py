"""The engine-against-ARNIQA benchmark (benchmarks/arniqa_reference.py) runs end to end on a tiny image."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from iqabench.provenance import stamp

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference" / "arniqa"

pytestmark = pytest.mark.skipif(not (REFERENCE / "utils" / "distortions.py").is_file(),
                                reason="needs ARNIQA's functions in ../shared/reference/arniqa")


@pytest.fixture(scope="module")
def arniqa_reference():
    pytest.importorskip("kornia", reason="the reference imports kornia (pip install '.[bench]')")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import arniqa_reference
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return arniqa_reference


def test_ratios_per_type_with_their_rounds_and_the_types_that_cannot_be_compared(arniqa_reference):
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    report = arniqa_reference.compare(REFERENCE, image, batch=4, reference_images=2, rounds=3,
                                      types=["mean_shift", "jpeg", "denoise", "brighten"])
    assert [row["type"] for row in report["results"]] == ["mean_shift", "jpeg"]
    for row in report["results"]:
        assert row["ratio_low"] <= row["ratio"] <= row["ratio_high"] and row["reference_images_per_round"] == 2
    assert "no counterpart" in report["not_comparable"]["denoise"]
    assert report["not_comparable"]["brighten"].startswith("reference raises")
    assert report["rounds"] == 3 and report["comparable_types"] == 2
    text = arniqa_reference.to_markdown({"provenance": stamp([str(REPO / "benchmarks" / "distortions_speed.py")]),
                                         **report})
    assert text.splitlines()[2].startswith("Measured at commit ")
    assert "3 rounds per type" in text and "| jpeg | `jpeg` | 2 |" in text and "**brighten**" in text


def test_a_folder_without_the_reference_is_refused_with_what_to_pass(arniqa_reference, tmp_path):
    with pytest.raises(SystemExit, match="pass the folder that holds ARNIQA's utils/"):
        arniqa_reference.load(tmp_path)
