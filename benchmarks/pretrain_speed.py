"""Pretraining throughput (images per second) and peak memory.

* CPU: the default profile (params.yaml's ``pretrain`` section) for a short run
  on the embedded corpus (``data/corpus``, or a small one built in a temporary
  folder when it is missing).
* CUDA, only when a GPU is present: the paper profile (``profiles/paper.yaml``:
  ResNet-50, 256 px views, five colour spaces, synthetic distortions applied on
  the fly by DataLoader workers plus authentic images) on one GPU, from the
  KADIS-700k folder when present, else from the embedded photos written as
  PNG files. GPU utilisation is sampled with ``nvidia-smi`` when it exists.

Images per second count every image of a step (synthetic + authentic), each
seen as two views; the first logged interval (warm-up) is left out. Peak memory
is the process's resident high-water mark on the CPU and
``torch.cuda.max_memory_allocated`` on the GPU. Writes
``reports/benchmarks/pretrain_speed.json`` and ``.md`` atomically.

    python benchmarks/pretrain_speed.py [--cpu-steps 20] [--gpu-steps 40] [--gpu-batch 128]
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
import yaml

from iqabench import images, io, params
from iqabench.training import corpus
from iqabench.training.pretrain import PretrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
KNOWN = {f.name for f in dataclasses.fields(PretrainConfig)}


def _config(section: dict, **overrides) -> PretrainConfig:
    return PretrainConfig(**{k: v for k, v in {**section, **overrides}.items() if k in KNOWN})


def _images_per_s(history: list[dict]) -> float:
    rates = [h["images_per_s"] for h in history[1:]] or [h["images_per_s"] for h in history]
    return statistics.median(rates)


def cpu_default(steps: int, work: Path) -> dict:
    section = params.section("pretrain", ROOT / "params.yaml")
    corpus_dir = ROOT / "data" / "corpus"
    if not list(corpus_dir.glob("shard-*.pt")):
        syn = params.section("synthesize", ROOT / "params.yaml")
        corpus_dir = work / "corpus"
        corpus.build(corpus_dir, photos=syn["photos"], crop=syn["crop"], n_images=max(512, 4 * section["batch_size"]),
                     shard_size=256, seed=section.get("seed", 0))
    cfg = _config(section, steps=steps, log_every=max(1, steps // 5), checkpoint_every=10 ** 9, device="cpu")
    _, history = fit(cfg, corpus_dir, None, work / "ckpt-cpu")
    return {"profile": "default (params.yaml)", "device": "cpu", "arch": cfg.arch, "crop": cfg.crop,
            "images_per_step": cfg.images_per_step(), "steps": steps, "torch_threads": torch.get_num_threads(),
            "images_per_s": round(_images_per_s(history), 2),
            "peak_memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


class GpuSampler(threading.Thread):
    """Samples nvidia-smi's utilisation.gpu every half second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stop = [], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  f"--id={torch.cuda.current_device()}"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip().isdigit():
                self.samples.append(int(out.stdout.strip()))


def gpu_paper(steps: int, batch: int, work: Path) -> dict:
    profile = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    kadis = ROOT / "data" / "raw" / "kadis700k"
    if kadis.is_dir():
        source, folder = "kadis700k", str(kadis)
    else:
        from iqabench.datasets.embedded import PHOTOS
        photos = work / "photos"
        for name, load in PHOTOS.items():
            images.save_png(images.from_uint8(load()), photos / f"{name}.png")
        source, folder = "folder", str(photos)
    n_files = len(list(Path(folder).rglob("*.*")))
    cfg = _config(profile, source=source, source_dir=folder, authentic=folder, batch_size=batch,
                  authentic_batch_size=batch, epochs=0, steps=steps, log_every=max(1, steps // 5),
                  checkpoint_every=10 ** 9, device="cuda")
    if n_files < batch:  # few embedded photos: they repeat, so that one step still fits in an epoch
        originals = sorted(Path(folder).glob("*.png"))
        for k in range(-(-batch // n_files)):
            for p in originals:
                shutil.copy(p, Path(folder) / f"copy{k}-{p.name}")
    sampler = GpuSampler() if shutil.which("nvidia-smi") else None
    torch.cuda.reset_peak_memory_stats()
    if sampler:
        sampler.start()
    _, history = fit(cfg, work / "no-corpus", None, work / "ckpt-gpu")
    if sampler:
        sampler.stop.set()
    return {"profile": "paper (profiles/paper.yaml), one GPU", "device": torch.cuda.get_device_name(),
            "arch": cfg.arch, "crop": cfg.crop, "source": source, "images_per_step": cfg.images_per_step(),
            "workers": cfg.workers, "steps": steps, "images_per_s": round(_images_per_s(history), 2),
            "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1),
            "gpu_utilisation_pct": round(statistics.mean(sampler.samples), 1) if sampler and sampler.samples else None}


def to_markdown(report: dict) -> str:
    lines = ["# Pretraining speed", "", f"Machine: {report['machine']}.", "",
             "| profile | device | arch | crop | images / step | images / s | peak memory (MiB) | GPU util. (%) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for run in report["runs"]:
        util = run.get("gpu_utilisation_pct")
        lines.append(f"| {run['profile']} | {run['device']} | {run['arch']} | {run['crop']} | "
                     f"{run['images_per_step']} | {run['images_per_s']} | {run['peak_memory_mib']} | "
                     f"{'' if util is None else util} |")
    if not any(run["device"] != "cpu" for run in report["runs"]):
        lines += ["", "No GPU on this machine: the paper profile was not timed."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="pretraining images/s and peak memory")
    parser.add_argument("--cpu-steps", type=int, default=20)
    parser.add_argument("--gpu-steps", type=int, default=40)
    parser.add_argument("--gpu-batch", type=int, default=128, help="synthetic (and authentic) images per step")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "benchmarks")
    args = parser.parse_args()
    report = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}",
              "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        report["runs"].append(cpu_default(args.cpu_steps, Path(tmp)))
        if torch.cuda.is_available():
            report["runs"].append(gpu_paper(args.gpu_steps, args.gpu_batch, Path(tmp)))
    io.write_json(args.out_dir / "pretrain_speed.json", report)
    io.write_text(args.out_dir / "pretrain_speed.md", to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
