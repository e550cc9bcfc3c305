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


def compare(root: str | Path, image, batch: int, reference_images: int, rounds: int, types: list[str],
            level: int = 3) -> dict:
    """Time the engine at ``batch`` against the reference applied per image, interleaved, per type.

    Each round times ``reference_images`` per-image calls (inputs cloned before
    the clock starts, since several reference functions write into their input,
    as the first of ``batch`` clones so that they are as cold in the cache as
    the engine's batch;
    each output goes through ``.to(float32)`` and ``clip(0, 1)`` as ARNIQA's
    ``distort_images`` does) and then one engine call on the batch. The minimum
    over rounds of each side's process CPU time (user + system, so page faults
    count) gives images/s; wall time is kept beside it. A type whose reference
    raises is listed as not comparable with the error.
    """
    import statistics
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
            reference([image.clone()])
        except Exception as exc:  # noqa: BLE001 - the reference's own bug, reported per type
            skipped[ours] = f"reference raises {type(exc).__name__}: {str(exc)[:120]}"
            continue
        generator = torch.Generator().manual_seed(0)
        distort(engine_batch[:2], ours, level, generator)  # warm-up
        timings = {"reference": [], "collated": [], "engine": []}
        for _ in range(rounds):
            for side, collate in (("reference", False), ("collated", True)):
                # A working set as large as the engine's batch, timed on its oldest images: like the
                # engine's input batch (72 MiB), they are out of the cache, as freshly decoded images are.
                inputs = [image.clone() for _ in range(batch)][:reference_images]
                cpu, wall = time.process_time(), time.perf_counter()
                reference(inputs, collate)
                timings[side].append(((time.process_time() - cpu) / reference_images,
                                      (time.perf_counter() - wall) / reference_images))
            cpu, wall = time.process_time(), time.perf_counter()
            distort(engine_batch, ours, level, generator)
            timings["engine"].append(((time.process_time() - cpu) / batch, (time.perf_counter() - wall) / batch))
        best = {side: (min(t[0] for t in ts), min(t[1] for t in ts)) for side, ts in timings.items()}
        rows.append({"type": ours, "arniqa_name": theirs, "level_value": value,
                     "reference_images_per_s": 1 / best["reference"][0], "engine_images_per_s": 1 / best["engine"][0],
                     "reference_images_per_s_wall": 1 / best["reference"][1],
                     "engine_images_per_s_wall": 1 / best["engine"][1],
                     "collated_images_per_s": 1 / best["collated"][0],
                     "ratio": best["reference"][0] / best["engine"][0],
                     "ratio_collated": best["collated"][0] / best["engine"][0],
                     "ratio_wall": best["reference"][1] / best["engine"][1]})
    ratios = [row["ratio"] for row in rows]
    return {"image_size": list(image.shape[-2:]), "level": level, "engine_batch": batch,
            "reference_images_per_round": reference_images, "rounds": rounds,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "reference": "miccunifi/ARNIQA f60c0f2, utils/distortions.py (per image)",
            "comparable_types": len(rows), "median_ratio": statistics.median(ratios) if ratios else None,
            "median_ratio_collated": statistics.median(r["ratio_collated"] for r in rows) if rows else None,
            "min_ratio_collated": min(r["ratio_collated"] for r in rows) if rows else None,
            "min_ratio": min(ratios) if ratios else None, "results": rows, "not_comparable": skipped}


def to_markdown(report: dict) -> str:
    rows = sorted(report["results"], key=lambda r: r["ratio"])
    h, w = report["image_size"]
    lines = [
        "# The engine against ARNIQA's per-image distortions", "",
        f"One process, {report['torch_threads']} torch thread(s), torch {report['torch']}; 3 x {h} x {w} images at "
        f"level {report['level']}. The engine distorts a batch of {report['engine_batch']} in one call; the reference "
        f"({report['reference']}) is called once per image, {report['reference_images_per_round']} images per round "
        f"(the oldest of {report['engine_batch']} fresh copies, so its inputs are as far out of the cache as the "
        "engine's batch), "
        f"each output cast to float32 and clipped as ARNIQA's `distort_images` does. {report['rounds']} interleaved "
        "rounds; each side's best round. Images/s are per second of process CPU time (user + system: page faults "
        "count, time other jobs take the core does not); the wall-clock ratio is beside it.", "",
        f"**{report['comparable_types']} comparable types. Median ratio (engine / reference): "
        f"{report['median_ratio']:.2f}x; slowest type: {report['min_ratio']:.2f}x.** Against the reference whose "
        f"outputs are then stacked into a batch (what a DataLoader's collate does, and what the engine returns): "
        f"median {report['median_ratio_collated']:.2f}x, slowest {report['min_ratio_collated']:.2f}x.", "",
        "What a per-image loop does not pay and the engine does: each result is written into a fresh "
        "72 MiB output batch (its pages faulted in on first touch, 2 MiB at a time where the kernel allows "
        "huge pages), and the [0, 1] check reads every chunk once more. On the cheapest types (pixelate, colour "
        "blocks, patches: about 1 ms per image in the reference) that is most of the margin, and on a machine "
        "shared with other jobs the ratio of such a type moves by +/- 0.2 from one run to the next.", "",
        "| type | ARNIQA function | reference images/s | engine images/s | ratio | wall-clock ratio | "
        "ratio vs reference + collate |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['type']} | `{r['arniqa_name']}` | {r['reference_images_per_s']:.1f} | "
                     f"{r['engine_images_per_s']:.1f} | {r['ratio']:.2f}x | {r['ratio_wall']:.2f}x | "
                     f"{r['ratio_collated']:.2f}x |")
    if report["not_comparable"]:
        lines += ["", "Not comparable:", ""]
        lines += [f"- **{name}**: {why}" for name, why in sorted(report["not_comparable"].items())]
    lines += ["", "Re-run: `python benchmarks/distortions_speed.py --reference ../shared/reference/arniqa` "
              "(needs `pip install kornia`, the reference's own dependency)."]
    return "\n".join(lines) + "\n"
