"""Byte-stable CPU stages: fixed float precision in CSV/JSON, deterministic images, no flat embedded image."""
from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from iqabench import features, images, io, rows
from iqabench.datasets import embedded
from stage_cmd import args as dvc_args

REPO = Path(__file__).resolve().parents[1]
TINY = {"prepare": {"patch_size": 64, "max_patches_per_photo": 2, "versions_per_patch": 3},
        "synthesize": {"n_images": 48, "shard_size": 32, "crop": 48}}


def test_floats_are_written_at_fixed_significant_digits(tmp_path):
    noisy = 0.1 + 0.2                            # 0.30000000000000004
    assert io.stable_float(noisy) == 0.3 and io.stable_float(noisy * (1 + 4e-16)) == 0.3
    frame = pd.DataFrame({"x": [noisy, 1 / 3, np.nan], "n": [1, 2, 3], "f32": np.float32([0.1, 0.2, 1 / 3])})
    io.write_csv(tmp_path / "a.csv", frame)
    assert (tmp_path / "a.csv").read_text() == "x,n,f32\n0.3,1,0.1\n0.3333333333,2,0.2\n,3,0.3333333\n"
    io.write_json(tmp_path / "a.json", {"v": [noisy, np.float64(2 / 3)], "k": np.int64(4), "b": True})
    assert yaml.safe_load((tmp_path / "a.json").read_text()) == {"v": [0.3, 0.6666666667], "k": 4, "b": True}


