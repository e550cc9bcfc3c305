"""Throughput of every KADID distortion on 512 x 384 images at batch 1 and 32.

Writes ``reports/benchmarks/distortions_speed.json`` and ``.md`` (atomically).
Peak memory of a batch of 32 is the peak resident-set growth on the CPU (the
kernel's high-water mark, reset per type through /proc/self/clear_refs) or
``torch.cuda.max_memory_allocated`` on CUDA.

    python benchmarks/distortions_speed.py [--device cpu|cuda] [--reps 2]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from rich.progress import Progress
from skimage import data

from iqabench import io
from iqabench.distortions import DISTORTION_TYPES, RANDOM_TYPES, distort

HEIGHT, WIDTH = 384, 512
TARGET_IMAGES_PER_S = 100.0
WHY_SLOW = {
    "denoise": "scikit-image non-local means, one image at a time on the CPU (stands in for CBM3D)",
    "jpeg2000": "OpenJPEG encode + decode through Pillow, one image at a time",
    "color_quantization": "Pillow median-cut palette + Floyd-Steinberg dithering, one image at a time",
    "jpeg": "libjpeg encode + decode, one image at a time",
    "lens_blur": "non-separable disk kernel up to 17 x 17 (direct convolution)",
    "motion_blur": "non-separable line kernel, per-image angle (grouped convolution)",
    "jitter": "five rounds of bilinear resampling with a fresh displacement field",
    "color_diffusion": "Lab round trip plus a Gaussian of sigma up to 20 (81 taps)",
    "non_eccentricity_patch": "up to 100 sequential patch copies",
}


def _batch(size: int, device: str) -> torch.Tensor:
    image = torch.from_numpy(data.astronaut()[64:64 + HEIGHT, :WIDTH].copy())
    image = image.permute(2, 0, 1).float().div(255).to(device)
    return image.unsqueeze(0).repeat(size, 1, 1, 1)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _time(images: torch.Tensor, dist: str, reps: int, device: str) -> float:
    generator = torch.Generator(device=images.device).manual_seed(0)
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        distort(images, dist, 3, generator)
    _sync(device)
    return reps * images.shape[0] / (time.perf_counter() - start)


def _peak_mib(images: torch.Tensor, dist: str, device: str) -> float | None:
    generator = torch.Generator(device=images.device).manual_seed(0)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        distort(images, dist, 3, generator)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - baseline) / 2 ** 20
    if not _rss_peak_reset():
        return None
    baseline = _rss_kib("VmRSS")
    distort(images, dist, 3, generator)
    return max(0, _rss_kib("VmHWM") - baseline) / 1024


def run(device: str, reps: int, types: list[str]) -> dict:
    small, large = _batch(1, device), _batch(32, device)
    rows = []
    with Progress() as progress:
        task = progress.add_task(f"distortions on {device}", total=len(types))
        for dist in types:
            distort(small, dist, 3, torch.Generator(device=small.device).manual_seed(0))  # warm-up
            rows.append({
                "type": dist,
                "random": dist in RANDOM_TYPES,
                "images_per_s_batch1": _time(small, dist, max(reps, 3), device),
                "images_per_s_batch32": _time(large, dist, reps, device),
                "peak_memory_mib_batch32": _peak_mib(large, dist, device),
            })
            progress.advance(task)
    median32 = statistics.median(r["images_per_s_batch32"] for r in rows)
    return {
        "image_size": [HEIGHT, WIDTH],
        "device": device if not device.startswith("cuda") else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "repetitions_batch32": reps,
        "median_images_per_s_batch32": median32,
        "target_images_per_s_batch32": TARGET_IMAGES_PER_S,
        "meets_target": median32 >= TARGET_IMAGES_PER_S,
        "results": rows,
    }


def to_markdown(report: dict) -> str:
    rows = sorted(report["results"], key=lambda r: r["images_per_s_batch32"])
    lines = [
        "# Distortion engine throughput",
        "",
        f"{report['image_size'][1]} x {report['image_size'][0]} images on **{report['device']}** "
        f"({report['cpu_threads']} torch threads, torch {report['torch']}); level 3; "
        f"{report['repetitions_batch32']} repetition(s) at batch 32.",
        "",
        f"Median over types at batch 32: **{report['median_images_per_s_batch32']:.1f} images/s** "
        f"(target {report['target_images_per_s_batch32']:.0f}: "
        f"{'met' if report['meets_target'] else 'not met'}).",
        "",
        "| type | images/s (batch 1) | images/s (batch 32) | peak memory, batch 32 (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        memory = "n/a" if row["peak_memory_mib_batch32"] is None else f"{row['peak_memory_mib_batch32']:.0f}"
        lines.append(f"| {row['type']} | {row['images_per_s_batch1']:.1f} | "
                     f"{row['images_per_s_batch32']:.1f} | {memory} |")
    lines += ["", "## Slowest types and why", ""]
    for row in rows[:5]:
        reason = WHY_SLOW.get(row["type"], "per-pixel work on the full batch")
        lines.append(f"- **{row['type']}** ({row['images_per_s_batch32']:.1f} images/s): {reason}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions at batch 32")
    parser.add_argument("--types", nargs="*", default=list(DISTORTION_TYPES), help="subset of types")
    parser.add_argument("--out-dir", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--name", default="distortions_speed", help="output file stem")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch sees no CUDA device")
    unknown = sorted(set(args.types) - set(DISTORTION_TYPES))
    if unknown:
        parser.error(f"unknown types {unknown}; valid: {', '.join(DISTORTION_TYPES)}")
    report = run(args.device, args.reps, args.types)
    io.write_json(args.out_dir / f"{args.name}.json", report)
    io.write_text(args.out_dir / f"{args.name}.md", to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
