"""Seed spread: the default pipeline over several seeds of pretraining and splits, the datasets fixed.

    python benchmarks/seed_spread.py                        # seeds 0-4, params.yaml as committed
    python benchmarks/seed_spread.py --seeds 0 1 2 3 4 5 6 7
    python benchmarks/seed_spread.py --tiny --seeds 0 1 --out /tmp/spread   # a minutes-long smoke run
    python benchmarks/seed_spread.py --set pretrain.contrique.steps=300 --set 'models=[contrique,arniqa,random]'

    ->  reports/variance.csv   one row per metric of reports/metrics.json: mean, std, min, max, n_seeds,
                               and the value at each seed (columns seed_<s>)
        reports/variance.md    the SRCC rows, the largest spreads, and the provenance (commit, params,
                               seeds, machine, wall time)

For each seed s, in one temporary copy of the repository (its tracked and
untracked-but-not-ignored files, without reports/ and dvc.lock, as
tests/test_pipeline_e2e.py copies it), params.yaml gets ``pretrain.NAME.seed`` =
s for every encoder NAME in ``pretrain:`` and ``evaluate.seed`` = 1000 s, and `dvc repro
evaluate` runs; its reports/metrics.json is that seed's result. (Split i is drawn
from ``evaluate.seed + i``, so seeds 0 and 1 would share 9 of 10 splits; a stride
of 1000 keeps every seed's splits distinct, and seed 0 keeps the default's.) The top-level ``seed`` is left
alone, so the embedded datasets and the distortion corpus are built once and are
the same for every seed: the spread is that of pretraining and of the split draw,
which is what differs between two honest runs of the same code (and what a
600-step CPU pretraining on another machine differs by). ``std`` is the sample
standard deviation (ddof = 1) over seeds.

`iqabench check` reads reports/variance.csv: each metric may drop by
``check.seed_factor`` x its std when that exceeds its sampling error, and the
report checks each verdict between two rows against the same spread. Re-measure
when pretraining or the protocol changes, then `dvc repro` (the report stage reads
reports/variance.csv for its seed-std columns) and commit both files with dvc.lock. The default's
5 seeds take about 5 x (pretrain@contrique + pretrain@arniqa + extract + evaluate) plus one
prepare/synthesize, roughly half an hour on 2 CPU cores; ``--workdir`` keeps the
copy (and its DVC cache) so an interrupted measurement resumes.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from iqabench import io  # noqa: E402
from iqabench.gate_noise import training_noise  # noqa: E402
from iqabench.provenance import stamp, stamp_line  # noqa: E402

BIN = Path(sys.executable).parent
# Split i is drawn from evaluate.seed + i, so the split seed needs a stride above n_splits or neighbouring seeds
# would share most of their splits; each encoder's pretraining seed is s itself.
SPLIT_STRIDE = 1000
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
# The smallest settings that still run every stage up to `evaluate` (a smoke run, not a measurement).
TINY = {
    "prepare.patch_size": 96, "prepare.max_patches_per_photo": 6, "prepare.versions_per_patch": 6,
    "synthesize.n_images": 512, "synthesize.shard_size": 256,
    "pretrain.contrique.steps": 20, "pretrain.contrique.batch_size": 64, "pretrain.contrique.checkpoint_every": 20,
    "pretrain.arniqa.steps": 10, "pretrain.arniqa.batch_size": 8, "pretrain.arniqa.checkpoint_every": 10,
    "evaluate.n_splits": 3, "models": ["contrique", "arniqa", "random"],
}


# ----------------------------------------------------------------------------- pure parts

def flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    """{"within.contrique.synthetic-single.srcc": 0.44, ...}: the gate's metric names."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["evaluate.n_splits=5", "models=[a,b]"]`` -> ``{"evaluate.n_splits": 5, "models": ["a", "b"]}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set {item!r}: expected section.key=value (e.g. pretrain.contrique.steps=300)")
        out[key.strip()] = yaml.safe_load(value)
    return out


def seed_keys(params: dict) -> dict[str, int]:
    """Dotted seed key -> stride (the value set for seed s is stride * s): every encoder's pretraining seed,
    and the split seed."""
    encoders = params.get("pretrain") or {}
    return {**{f"pretrain.{name}.seed": 1 for name in encoders}, "evaluate.seed": SPLIT_STRIDE}


