"""Load ARNIQA's per-image distortion functions from a checkout, for side-by-side timing only.

The reference (miccunifi/ARNIQA, ``utils/distortions.py``, ``utils/utils_distortions.py``,
``utils/utils_data.py``) is read from the folder the user names and never copied into
this repository. Two lines of ``distortions.py`` cannot run outside ARNIQA's own
checkout: the import of ``utils.utils.PROJECT_ROOT`` and the ``ctypes.CDLL`` that loads
its prebuilt ``dither.so`` (only its colour quantisation uses it, which is left out of
the comparison). Both are replaced in the source text before it is executed, and
the three modules are registered under private names so nothing called ``utils``
leaks into ``sys.modules``. The reference needs ``kornia`` (``pip install kornia``).

Names map our type to ARNIQA's (``distortion_functions`` keys); ours without a
counterpart there (``color_quantization`` needs the stubbed ``dither.so``,
``denoise`` ARNIQA does not have) are not comparable.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

OUR_TO_ARNIQA = {
    "gaussian_blur": "gaublur", "lens_blur": "lensblur", "motion_blur": "motionblur",
    "color_diffusion": "colordiff", "color_shift": "colorshift",
    "color_saturation_hsv": "colorsat1", "color_saturation_lab": "colorsat2",
    "jpeg2000": "jpeg2000", "jpeg": "jpeg",
    "white_noise": "whitenoise", "white_noise_ycbcr": "whitenoiseCC", "impulse_noise": "impulsenoise",
    "multiplicative_noise": "multnoise",
    "brighten": "brighten", "darken": "darken", "mean_shift": "meanshift",
    "jitter": "jitter", "non_eccentricity_patch": "noneccpatch", "pixelate": "pixelate",
    "quantization": "quantization", "color_block": "colorblock",
    "high_sharpen": "highsharpen", "contrast_change": "lincontrchange",
}

_PREFIX = "_arniqa_reference"
# (original text, replacement) per file; each must occur exactly once.
_PATCHES = {
    "utils_distortions.py": [],
    "distortions.py": [
        ("from utils.utils import PROJECT_ROOT", "PROJECT_ROOT = None  # stubbed: ARNIQA's checkout root"),
        ('ctypes.CDLL(PROJECT_ROOT / "utils" / "dither_extension/dither.so").dither',
         "__import__('types').SimpleNamespace()  # stubbed: dither.so, colour quantisation only"),
        ("from utils.utils_distortions import", f"from {_PREFIX}_utils_distortions import"),
    ],
    "utils_data.py": [("from utils.distortions import *", f"from {_PREFIX}_distortions import *")],
}


def _exec(path: Path, patches: list[tuple[str, str]]) -> types.ModuleType:
    source = path.read_text(encoding="utf-8")
    for original, replacement in patches:
        count = source.count(original)
        if count != 1:
            raise SystemExit(f"{path}: expected the line {original!r} once, found it {count} times; this loader "
                             "knows ARNIQA commit f60c0f2 (see ../shared/README.md), point --reference at that copy")
        source = source.replace(original, replacement)
    name = f"{_PREFIX}_{path.stem}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def load(root: str | Path) -> tuple[dict, dict]:
    """``(functions, level_values)`` keyed by ARNIQA's names, from the reference under ``root``."""
    root = Path(root)
    folder = root / "utils"
    missing = [name for name in _PATCHES if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"--reference {root}: missing {', '.join('utils/' + m for m in missing)}; pass the folder "
                         "that holds ARNIQA's utils/ (e.g. ../shared/reference/arniqa)")
    try:
        import kornia  # noqa: F401
    except ImportError:
        raise SystemExit("the ARNIQA reference needs kornia: pip install kornia") from None
    modules = {name: _exec(folder / name, patches) for name, patches in _PATCHES.items()}
    data = modules["utils_data.py"]
    return data.distortion_functions, data.distortion_range


def _seed_reference(seed: int) -> None:
    # The reference draws from the global RNGs; seeding them keeps its random types repeatable.
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


