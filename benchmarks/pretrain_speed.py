"""The pretraining data path, measured piece by piece, and what one GPU at 1,500 images/s needs.

One run, on KADIS-like JPEGs made on the spot (512 x 384, quality 90, random
crops of the photos scikit-image ships), one torch thread for the per-worker
parts (a DataLoader worker is one process doing exactly this):

1. **decode + crop per worker** (the new path): ``ImageFiles.__getitem__`` +
   ``collate`` with distortion left to the training device: read, decode,
   random 512 px window (padded), class drawn, uint8 batch.
2. **the old per-image path per worker**: ``ImageFiles.__getitem__`` as it was
   before issue 13 (git revision ``--old-rev``, executed read-only): decode,
   crop and distort one window at a time inside the worker; timed on the first
   batch's windows, whose classes are the same in both paths, so 2, 3 and 4 see
   the same mix of types (a denoise costs 50 times a mean shift).
3. **decode + crop + batched synthesis per worker**: the CPU default
   (``synthesis: workers``), where each worker distorts its batch in ``collate``.
4. **the engine's batched synthesis on the available device**: ``to_device``
   on the first uint8 batch (grouped by type, per-image levels), images/s (on
   the CPU with one thread, a worker's share; torch's two OpenMP threads stall
   each other on a shared machine).
5. **the training step**: the paper profile's model (``profiles/paper.yaml``:
   ResNet-50, 256 px views, colour spaces, projector) at a small batch,
   forward + backward + SGD step, images/s (all torch threads).

From these: the decode workers for 1,500 images/s (both halves of a paper
batch are decoded, one of them is synthetic), the share of the device's time
that synthesis takes (750 synthetic images/s over the measured synthesis
rate: on the CPU this is > 100 %, i.e. impossible; on a GPU it comes from
``reports/benchmarks/gpu_check.json`` when that holds measured engine rates),
and the workers the old path would need. Writes
``reports/benchmarks/pretrain_speed.json`` and ``.md`` atomically.

    python benchmarks/pretrain_speed.py [--images 32] [--synth-batch 16] [--step-batch 2] [--steps 2]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from iqabench import io
from iqabench.datasets.embedded import PHOTOS
from iqabench.provenance import stamp, stamp_line
from iqabench.training import sources
from iqabench.training.contrastive import multi_positive_nt_xent
from iqabench.training.pretrain import ContrastiveModel, PretrainConfig
from iqabench.training.views import make_views

ROOT = Path(__file__).resolve().parents[1]
TARGET_IMAGES_PER_S = 1500
SYNTHETIC_SHARE = 0.5          # the paper profile: 256 synthetic + 256 authentic per step
OLD_REV = "b528b92"            # the commit issue 13 started from: workers distorted one window at a time
REGION, SEED = 512, 0


def make_jpegs(folder: Path, count: int) -> list[Path]:
    """``count`` 512 x 384 JPEGs (quality 90): random crops (>= 60 % per side) of the embedded photos."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    photos = [np.asarray(load()) for load in PHOTOS.values()]
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        photo = photo if photo.ndim == 3 else np.repeat(photo[..., None], 3, axis=2)
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        top, left = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
        crop = Image.fromarray(np.ascontiguousarray(photo[top:top + ch, left:left + cw, :3]))
        path = folder / f"kadis-like-{i:03d}.jpg"
        crop.resize((512, 384), Image.Resampling.LANCZOS).save(path, quality=90)
        paths.append(path)
    return paths


def load_old_sources(revision: str):
    """``iqabench.training.sources`` as it was at ``revision``, executed under a private name."""
    text = subprocess.run(["git", "show", f"{revision}:src/iqabench/training/sources.py"], cwd=ROOT,
                          check=True, capture_output=True, text=True).stdout
    name = "iqabench.training._sources_before_issue13"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "iqabench.training"  # its relative imports resolve against today's package
    exec(compile(text, f"{revision}:src/iqabench/training/sources.py", "exec"), module.__dict__)
    return module


