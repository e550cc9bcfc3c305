"""Throughput of every KADID distortion on 512 x 384 images at batch 1 and 32.

Writes ``reports/benchmarks/distortions_speed.json`` and ``.md`` (atomically).
Peak memory of a batch of 32 is the peak resident-set growth on the CPU (the
kernel's high-water mark, reset per type through /proc/self/clear_refs) or
``torch.cuda.max_memory_allocated`` on CUDA. Next to wall-clock throughput it
records the process CPU time per image, which moves less than wall time when
other jobs share the machine.

``--baseline REV`` also times the engine as it was at git revision ``REV``
(extracted read-only with ``git show``) at batch 32, interleaved with the
current one, so speed-ups are ratios measured under the same load.

``--reference PATH`` instead times the engine at batch 32 against ARNIQA's
per-image functions read from ``PATH`` (e.g. ``../shared/reference/arniqa``;
never copied here), on one CPU thread, ``--reps`` interleaved rounds per type
(default 7; the ratio is the median over rounds), and writes
``reports/benchmarks/distortions_vs_reference.json`` and ``.md``
(``benchmarks/arniqa_reference.py``).

    python benchmarks/distortions_speed.py [--device cpu|cuda] [--reps 2] [--threads N] [--baseline REV]
    python benchmarks/distortions_speed.py --reference ../shared/reference/arniqa [--reps 7]
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.progress import Progress
from skimage import data

from iqabench import io
from iqabench.distortions import DISTORTION_TYPES, RANDOM_TYPES, distort
from iqabench.provenance import stamp, stamp_line

HEIGHT, WIDTH = 384, 512
TARGET_IMAGES_PER_S = 100.0
WHY_SLOW = {
    "denoise": "non-local means in torch: 49 search offsets, each a few full-image passes and an exp",
    "jpeg2000": "OpenJPEG encode + decode through Pillow, one image at a time",
    "color_quantization": "Pillow median cut (on a 16k-pixel grid) + Floyd-Steinberg dithering, one image at a time",
    "jpeg": "libjpeg encode + decode, one image at a time inside torchvision, plus the interleave to and from HWC",
    "lens_blur": "non-separable disk kernel (9 x 9 at level 3, up to 17 x 17), direct convolution",
    "motion_blur": "non-separable line kernel (trimmed to its non-zero taps), per-image angle (grouped convolution)",
    "jitter": "five rounds of bilinear resampling, each with a fresh Gaussian displacement field",
    "color_diffusion": "Lab round trip (three powers as log and exp each way) plus a separable Gaussian of sigma 11 "
                       "(45 taps)",
    "brighten": "Lab round trip (powers as log and exp) plus two tone curves",
    "high_sharpen": "Lab round trip (powers as log and exp) plus a 13-tap separable Gaussian",
    "color_saturation_lab": "Lab round trip (powers as log and exp)",
    "white_noise_ycbcr": "a Gaussian draw for every sample plus two colour matrices",
    "gaussian_blur": "two depthwise convolution passes over the batch",
    "color_shift": "gradient, a 17-tap Gaussian and two per-image order statistics (kthvalue)",
    "non_eccentricity_patch": "up to 100 sequential patch copies",
    "color_saturation_hsv": "RGB -> HSV (maximum/minimum, a three-way hue select) and back, about 20 full-image passes",
    "quantization": "classes as ceil(n x) - 1 (four elementwise passes) and a per-image min-max stretch",
}
BASELINE_PACKAGE = "_baseline_iqabench"


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


def _time(images: torch.Tensor, dist: str, reps: int, device: str, function=distort) -> tuple[float, float]:
    """(images per second of wall time, CPU seconds per image)."""
    generator = torch.Generator(device=images.device).manual_seed(0)
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(reps):
        function(images, dist, 3, generator)
    _sync(device)
    count = reps * images.shape[0]
    return count / (time.perf_counter() - start), (time.process_time() - cpu_start) / count


def load_baseline(revision: str, directory: Path):
    """Import ``iqabench.distortions`` as it was at ``revision`` under another name."""
    root = Path(__file__).resolve().parents[1]
    listing = subprocess.run(["git", "ls-tree", "--name-only", revision, "src/iqabench/distortions/"],
                             cwd=root, check=True, capture_output=True, text=True).stdout.split()
    if not listing:
        raise SystemExit(f"revision {revision!r} has no src/iqabench/distortions/ to compare against")
    package = directory / BASELINE_PACKAGE
    (package / "distortions").mkdir(parents=True)
    (package / "__init__.py").write_text("from iqabench import io  # noqa: F401\n")
    for path in listing:
        source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, check=True,
                                capture_output=True, text=True).stdout
        (package / "distortions" / Path(path).name).write_text(source)
    sys.path.insert(0, str(directory))
    return importlib.import_module(f"{BASELINE_PACKAGE}.distortions")


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


def run(device: str, reps: int, types: list[str], baseline=None) -> dict:
    small, large = _batch(1, device), _batch(32, device)
    rows = []
    with Progress() as progress:
        task = progress.add_task(f"distortions on {device}", total=len(types))
        for dist in types:
            distort(small, dist, 3, torch.Generator(device=small.device).manual_seed(0))  # warm-up
            per_s1, _ = _time(small, dist, max(reps, 3), device)
            per_s32, cpu32 = _time(large, dist, reps, device)
            row = {
                "type": dist,
                "random": dist in RANDOM_TYPES,
                "images_per_s_batch1": per_s1,
                "images_per_s_batch32": per_s32,
                "cpu_s_per_image_batch32": cpu32,
                "peak_memory_mib_batch32": _peak_mib(large, dist, device),
            }
            if baseline is not None:
                # Alternate old and new so both see the same load; one repetition each.
                old, _ = _time(large, dist, 1, device, baseline.distort)
                new, _ = _time(large, dist, 1, device)
                row["baseline_images_per_s_batch32"] = old
                row["speedup_vs_baseline"] = new / old
            rows.append(row)
            progress.advance(task)
    median32 = statistics.median(r["images_per_s_batch32"] for r in rows)
    report = {
        "image_size": [HEIGHT, WIDTH],
        "device": device if not device.startswith("cuda") else torch.cuda.get_device_name(),
        "cpu_threads": torch.get_num_threads(),
        "repetitions_batch32": reps,
        "median_images_per_s_batch32": median32,
        "target_images_per_s_batch32": TARGET_IMAGES_PER_S,
        "meets_target": median32 >= TARGET_IMAGES_PER_S,
        "results": rows,
    }
    report["load_average_1_5_15_min"] = [round(value, 2) for value in os.getloadavg()]
    return report


def to_markdown(report: dict) -> str:
    rows = sorted(report["results"], key=lambda r: r["images_per_s_batch32"])
    has_baseline = "speedup_vs_baseline" in rows[0]
    load = report.get("load_average_1_5_15_min")
    lines = [
        "# Distortion engine throughput",
        "",
        stamp_line(report["provenance"]),
        "",
        f"{report['image_size'][1]} x {report['image_size'][0]} images on **{report['device']}** "
        f"(torch threads: {report['cpu_threads']}); level 3; "
        f"{report['repetitions_batch32']} repetition(s) at batch 32.",
        "",
        f"Median over types at batch 32: **{report['median_images_per_s_batch32']:.1f} images/s** "
        f"(target {report['target_images_per_s_batch32']:.0f}: "
        f"{'met' if report['meets_target'] else 'not met'}).",
        "",
        "The machine is shared with other jobs and noisy: "
        + (f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) at the end of the run. "
           if load else "")
        + "Wall-clock numbers can move by 2x or more from one run to the next; CPU seconds per image "
        "move less. Compare implementations only through ratios measured in the same run.",
        "",
        "Peak memory is the growth of the resident set over what the process already held: the engine "
        "works in chunks of about 0.26M pixels (one 512 x 512 image) whose buffers the allocator reuses from "
        "earlier types, and output batches reuse the memory of freed ones of the same size, so 0 means the type "
        "needed no memory beyond that (the 72 MiB output batch included).",
        "",
    ]
    if report["cpu_threads"] == 1:
        lines[-1:-1] = ["",
            "Run with `--threads 1`: when other jobs keep both cores busy, torch's two OpenMP threads wait "
            "for a descheduled partner at every operation (an in-place add on 1M floats took 0.07 ms with "
            "one thread and 0.8 to 17 ms with two, in one process, minutes apart), and a 2-thread run of "
            "this benchmark under load 6 gave a median of 20.7 images/s."]
    header = "| type | images/s (batch 1) | images/s (batch 32) | CPU ms/image (batch 32) | peak memory, batch 32 (MiB) |"
    rule = "|---|---:|---:|---:|---:|"
    if has_baseline:
        header += " baseline images/s (batch 32) | speed-up |"
        rule += "---:|---:|"
    lines += [header, rule]
    for row in rows:
        memory = "n/a" if row["peak_memory_mib_batch32"] is None else f"{row['peak_memory_mib_batch32']:.0f}"
        line = (f"| {row['type']} | {row['images_per_s_batch1']:.1f} | {row['images_per_s_batch32']:.1f} | "
                f"{1000 * row['cpu_s_per_image_batch32']:.1f} | {memory} |")
        if has_baseline:
            line += f" {row['baseline_images_per_s_batch32']:.1f} | {row['speedup_vs_baseline']:.1f}x |"
        lines.append(line)
    if has_baseline:
        speedups = [row["speedup_vs_baseline"] for row in rows]
        lines += ["", f"Baseline: the engine at revision `{report['baseline_revision']}`, timed at batch 32 "
                  "back to back with the current engine on the same type (one repetition each, so the speed-up "
                  "column is its own pair of timings, not the main columns); median speed-up "
                  f"over types **{statistics.median(speedups):.1f}x** (range {min(speedups):.1f}x to "
                  f"{max(speedups):.1f}x)."]
    lines += ["", "## Slowest types and why", ""]
    for row in rows[:6]:
        reason = WHY_SLOW.get(row["type"], "per-pixel work on the full batch")
        lines.append(f"- **{row['type']}** ({row['images_per_s_batch32']:.1f} images/s): {reason}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions at batch 32 (default 2); "
                        "with --reference, rounds per type (default 7)")
    parser.add_argument("--types", nargs="*", default=list(DISTORTION_TYPES), help="subset of types")
    parser.add_argument("--baseline", metavar="REV", help="git revision of the engine to compare against")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); on a "
                        "machine other jobs keep busy, 1 avoids OpenMP waiting for descheduled threads")
    parser.add_argument("--reference", type=Path, metavar="PATH",
                        help="folder holding ARNIQA's utils/ (per-image functions) to compare against")
    parser.add_argument("--reference-images", type=int, default=8,
                        help="with --reference: per-image calls timed per round")
    parser.add_argument("--out-dir", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--name", default=None, help="output file stem (default distortions_speed, or "
                        "distortions_vs_reference with --reference)")
    args = parser.parse_args()
    if args.reference is not None:
        compare_with_reference(args)
        return
    args.name = args.name or "distortions_speed"
    args.reps = 2 if args.reps is None else args.reps
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda was asked for but torch sees no CUDA device")
    unknown = sorted(set(args.types) - set(DISTORTION_TYPES))
    if unknown:
        parser.error(f"unknown types {unknown}; valid: {', '.join(DISTORTION_TYPES)}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    prov = stamp()  # before the run: the tree may move on while it measures
    with tempfile.TemporaryDirectory() as directory:
        baseline = load_baseline(args.baseline, Path(directory)) if args.baseline else None
        report = {"provenance": prov, **run(args.device, args.reps, args.types, baseline)}
    if args.baseline:
        report["baseline_revision"] = args.baseline
    io.write_json(args.out_dir / f"{args.name}.json", report)
    io.write_text(args.out_dir / f"{args.name}.md", to_markdown(report))
    print(to_markdown(report))


def compare_with_reference(args) -> None:
    import arniqa_reference

    if args.device != "cpu" or args.baseline:
        raise SystemExit("--reference compares on the CPU, one thread; drop --device/--baseline")
    torch.set_num_threads(1)  # the comparison is defined on one thread: per-image code gains nothing from more
    prov = stamp()
    image = _batch(1, "cpu")[0]
    rounds = 7 if args.reps is None else args.reps
    if rounds < 1:
        raise SystemExit(f"--reps must be at least 1, got {rounds}")
    report = {"provenance": prov,
              **arniqa_reference.compare(args.reference, image, batch=32, reference_images=args.reference_images,
                                         rounds=rounds, types=args.types)}
    report["load_average_1_5_15_min"] = [round(value, 2) for value in os.getloadavg()]
    name = args.name or "distortions_vs_reference"
    io.write_json(args.out_dir / f"{name}.json", report)
    io.write_text(args.out_dir / f"{name}.md", arniqa_reference.to_markdown(report))
    print(arniqa_reference.to_markdown(report))


if __name__ == "__main__":
    main()