def _run_stages(work: Path, threads: int, prefix: tuple[str, ...] = (), **env: str) -> dict[str, str]:
    """prepare (both embedded sets) and synthesize in one fresh interpreter with torch at ``threads``
    (``env``: e.g. ATEN_CPU_CAPABILITY, torch's vector kernel set, "default" for the scalar ones; ``prefix``:
    a command the interpreter runs under, e.g. an emulator)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    params["models"].remove("niqe")  # its 96 px minimum would refuse the tiny 64 px patches (params check)
    params["pretrain"]["contrique"]["batch_size"] = 48  # a global batch the 48-crop corpus holds (params check)
    params["pretrain"]["contrique"]["crop"] = 48  # views cut from the 48 px corpus images (params check)
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    runs = [["prepare.py", *dvc_args("prepare", "synthetic-single")],  # as dvc.yaml runs them
            ["prepare.py", *dvc_args("prepare", "synthetic-mixed")], ["synthesize.py", *dvc_args("synthesize")]]
    script = ("import runpy, sys\n"
              f"for args in {runs!r}:\n"
              "    sys.argv = args\n"
              "    try:\n"
              f"        runpy.run_path({str(REPO / 'stages')!r} + '/' + args[0], run_name='__main__')\n"
              "    except SystemExit as done:\n"
              "        if done.code:\n"
              "            raise\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **env}
    proc = subprocess.run([*prefix, sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=3600)  # generous: against a hang only, never tripped by a slow machine
    assert proc.returncode == 0, proc.stderr[-3000:]
    outputs = [*sorted((work / "data").rglob("*")), work / "reports/distortions.png"]
    return {str(p.relative_to(work)): hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs if p.is_file()}


@pytest.mark.slow
def test_prepare_and_synthesize_give_identical_bytes_at_one_and_two_threads(tmp_path):
    one, two = _run_stages(tmp_path / "t1", 1), _run_stages(tmp_path / "t2", 2)
    assert any(name.endswith("manifest.csv") for name in one) and any("shard-" in name for name in one)
    assert one == two


@pytest.mark.slow
def test_prepare_and_synthesize_give_identical_bytes_with_another_cpus_vector_kernels(tmp_path):
    # A stand-in for another CPU model: torch's scalar kernels instead of this CPU's AVX2/AVX-512 ones, oneDNN and
    # MKL on their AVX2 paths (on an AVX-512 CPU). In float32 the kernels stored other 8-bit pixels in ~10% of the
    # embedded images, and MKL's paths rounded 2 of 1,740 labels the other way at full size: the engine and the
    # labels run in float64 now (tests/test_fr_metrics.py checks the labels' move on the same paths).
    native = _run_stages(tmp_path / "native", 2)
    scalar = _run_stages(tmp_path / "scalar", 2, ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="AVX2",
                         MKL_ENABLE_INSTRUCTIONS="AVX2")
    assert any(name.endswith("manifest.csv") for name in native)
    assert native == scalar


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64", reason="no qemu-x86_64 (apt-get install qemu-user)")
def test_prepare_and_synthesize_give_identical_bytes_on_an_emulated_intel_avx2_cpu(tmp_path):
    """Another CPU for real: qemu's Haswell (GenuineIntel, AVX2, no AVX-512) sends every library's own dispatch
    (torch, MKL, oneDNN, OpenBLAS, numpy, libjpeg-turbo, zlib-ng) down other paths than an AVX-512 or AMD host."""
    native = _run_stages(tmp_path / "native", 2)
    emulated = _run_stages(tmp_path / "haswell", 2, prefix=(QEMU, "-cpu", "Haswell"))
    assert any(name.endswith("manifest.csv") for name in native)
    assert native == emulated


def test_float64_pixels_at_a_half_level_are_stored_alike_whatever_their_last_bits():
    # The one pixel an AMD EPYC (AVX-512) machine stored one level off the AVX2 machine's lock, in synthetic-mixed
    # (quantization then motion_blur): a tie in exact arithmetic that each CPU's kernels miss by a few ulps.
    ties = torch.tensor([100.5, 101.5, 0.5, 254.5], dtype=torch.float64) / 255
    for noise in (-3e-15, 0.0, 3e-15):  # ~1e-12 of a grey level
        assert images.quantize(ties + noise).tolist() == [100, 102, 0, 254]  # half to even, as torch.round
    near = torch.tensor([100.5 - 1e-6, 100.5 + 1e-6], dtype=torch.float64) / 255  # not a tie: rounded as it is
    assert images.quantize(near).tolist() == [100, 101]
    x = torch.rand(3, 8, 8)
    assert torch.equal(images.quantize(x), x.mul(255).round().to(torch.uint8))  # float32: as before
    assert (images.to_uint8(ties.view(1, 2, 2).expand(3, 2, 2)) == np.array([[100, 102], [0, 254]])[..., None]).all()


def test_the_issue_image_is_flat_and_redraws_keep_versions_distinct(monkeypatch):
    # seed 1's coffee-r128c384_00236.png: colour diffusion at level 5 leaves one grey level.
    patch = dict(embedded.content_patches("coffee", 128, 16))["coffee-r128c384"]
    flat = embedded.distort(patch[None], "color_diffusion", torch.tensor([5]), generator=torch.Generator())
    assert embedded.is_flat(flat).item() and not embedded.is_flat(patch[None]).item()

    real = embedded.distort

    def flattening(batch, dist, levels, generator):  # pretend colour diffusion flattens every patch
        out = real(batch, dist, levels, generator=generator)
        return torch.full_like(out, 0.5) if dist == "color_diffusion" else out

    monkeypatch.setattr(embedded, "distort", flattening)
    refs = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out, owners, types, levels = embedded.distort_single(refs, 40, torch.Generator().manual_seed(1))
    assert not embedded.is_flat(out).any() and "color_diffusion" not in types
    for p in (0, 1):
        drawn = [(t, lv) for o, t, lv in zip(owners, types, levels) if o == p]
        assert len(drawn) == 40 == len(set(drawn))


def test_mixed_redraws_a_flat_composition(monkeypatch):
    real = embedded.apply_sequence

    def flattening(batch, steps, generator):
        out = real(batch, steps, generator=generator)
        return torch.full_like(out, 0.5) if any(d == "color_diffusion" for d, _ in steps) else out

    monkeypatch.setattr(embedded, "apply_sequence", flattening)
    refs = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out, _, dists, _ = embedded.distort_mixed(refs, 30, 3, torch.Generator().manual_seed(2))
    assert not embedded.is_flat(out).any() and not any("color_diffusion" in d for d in dists)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_embedded_sets_prepare_and_extract_at_several_seeds(tmp_path, seed):
    """Tiny sets at several seeds: no flat image, and BRISQUE (the strictest row) is defined on every image."""
    for name in embedded.SETS:
        frame = embedded.build(name, tmp_path / name, patch_size=64, max_patches_per_photo=1, versions_per_patch=4,
                               max_k=3, label_metrics=["ssim"], seed=seed)
        brisque = features.extract(rows.feature_fn("brisque"), frame, show_progress=False)
        assert not features.undefined_images(brisque).any(), (name, seed)