def compare(root: str | Path, image, batch: int, reference_images: int, rounds: int, types: list[str],
            level: int = 3, seconds_per_side: float = 0.25) -> dict:
    """Time the engine at ``batch`` against the reference applied per image, interleaved, per type.

    Each round times the reference on ``reference_images`` images (fewer for slow
    types, so that a side takes about ``seconds_per_side``; at least 2), once with
    each output dropped and once with the outputs stacked into a batch, then one
    engine call on the batch. The reference's inputs are cloned before the clock
    starts (several of its functions write into their input), as the oldest of
    ``batch`` fresh clones, so they are as cold in the cache as the engine's batch;
    each output goes through ``.to(float32)`` and ``clip(0, 1)`` as ARNIQA's
    ``distort_images`` does. Times are process CPU time (user + system, so page
    faults count). A round's ratio compares the two sides measured back to back
    under the same load; a type's ratio is the median over ``rounds`` rounds, with
    the lowest and highest beside it. A type whose reference raises is listed as
    not comparable with the error.
    """
    import math
    import time

    import torch

    from iqabench.distortions import distort

    functions, values = load(root)
    engine_batch = image.unsqueeze(0).repeat(batch, 1, 1, 1).contiguous()
    rows, skipped = [], {}
    for ours in types:
        theirs = OUR_TO_ARNIQA.get(ours)
        if theirs is None:
            skipped[ours] = "no counterpart in ARNIQA's distortion_functions (or it needs the stubbed dither.so)"
            continue
        function, value = functions[theirs], values[theirs][level - 1]

        def reference(inputs, collate=False):
            if collate:  # outputs kept and stacked into one batch
                torch.stack([torch.clip(function(x, value).to(torch.float32), 0, 1) for x in inputs])
                return
            for x in inputs:  # each output dropped at once: its memory is reused by the next
                torch.clip(function(x, value).to(torch.float32), 0, 1)

        _seed_reference(0)
        try:
            start = time.process_time()
            reference([image.clone()])
            per_image = time.process_time() - start
        except Exception as exc:  # noqa: BLE001 - the reference's own bug, reported per type
            skipped[ours] = f"reference raises {type(exc).__name__}: {str(exc)[:120]}"
            continue
        count = max(2, min(reference_images, math.ceil(seconds_per_side / max(per_image, 1e-6))))
        generator = torch.Generator().manual_seed(0)
        distort(engine_batch[:2], ours, level, generator)  # warm-up
        timings = {"reference": [], "collated": [], "engine": []}
        for _ in range(rounds):
            for side, collate in (("reference", False), ("collated", True)):
                # A working set as large as the engine's batch, timed on its oldest images: like the
                # engine's input batch, they are out of the cache, as freshly decoded images are.
                inputs = [image.clone() for _ in range(batch)][:count]
                cpu, wall = time.process_time(), time.perf_counter()
                reference(inputs, collate)
                timings[side].append(((time.process_time() - cpu) / count, (time.perf_counter() - wall) / count))
            cpu, wall = time.process_time(), time.perf_counter()
            distort(engine_batch, ours, level, generator)
            timings["engine"].append(((time.process_time() - cpu) / batch, (time.perf_counter() - wall) / batch))
        engine_cpu = [t[0] for t in timings["engine"]]
        per_round = [ref[0] / eng for ref, eng in zip(timings["reference"], engine_cpu)]
        rows.append({
            "type": ours, "arniqa_name": theirs, "level_value": value, "reference_images_per_round": count,
            "reference_images_per_s": 1 / _median([t[0] for t in timings["reference"]]),
            "engine_images_per_s": 1 / _median(engine_cpu),
            "collated_images_per_s": 1 / _median([t[0] for t in timings["collated"]]),
            "ratio": _median(per_round), "ratio_low": min(per_round), "ratio_high": max(per_round),
            "ratio_best_round": min(t[0] for t in timings["reference"]) / min(engine_cpu),
            "ratio_wall": _median([ref[1] / eng[1] for ref, eng in zip(timings["reference"], timings["engine"])]),
            "ratio_collated": _median([ref[0] / eng for ref, eng in zip(timings["collated"], engine_cpu)]),
        })
    ratios = [row["ratio"] for row in rows]
    return {"image_size": list(image.shape[-2:]), "level": level, "engine_batch": batch,
            "reference_images_per_round": reference_images, "seconds_per_side": seconds_per_side,
            "rounds": rounds, "torch_threads": torch.get_num_threads(),
            "reference": "miccunifi/ARNIQA f60c0f2, utils/distortions.py (per image)",
            "comparable_types": len(rows), "median_ratio": _median(ratios) if ratios else None,
            "min_ratio": min(ratios) if ratios else None,
            "min_ratio_low": min(row["ratio_low"] for row in rows) if rows else None,
            "median_ratio_collated": _median([r["ratio_collated"] for r in rows]) if rows else None,
            "min_ratio_collated": min(r["ratio_collated"] for r in rows) if rows else None,
            "results": rows, "not_comparable": skipped}