def with_seed(params: dict, seed: int, overrides: dict[str, Any]) -> dict:
    """A copy of ``params`` with the overrides applied and every seed key of :func:`seed_keys` set from ``seed``."""
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        _set(out, dotted, value)
    for dotted, stride in seed_keys(out).items():
        _set(out, dotted, stride * seed)
    return out


def _set(params: dict, dotted: str, value: Any) -> None:
    """Set ``section.key`` (or ``section.entry.key``: ``pretrain.contrique.steps``), refusing unknown names."""
    *path, key = dotted.split(".")
    body, where = params, []
    for part in path:
        if not isinstance(body.get(part), dict):
            known = sorted(k for k, v in body.items() if isinstance(v, dict))
            raise SystemExit(f"override {dotted!r}: params.yaml has no section '{'.'.join([*where, part])}' "
                             f"(known: {known})")
        body, where = body[part], [*where, part]
    if key not in body and key != "seed":
        what = f"section '{'.'.join(where)}' has no key" if where else "has no top-level key"
        raise SystemExit(f"override {dotted!r}: params.yaml {what} '{key}' (known: {sorted(body)})")
    body[key] = value


def aggregate(per_seed: dict[int, dict]) -> pd.DataFrame:
    """One row per metric: mean, std (ddof 1), min, max over the seeds where it is finite, and each value."""
    if not per_seed:
        raise ValueError("no seed finished: nothing to aggregate")
    flat = {seed: flatten(metrics) for seed, metrics in per_seed.items()}
    names = sorted(set().union(*flat.values()))
    rows = []
    for name in names:
        values = {seed: flat[seed].get(name, math.nan) for seed in per_seed}
        series = pd.Series(values, dtype=float).dropna()
        rows.append({"metric": name, "mean": series.mean(), "std": series.std(ddof=1), "min": series.min(),
                     "max": series.max(), "n_seeds": int(series.size),
                     **{f"seed_{seed}": value for seed, value in values.items()}})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, prov: dict, seed_factor: float | None = None,
             gated_std: dict[str, float] | None = None) -> str:
    """variance.md; ``gated_std`` is the part of the spread the gate uses (:func:`iqabench.gate_noise.training_noise`)."""
    srcc = frame[frame["metric"].str.endswith(".srcc")].sort_values("std", ascending=False)
    seeds = ", ".join(str(s) for s in prov["seeds"])
    lines = [
        "# Seed spread of the pipeline", "", stamp_line(prov), "",
        f"{len(prov['seeds'])} seeds ({seeds}) of pretraining (`pretrain.NAME.seed` = s for every encoder) and "
        f"splits (`evaluate.seed` = 1000 s, so no two seeds share a split); the datasets and the distortion corpus are built once at the top-level seed "
        f"{prov['top_level_seed']} and are the same for every seed. std = sample standard deviation over seeds "
        "(ddof 1). All metrics, with the value at each seed: `reports/variance.csv`.", "",
    ]
    if len(srcc):
        top = srcc.iloc[0]
        lines.append(f"Largest SRCC spread: `{top['metric']}`, std {top['std']:.3f} (range {top['min']:.3f} to "
                     f"{top['max']:.3f}); median SRCC std over all rows and pairs {srcc['std'].median():.3f}.")
        gated = {m: v for m, v in (gated_std or {}).items() if m.endswith(".srcc")}
        if seed_factor is not None and gated:
            widest = max(gated, key=gated.get)
            lines.append(f"The gate (`iqabench check`) lets each SRCC of a row that reads a pretrained encoder drop "
                         f"by the larger of its sampling error and `check.seed_factor` = {seed_factor:g} x its std, "
                         f"here up to {seed_factor * gated[widest]:.3f} (`{widest}`); a row without training keeps "
                         "its sampling rule, since a same-seed re-run draws the same splits and computes the same "
                         "features.")
        lines.append("")
    lines += ["| metric (SRCC) | mean | std | min | max | seeds |", "|---|---:|---:|---:|---:|---:|"]
    for r in srcc.sort_values("metric").to_dict("records"):
        lines.append(f"| {r['metric']} | {r['mean']:.4f} | {r['std']:.4f} | {r['min']:.4f} | {r['max']:.4f} | "
                     f"{r['n_seeds']} |")
    lines += ["", "## Provenance", "",
              f"- commit: `{prov['commit']}`{' (+dirty)' if prov['dirty'] else ''}",
              f"- params.yaml sha256: `{prov['params_sha256']}`; overrides: "
              f"{json.dumps(prov['overrides']) if prov['overrides'] else 'none'}",
              f"- wall time: {prov['seconds_total']:.0f} s (" +
              ", ".join(f"seed {s}: {t:.0f} s" for s, t in prov["seconds_per_seed"].items()) + ")", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- running the pipeline

def copy_repo(dest: Path, *, results: bool = False) -> None:
    """This checkout's files (tracked, and untracked but not ignored) as a fresh git repository at ``dest``;
    without ``results``, not reports/ nor dvc.lock (each seed writes its own). Also pipeline_budget.py's."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file() and (results or not (rel.startswith("reports/") or rel == "dvc.lock")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=s", "-c", "user.email=s@s", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)


def copy_env(work: Path, **extra: str) -> dict:
    """The environment a run in the copy ``work`` gets: this venv's tools, and the copy's own src/ first (the
    venv's editable install points at this checkout, whose code may change during a long measurement, and
    the report names the commit the copy was made from)."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(work / "src"), os.environ.get("PYTHONPATH")])), **extra}


def dvc_repro(work: Path, env: dict) -> None:
    proc = subprocess.run([str(BIN / "dvc"), "repro", "evaluate"], cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"`dvc repro evaluate` failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")


def run_seeds(work: Path, base: dict, seeds: list[int], overrides: dict, *,
              repro: Callable[[Path, dict], None] = dvc_repro) -> tuple[dict[int, dict], dict[int, float]]:
    """reports/metrics.json of each seed, and its wall time; stops at the first seed that fails.

    A failed seed is not dropped: a spread over the seeds that happened to work would be biased.
    """
    env = copy_env(work)
    per_seed, seconds = {}, {}
    for seed in seeds:
        io.write_text(work / "params.yaml", yaml.safe_dump(with_seed(base, seed, overrides), sort_keys=False))
        tic = time.perf_counter()
        try:
            repro(work, env)
        except RuntimeError as exc:
            raise SystemExit(f"seed {seed}: {exc}\nNothing was written; rerun with --workdir DIR to keep the copy "
                             "and resume from its DVC cache.") from None
        seconds[seed] = time.perf_counter() - tic
        per_seed[seed] = json.loads((work / "reports" / "metrics.json").read_text())
        print(f"seed {seed}: {seconds[seed]:.0f} s", flush=True)
    return per_seed, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS), help="at least 2 seeds")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="params override for every seed, e.g. pretrain.contrique.steps=300 (repeatable)")
    parser.add_argument("--tiny", action="store_true", help="smoke-test settings (not a measurement)")
    parser.add_argument("--out", type=Path, default=REPO / "reports", help="folder for variance.{csv,md}")
    parser.add_argument("--workdir", type=Path, help="keep the repository copy here (reused if it exists)")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) < 2 or len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds {args.seeds}: need at least 2 distinct seeds for a spread (5 or more to trust it)")
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    overrides = {**(TINY if args.tiny else {}), **parse_overrides(args.overrides)}
    for seed in args.seeds:  # every override is checked before anything runs
        with_seed(base, seed, overrides)
    tic = time.perf_counter()
    # What ran, taken before it runs: the repository may move on during a half-hour measurement.
    prov = stamp(None if argv is None else [__file__, *argv])
    params_sha = hashlib.sha256((REPO / "params.yaml").read_bytes()).hexdigest()[:16]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp) / "repo"
        if not (work / "params.yaml").is_file():
            copy_repo(work)
        else:
            print(f"reusing the copy in {work} (its code may be older than the repository's)", flush=True)
        per_seed, seconds = run_seeds(work, base, args.seeds, overrides)
    frame = aggregate(per_seed)
    prov |= {"params_sha256": params_sha, "overrides": overrides, "seeds": args.seeds,
             "top_level_seed": base.get("seed"), "seconds_total": time.perf_counter() - tic,
             "seconds_per_seed": seconds}
    io.write_csv(args.out / "variance.csv", frame.round(6))
    gated_std = training_noise(dict(zip(frame["metric"], frame["std"])), next(iter(per_seed.values())))
    io.write_text(args.out / "variance.md", markdown(frame, prov, (base.get("check") or {}).get("seed_factor"),
                                                      gated_std))
    print((args.out / "variance.md").read_text())
    print("Next: `dvc repro` (the report stage reads variance.csv), then commit reports/variance.* with dvc.lock.")


if __name__ == "__main__":
    main()
