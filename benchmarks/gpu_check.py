"""One GPU check (``benchmarks/gpu_check.sh``): everything issue 13 wants measured on a GPU, no network.

Parts, each under its own time limit, all in one report
(``reports/benchmarks/gpu_check.json`` and ``.md``):

1. ``tests``: the CUDA-marked tests (``pytest -m cuda``).
2. ``engine``: every distortion type at batch 256 on the GPU (512 x 512, the
   paper profile's window; level 3), images/s and peak memory.
3. ``paper``: the pretraining stage (``stages/pretrain.py --profile``, the way
   DVC runs it) with ``profiles/paper.yaml`` for a few hundred steps on folders
   of KADIS-like JPEGs made on the spot (pristine and "authentic"), with
   ``compile`` off and on: images/s from the run's history, GPU utilisation and
   memory sampled from ``nvidia-smi`` during the run.
4. ``torchrun``: the same stage with ``--nproc 2`` for a few steps, when two GPUs are present.
5. ``protocol``: ``benchmarks/protocol_speed.py`` at scale (8 x 10k x 4096, 100
   alphas) with the ridge path on the GPU.

Without a GPU every row says "not measured: no GPU was available". ``--device cpu
--tiny`` runs the CPU-runnable parts at toy sizes (a small model, a few steps),
which is what the test suite does to keep this script working.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml

from iqabench import io
from iqabench.provenance import stamp, stamp_line

ROOT = Path(__file__).resolve().parents[1]
NOT_MEASURED = "not measured: no GPU was available"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_speed import make_jpegs  # noqa: E402  (one KADIS-like image maker for both benchmarks)


class GpuSampler(threading.Thread):
    """nvidia-smi's utilisation and memory used on every GPU, every half second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.utilisation, self.memory_mib, self.stop = [], [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True)
            if out.returncode == 0:
                rows = [line.split(",") for line in out.stdout.strip().splitlines()]
                self.utilisation.append(statistics.mean(float(r[0]) for r in rows))
                self.memory_mib.append(max(float(r[1]) for r in rows))

    def summary(self) -> dict:
        return {"gpu_utilisation_pct_mean": round(statistics.mean(self.utilisation), 1) if self.utilisation else None,
                "gpu_memory_used_mib_max": max(self.memory_mib) if self.memory_mib else None,
                "samples": len(self.utilisation)}


def run_tests(timeout: int) -> dict:
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout} s"}
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)",
                                                      done.stdout)}
    return {"status": "passed" if done.returncode == 0 else f"failed (exit {done.returncode})", **counts,
            "tail": done.stdout.strip().splitlines()[-3:]}


def run_engine(device: str, batch: int, size: int, types: list[str]) -> dict:
    from iqabench.distortions import DISTORTION_TYPES, distort

    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    rows = []
    for dist in types or DISTORTION_TYPES:
        generator = torch.Generator(device=device).manual_seed(0)
        distort(images[:2], dist, 3, generator)  # warm-up: kernels, codec libraries
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        distort(images, dist, 3, generator)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.startswith("cuda") else None
        rows.append({"type": dist, "images_per_s": batch / seconds, "peak_memory_mib": peak})
    return {"batch": batch, "size": size, "level": 3, "device": device, "results": rows,
            "median_images_per_s": statistics.median(r["images_per_s"] for r in rows)}


def _stage_folder(work: Path, overrides: dict, section: dict) -> Path:
    """A working folder with params.yaml (the repo's pretrain.contrique section) and a profile of overrides."""
    work.mkdir(parents=True, exist_ok=True)
    io.write_text(work / "params.yaml", yaml.safe_dump({"pretrain": {"contrique": section}}))
    profile = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text()) | overrides
    io.write_text(work / "profile.yaml", yaml.safe_dump(profile))
    return work