def to_markdown(report: dict) -> str:
    """The report; ``report["provenance"]`` is an ``iqabench.provenance.stamp()`` taken before the run."""
    from iqabench.provenance import stamp_line

    rows = sorted(report["results"], key=lambda r: r["ratio"])
    h, w = report["image_size"]
    lines = [
        "# The engine against ARNIQA's per-image distortions", "", stamp_line(report["provenance"]), "",
        f"**How it was measured.** One process, {report['torch_threads']} torch thread(s); "
        f"3 x {h} x {w} float32 images at level {report['level']}. The engine distorts a "
        f"batch of {report['engine_batch']} in one call (a new output batch each call); the reference "
        f"({report['reference']}) is called once per image on up to {report['reference_images_per_round']} "
        f"images per round (fewer for slow types, about {report['seconds_per_side']} s per side; column "
        f"\"ref. images\"), the oldest of {report['engine_batch']} fresh copies so that its inputs are as far "
        "out of the cache as the engine's batch, each output cast to float32 and clipped as ARNIQA's "
        f"`distort_images` does. **{report['rounds']} rounds per type**, each the reference then the engine back "
        "to back; times are process CPU time (user + system: page faults count, time other jobs take the core "
        "does not). **Ratio** = reference time / engine time per image (above 1: the engine is faster), the "
        "median of the rounds' ratios, with the lowest and highest round beside it.", "",
        f"**{report['comparable_types']} comparable types. Median ratio: {report['median_ratio']:.2f}x; slowest "
        f"type: {report['min_ratio']:.2f}x (lowest single round of any type: {report['min_ratio_low']:.2f}x).** "
        "Against the reference whose outputs are then stacked into a batch (what a DataLoader's collate does, "
        f"and what the engine returns): median {report['median_ratio_collated']:.2f}x, slowest "
        f"{report['min_ratio_collated']:.2f}x.", "",
        "Where the ratio stays near 1 both sides do the same work: white noise is bound by the random-number "
        "generator (both draw with `torch.randn` on torch's CPU Mersenne Twister, 0.8 of the time), pixelate by "
        "two nearest-neighbour resamplings (the ATen kernels kornia also calls). There the engine gains only what "
        "it avoids (Python per image, extra passes) and pays what a per-image loop whose outputs are dropped "
        "never does: it checks every input pixel is in [0, 1] and writes a "
        f"{report['engine_batch'] * 3 * h * w * 4 / 2 ** 20:.0f} MiB output batch that leaves the cache.", "",
        "| type | ARNIQA function | ref. images | reference images/s | engine images/s | ratio | lowest-highest "
        "round | best round vs best round | wall-clock ratio | ratio vs reference + collate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['type']} | `{r['arniqa_name']}` | {r['reference_images_per_round']} | "
                     f"{r['reference_images_per_s']:.1f} | {r['engine_images_per_s']:.1f} | **{r['ratio']:.2f}x** | "
                     f"{r['ratio_low']:.2f}-{r['ratio_high']:.2f} | {r['ratio_best_round']:.2f}x | "
                     f"{r['ratio_wall']:.2f}x | {r['ratio_collated']:.2f}x |")
    if report["not_comparable"]:
        lines += ["", "Not comparable:", ""]
        lines += [f"- **{name}**: {why}" for name, why in sorted(report["not_comparable"].items())]
    load = report.get("load_average_1_5_15_min")
    if load:
        lines += ["", f"Load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
                  "(1 / 5 / 15 min); the machine is shared with other jobs, so compare ratios, not images/s."]
    lines += ["", f"Re-run: `python benchmarks/distortions_speed.py --reference ../shared/reference/arniqa "
              f"--reps {report['rounds']}` (needs `pip install kornia`, the reference's own dependency)."]
    return "\n".join(lines) + "\n"
