"""benchmarks/gpu_check.py: the report without a GPU, and its CPU-runnable parts at toy sizes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_check
        yield gpu_check
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report written without a GPU")
def test_without_a_gpu_every_row_says_not_measured(gpu_check, tmp_path):
    assert gpu_check.main(["--out-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["parts"]) == set(gpu_check.PARTS)
    assert all(value == gpu_check.NOT_MEASURED for value in report["parts"].values())
    text = (tmp_path / "gpu_check.md").read_text()
    assert "not measured: no GPU was available" in text
    assert report["provenance"]["command"] == f"python benchmarks/gpu_check.py --out-dir {tmp_path}"
    assert text.splitlines()[2].startswith(f"Written at commit `{report['provenance']['commit'][:10]}`")


def test_tiny_cpu_run_exercises_engine_stage_and_protocol(gpu_check, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out-dir", str(tmp_path)]) == 0
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert [row["type"] for row in parts["engine"]["results"]] == ["pixelate", "white_noise", "jpeg"]
    assert all(row["images_per_s"] > 0 for row in parts["engine"]["results"])
    # The pretraining stage ran as DVC runs it (its own params.yaml and a profile) and wrote an encoder.
    stage = parts["paper_compile_off"]
    assert stage["status"] == "ok" and stage["encoder_written"] and stage["images_per_s"] > 0
    assert parts["protocol"]["status"] == "ok" and parts["protocol"]["ridge_device"] == "cpu (numpy)"
    text = (tmp_path / "gpu_check.md").read_text()
    assert "tiny" in text and text.splitlines()[2].startswith("Measured at commit ")


def test_cpu_without_tiny_is_refused(gpu_check, tmp_path):
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cpu", "--out-dir", str(tmp_path)])