def run_stage(work: Path, overrides: dict, nproc: int, timeout: int) -> dict:
    """``stages/pretrain.py --profile`` in ``work`` (its params.yaml), as DVC runs it; images/s from its history."""
    section = {k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text())["pretrain"]["contrique"].items()
               if k not in ("profile", "nproc")}
    folder = _stage_folder(work, overrides, section)
    command = [sys.executable, str(ROOT / "stages" / "pretrain.py"), "contrique", "--profile", "profile.yaml",
               "--corpus", "data/corpus", "--out", "encoder.pt", "--history", "encoder_history.csv",
               "--checkpoints", "ckpt", "--nproc", str(nproc)]
    sampler = GpuSampler() if shutil.which("nvidia-smi") else None
    if sampler:
        sampler.start()
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout} s"}
    finally:
        if sampler:
            sampler.stop.set()
    result = {"status": "ok" if done.returncode == 0 else f"failed (exit {done.returncode})",
              "seconds": round(time.perf_counter() - start, 1), "nproc": nproc,
              "steps": overrides["steps"], **(sampler.summary() if sampler else {})}
    timed = folder / "reports" / "timings" / "pretrain-contrique.json"  # the stage's timing.timed, in its cwd
    if done.returncode != 0 or not timed.is_file():
        result["stderr_tail"] = done.stderr.strip().splitlines()[-5:]
        return result
    result["images_per_s"] = json.loads(timed.read_text())["images_per_s"]  # median over log windows, no warm-up
    result["encoder_written"] = (folder / "encoder.pt").is_file()
    return result


