"""Light artifacts: every file under reports/ is kept in git and logged to MLflow, so none may be heavy."""
from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LIMIT_BYTES = 2 * 1024 * 1024  # README, "Browse and compare runs": the stated limit


def test_no_file_under_reports_exceeds_the_limit():
    heavy = {str(p.relative_to(REPO)): p.stat().st_size for p in (REPO / "reports").rglob("*")
             if p.is_file() and p.stat().st_size > LIMIT_BYTES}
    assert not heavy, f"files over {LIMIT_BYTES} bytes under reports/ (regenerate them with `dvc repro`): {heavy}"


def test_the_distortion_gallery_of_the_default_photo_stays_under_the_limit(tmp_path):
    """The gallery `synthesize` writes (reports/distortions.png) at the default settings: it was 54 MB."""
    from iqabench import images
    from iqabench.datasets.embedded import PHOTOS
    from iqabench.distortions import save_gallery

    photo_name = yaml.safe_load((REPO / "params.yaml").read_text())["synthesize"]["gallery_photo"]
    path = tmp_path / "distortions.png"
    save_gallery(images.from_uint8(PHOTOS[photo_name]()), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < LIMIT_BYTES * 0.9, path.stat().st_size  # a margin for other photos' detail