def _keys(n: int, count: int, batch: int):
    """``count`` (epoch, index, step, first_slot) keys in batches, as StepBatchSampler makes them."""
    for step in range(math.ceil(count / batch)):
        idx = sources.batch_indices(step % max(1, n // batch), n, batch, 0, 1, SEED)
        yield [(0, int(i), step, step * batch) for i in idx][:count - step * batch]


def _rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def per_worker(dataset, paths: list[Path], count: int, batch: int) -> tuple[float, list]:
    """Images/s of ``__getitem__`` + ``collate`` in this process, and the batches made."""
    made, start = [], time.perf_counter()
    for keys in _keys(len(paths), count, batch):
        made.append(dataset.collate([dataset[k] for k in keys]))
    return _rate(count, time.perf_counter() - start), made


def old_per_image(paths: list[Path], keys: list, revision: str) -> float:
    """The old ``__getitem__`` on ``keys``: the same windows and classes the new path draws for them
    (both draw from the same per-sample generator), so the type mix is the same."""
    old = load_old_sources(revision)
    dataset = old.ImageFiles(paths, REGION, SEED, distort=True)
    dataset[(0, 0)]  # warm-up
    start = time.perf_counter()
    for key in keys:
        dataset[key[:2]]
    return _rate(len(keys), time.perf_counter() - start)


def synthesis_rate(batches: list, device: torch.device) -> float:
    if device.type == "cuda":  # warm-up: kernels (the CPU's codecs were warmed by the worker runs)
        sources.to_device(batches[0], device)
        _sync(device)
    start = time.perf_counter()
    for batch in batches:
        sources.to_device(batch, device)
    _sync(device)
    return _rate(sum(len(b.labels) for b in batches), time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def paper_config() -> PretrainConfig:
    profile = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    known = {f for f in PretrainConfig.__dataclass_fields__}
    return PretrainConfig(**{k: v for k, v in profile.items() if k in known})


def training_step_rate(batch: torch.Tensor, device: torch.device, steps: int) -> dict:
    """Forward + backward + SGD step of the paper profile's model on ``batch`` (float, 512 px windows)."""
    cfg = paper_config()
    model = ContrastiveModel(cfg).to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(SEED)
    labels = torch.arange(batch.shape[0], device=device) % 3  # a few shared classes: positives exist

    def step() -> None:
        views = [v.contiguous(memory_format=torch.channels_last) for v in make_views(batch, cfg.crop, gen,
                                                                                    cfg.colour_spaces)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            z = model(*views)
        target = labels.repeat_interleave(cfg.grid ** 2).repeat(len(views))
        loss = multi_positive_nt_xent(z.float(), target, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return {"arch": cfg.arch, "crop": cfg.crop, "batch": batch.shape[0], "steps": steps,
            "torch_threads": torch.get_num_threads(),
            "images_per_s": _rate(steps * batch.shape[0], time.perf_counter() - start)}


def gpu_synthesis_rate(path: Path) -> float | None:
    """Synthesis images/s on a GPU from gpu_check.json's measured engine rates (uniform type mix), if any."""
    if not path.is_file():
        return None
    engine = json.loads(path.read_text()).get("parts", {}).get("engine")  # a string when it was not measured
    rates = [row["images_per_s"] for row in (engine.get("results", []) if isinstance(engine, dict) else [])
             if row.get("images_per_s")]
    return 1 / statistics.mean(1 / r for r in rates) if rates else None  # time per image averaged over types


def run(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp) / "kadis-like", args.images)
        torch.set_num_threads(1)  # one worker = one process on one core
        decode = sources.ImageFiles(paths, REGION, SEED, distort=True, distort_in_workers=False)
        per_worker(decode, paths, min(8, args.images), 8)  # warm-up: file cache, decoder
        decode_rate, pending = per_worker(decode, paths, args.images, args.synth_batch)
        # The old path, the workers' batched synthesis and the device's on the same windows and classes.
        first = next(_keys(len(paths), args.synth_batch, args.synth_batch))
        old_rate = old_per_image(paths, first, args.old_rev)
        in_workers = sources.ImageFiles(paths, REGION, SEED, distort=True, distort_in_workers=True)
        worker_synth_rate, _ = per_worker(in_workers, paths, args.synth_batch, args.synth_batch)
        synth_rate = synthesis_rate(pending[:1], device)  # on the CPU: one thread, a worker's share
        torch.set_num_threads(threads)
        window = sources.to_device(pending[0], device)[:args.step_batch]
        step = training_step_rate(window, device, args.steps)
    synthetic = TARGET_IMAGES_PER_S * SYNTHETIC_SHARE
    gpu_rate = synth_rate if device.type == "cuda" else gpu_synthesis_rate(args.gpu_check)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "load_average_1_5_15_min": [round(v, 2) for v in os.getloadavg()],
        "images": {"count": args.images, "size": "512 x 384 JPEG, quality 90", "region": REGION},
        "decode_crop_per_worker": decode_rate,
        "old_per_image_per_worker": old_rate, "old_revision": args.old_rev,
        "decode_crop_synthesis_per_worker": worker_synth_rate,
        "ratio_decode_vs_old_per_worker": decode_rate / old_rate,
        "synthesis": {"device": str(device), "batch": args.synth_batch, "images_per_s": synth_rate},
        "training_step": step,
        "target_images_per_s": TARGET_IMAGES_PER_S, "synthetic_share": SYNTHETIC_SHARE,
        "workers_needed_decode": math.ceil(TARGET_IMAGES_PER_S / decode_rate),
        "workers_needed_old_path": math.ceil(synthetic / old_rate) + math.ceil(synthetic / decode_rate),
        "workers_needed_synthesis_in_workers": math.ceil(synthetic / worker_synth_rate)
        + math.ceil(synthetic / decode_rate),
        "device_share_synthesis_this_device": synthetic / synth_rate,
        "gpu_synthesis_images_per_s": gpu_rate,
        "device_share_synthesis_gpu": synthetic / gpu_rate if gpu_rate else None,
    }


def to_markdown(r: dict) -> str:
    syn, st = r["synthesis"], r["training_step"]
    gpu = ("not measured: no GPU was available (run `benchmarks/gpu_check.sh` on one; this report then reads "
           "its engine rates)") if r["device_share_synthesis_gpu"] is None else \
        f"**{100 * r['device_share_synthesis_gpu']:.1f} %** ({r['gpu_synthesis_images_per_s']:.0f} images/s)"
    return "\n".join([
        "# Pretraining data path", "", stamp_line(r["provenance"]), "",
        f"Device: {r['device']}; load average "
        f"{' / '.join(str(v) for v in r['load_average_1_5_15_min'])} at the end: the machine is shared, so rates "
        "are lower bounds; the ratios were measured in the same run.",
        f"Images: {r['images']['count']} KADIS-like {r['images']['size']} made from the embedded photos; "
        f"{r['images']['region']} px windows.", "",
        "| per worker (one process, one thread) | images/s |", "|---|---:|",
        f"| decode + crop (new path: synthesis on the training device) | {r['decode_crop_per_worker']:.1f} |",
        f"| old path: decode + crop + distort one window at a time (`{r['old_revision']}`) "
        f"| {r['old_per_image_per_worker']:.1f} |",
        f"| decode + crop + batched synthesis in the worker (CPU default) "
        f"| {r['decode_crop_synthesis_per_worker']:.1f} |", "",
        f"Per worker, the new path reads **{r['ratio_decode_vs_old_per_worker']:.1f}x** as many synthetic images "
        "as the old one.", "",
        f"Batched synthesis on the available device ({syn['device']}"
        f"{', one thread' if syn['device'] == 'cpu' else ''}, a batch of {syn['batch']} drawn uniformly over the 25 "
        f"types and 5 levels, the old path's windows): **{syn['images_per_s']:.1f} images/s**.",
        f"Training step of the paper profile ({st['arch']}, {st['crop']} px views, batch {st['batch']}, "
        f"{st['torch_threads']} threads): **{st['images_per_s']:.2f} images/s**.", "",
        f"## For {r['target_images_per_s']:,} images/s on one GPU (half of them synthetic)", "",
        f"- Decode workers: **{r['workers_needed_decode']}** per GPU at this CPU's per-core rate (every image, "
        "synthetic or authentic, is decoded and cropped once; the synthetic half is then distorted on the GPU).",
        f"- The old per-image path would need **{r['workers_needed_old_path']}** workers per GPU; distorting in the "
        f"workers with the batched engine (the CPU default) **{r['workers_needed_synthesis_in_workers']}**.",
        f"- Share of the GPU's time spent on synthesis: {gpu}. On this CPU the same 750 synthetic images/s would "
        f"take {r['device_share_synthesis_this_device']:.0f}x its whole time, which is why a GPU run distorts "
        "on the GPU.", "",
        "Re-run: `python benchmarks/pretrain_speed.py` (under 3 minutes).", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="JPEGs to make and decode")
    parser.add_argument("--synth-batch", type=int, default=16, help="images per synthesis batch")
    parser.add_argument("--step-batch", type=int, default=2, help="images per training step")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps (after one warm-up)")
    parser.add_argument("--old-rev", default=OLD_REV, help="git revision of the old per-image sources.py")
    parser.add_argument("--gpu-check", type=Path, default=ROOT / "reports" / "benchmarks" / "gpu_check.json")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "benchmarks")
    args = parser.parse_args()
    for name in ("images", "synth_batch", "step_batch", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    report = {"provenance": stamp(), **run(args)}
    io.write_json(args.out_dir / "pretrain_speed.json", report)
    io.write_text(args.out_dir / "pretrain_speed.md", to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