def run_protocol(args, work: Path, timeout: int) -> dict:
    sizes = ["--datasets", "2", "--images", "200", "--dim", "32", "--alphas", "5"] if args.tiny else []
    command = [sys.executable, str(ROOT / "benchmarks" / "protocol_speed.py"), "--sklearn-fits", "0",
               "--out", str(work / "protocol"), *sizes]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout} s"}
    if done.returncode != 0:
        return {"status": f"failed (exit {done.returncode})", "stderr_tail": done.stderr.strip().splitlines()[-5:]}
    report = json.loads((work / "protocol.json").read_text())
    return {"status": "ok", **{k: report[k] for k in ("ridge_device", "n_datasets", "n_images", "n_features",
                                                       "n_alphas", "ours_seconds", "eigh_floor")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (with --tiny: a smoke run)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: small model, a few steps")
    parser.add_argument("--steps", type=int, default=300, help="pretraining steps per paper run")
    parser.add_argument("--engine-batch", type=int, default=256)
    parser.add_argument("--budget", type=int, default=470, help="seconds for the whole check (parts left out "
                        "when it runs short)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "benchmarks")
    args = parser.parse_args(argv)
    prov = stamp(None if argv is None else [__file__, *argv])
    gpus = torch.cuda.device_count()
    if args.device.startswith("cuda") and gpus == 0:
        report = {"provenance": prov, "gpu": None, "note": NOT_MEASURED, "parts": {p: NOT_MEASURED for p in PARTS}}
        write(report, args.out_dir)
        print(f"{NOT_MEASURED}: wrote {args.out_dir / 'gpu_check.md'} saying so")
        return 0
    if args.device == "cpu" and not args.tiny:
        parser.error("--device cpu only makes sense with --tiny (the full check is for a GPU)")
    deadline = time.monotonic() + args.budget
    report = {"provenance": prov, "gpu": torch.cuda.get_device_name(0) if gpus else None, "gpus": gpus,
              "device": args.device, "tiny": args.tiny, "parts": {}}
    parts = report["parts"]

    def left(limit: int) -> int | None:
        remaining = int(deadline - time.monotonic())
        return min(limit, remaining) if remaining > 20 else None

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parts["tests"] = run_tests(left(120)) if not args.tiny and left(120) else "left out (tiny run or no time)"
        parts["engine"] = run_engine(args.device, 4 if args.tiny else args.engine_batch, 64 if args.tiny else 512,
                                     ["pixelate", "white_noise", "jpeg"] if args.tiny else [])
        make_jpegs(work / "pristine", 16 if args.tiny else 512)
        make_jpegs(work / "ugc", 16 if args.tiny else 256)
        base = {"source": "folder", "source_dir": str(work / "pristine"), "authentic": str(work / "ugc"),
                "epochs": 0, "steps": 2 if args.tiny else args.steps, "log_every": 1 if args.tiny else 25,
                "checkpoint_every": 10 ** 6, "device": args.device}
        if args.tiny:
            base |= {"arch": "small_cnn", "crop": 48, "region": 96, "batch_size": 4, "authentic_batch_size": 4,
                     "workers": 0, "proj_hidden": 32, "proj_dim": 16}
        for compile_ in ([False] if args.tiny else [False, True]):
            name = f"paper_compile_{'on' if compile_ else 'off'}"
            limit = left(150)
            parts[name] = run_stage(work / name, base | {"compile": compile_}, 1, limit) if limit else "no time left"
        if gpus >= 2:
            limit = left(90)
            parts["torchrun_2_gpus"] = (run_stage(work / "ddp", base | {"steps": 20, "log_every": 5}, 2, limit)
                                        if limit else "no time left")
        else:
            parts["torchrun_2_gpus"] = "not run: needs two GPUs"
        limit = left(150)
        parts["protocol"] = run_protocol(args, work, limit) if limit else "no time left"
    write(report, args.out_dir)
    print(to_markdown(report))
    failed = [name for name, part in parts.items()
              if isinstance(part, dict) and str(part.get("status", "ok")) not in ("ok", "passed")]
    return 1 if failed else 0


PARTS = ("tests", "engine", "paper_compile_off", "paper_compile_on", "torchrun_2_gpus", "protocol")


def write(report: dict, out_dir: Path) -> None:
    io.write_json(out_dir / "gpu_check.json", report)
    io.write_text(out_dir / "gpu_check.md", to_markdown(report))


def to_markdown(report: dict) -> str:
    lines = ["# GPU check (`benchmarks/gpu_check.sh`)", ""]
    if report.get("gpu") is None and report.get("note") == NOT_MEASURED:
        lines += [stamp_line(report["provenance"]).replace("Measured", "Written", 1), "",
                  f"**{NOT_MEASURED}.** This file was written on a machine without one; every row below is "
                  "empty until `benchmarks/gpu_check.sh` runs on a GPU machine (under 8 minutes, no network) "
                  "and this report is committed from there.", "",
                  "| part | result |", "|---|---|"]
        lines += [f"| {name} | {NOT_MEASURED} |" for name in PARTS]
        return "\n".join(lines) + "\n"
    lines += [stamp_line(report["provenance"]), "",
              f"Device: **{report['gpu'] or report['device']}** ({report['gpus']} GPU(s))"
              + (" - a **tiny** CPU smoke run, not a measurement" if report["tiny"] else "") + ".", ""]
    for name, part in report["parts"].items():
        if not isinstance(part, dict):
            lines.append(f"- **{name}**: {part}")
        elif name == "engine":
            lines += [f"- **engine** at batch {part['batch']}, {part['size']} x {part['size']}, level 3 on "
                      f"{part['device']}: median **{part['median_images_per_s']:.0f} images/s**", "",
                      "| type | images/s | peak memory (MiB) |", "|---|---:|---:|"]
            lines += [f"| {r['type']} | {r['images_per_s']:.1f} | "
                      f"{'' if r['peak_memory_mib'] is None else round(r['peak_memory_mib'])} |" for r in part["results"]]
            lines.append("")
        else:
            shown = {k: v for k, v in part.items() if k not in ("tail", "stderr_tail")}
            if isinstance(shown.get("eigh_floor"), dict):
                shown["eigh_floor"] = f"{shown['eigh_floor']['seconds_total']:.3g} s"
            lines.append(f"- **{name}**: " + ", ".join(f"{k} {f'{v:.4g}' if isinstance(v, float) else v}"
                                                      for k, v in shown.items()))
            lines += [f"    - `{line}`" for line in part.get("stderr_tail", []) + part.get("tail", [])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
