"""Reference scores for the published NIQE and BRISQUE rows, from the packages' own code (not iqabench's).

    # in a separate environment: scikit-video's NIQE needs NumPy < 1.24 (np.int) and
    # scipy.misc.imresize (shimmed below with PIL, as SciPy 1.2 implemented it)
    python3.11 -m venv /tmp/calib
    /tmp/calib/bin/pip install numpy==1.23.5 scipy==1.10.1 'pillow<11' scikit-image==0.21.0 \
        opencv-python-headless==4.8.1.78 libsvm-official==3.35.0 scikit-video==1.1.11 pyyaml requests
    /tmp/calib/bin/pip install --no-deps brisque==0.2.0
    /tmp/calib/bin/python benchmarks/published_classic_reference.py ../shared/datasets/koniq10k-subset

writes reports/benchmarks/published_classic_reference.json: for the first N
KonIQ images (sorted by name), skvideo.measure.niqe on the MATLAB rgb2gray luma
and brisque.BRISQUE().score on the RGB image. tests/test_published_classic.py
compares the rows niqe-published and brisque-published with them.

scikit-video >= 1.2.0 ships another NIQE model under the same file name (the LIVE
release's, with the reference features; published_classic.niqe_convention). Its
NIQE runs on current NumPy/SciPy, so --niqe-only needs no separate environment:

    python benchmarks/published_classic_reference.py --niqe-only ../shared/datasets/koniq10k-subset

(with that scikit-video importable, e.g. PYTHONPATH=<its source tree>) writes
reports/benchmarks/published_niqe_reference_skvideo-<version>.json, NIQE only,
with the sha256 of the model file it used. Both carry iqabench.provenance.stamp()
(imported from src/, which is why the separate environment needs pyyaml) as "provenance";
brisque imports requests at the top even with url=False.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import scipy
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the separate environment has no iqabench installed
from iqabench.provenance import stamp  # noqa: E402

N_IMAGES = 12
OUT = REPO / "reports" / "benchmarks" / "published_classic_reference.json"


def _imresize(arr, size, interp="bilinear", mode=None):
    """scipy.misc.imresize as SciPy 1.2 had it, for the one call skvideo's NIQE makes (mode 'F', a scale)."""
    assert mode == "F" and isinstance(size, float), (mode, size)
    image = Image.fromarray(np.asarray(arr, dtype=np.float32), mode="F")
    new = (int(image.size[0] * size), int(image.size[1] * size))
    return np.array(image.resize(new, resample={"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[interp]))


def matlab_rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB's rgb2gray on uint8: BT.601 weights, rounded to uint8 (what NIQE's MATLAB release reads)."""
    return np.round(rgb.astype(np.float64) @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the koniq10k-subset folder (its 512x384/*.jpg are scored)")
    parser.add_argument("--niqe-only", action="store_true", help="skip BRISQUE (no brisque wheel installed)")
    args = parser.parse_args()
    niqe_only, root = args.niqe_only, args.root
    prov = stamp()
    import skvideo
    if tuple(int(part) for part in skvideo.__version__.split(".")[:2]) < (1, 2):
        import scipy.misc as misc  # deprecated module; 1.2.0 replaced the call with its own PIL resize
        misc.imresize = _imresize
    import skvideo.measure

    paths = sorted((root / "512x384").glob("*.jpg"))[:N_IMAGES]
    if not paths:
        raise SystemExit(f"{root}/512x384 holds no .jpg; give the koniq10k-subset folder")
    if not niqe_only:
        from brisque import BRISQUE
        brisque = BRISQUE(url=False)
    scores = {}
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        grey = matlab_rgb2gray(rgb).astype(np.float32)[None, :, :, None]
        scores[path.name] = {"niqe": float(skvideo.measure.niqe(grey)[0])}
        if not niqe_only:
            scores[path.name]["brisque"] = float(brisque.score(rgb))
        print(path.name, scores[path.name])
    if niqe_only:
        model = Path(skvideo.measure.__file__).parent / "data" / "niqe_image_params.mat"
        out = OUT.with_name(f"published_niqe_reference_skvideo-{skvideo.__version__}.json")
        out.write_text(json.dumps({
            "what": "skvideo.measure.niqe on koniq10k-subset/512x384 (first images by name), MATLAB rgb2gray luma",
            "versions": {"scikit-video": skvideo.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                         "pillow": metadata.version("pillow")},
            "niqe_model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            "provenance": prov, "scores": scores}, indent=1) + "\n")
        print(f"-> {out}")
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "what": "scores from the packages' own code on koniq10k-subset/512x384 (first images by name)",
        "versions": {d: metadata.version(d) for d in ("scikit-video", "brisque", "numpy", "scipy", "pillow",
                                                     "scikit-image", "opencv-python-headless", "libsvm-official")},
        "provenance": prov, "scores": scores}, indent=1) + "\n")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
