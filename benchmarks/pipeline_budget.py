"""The default pipeline's budgets, measured in a temporary copy of the repository.

    python benchmarks/pipeline_budget.py   ->  reports/benchmarks/pipeline_budget.{json,md}
    python benchmarks/pipeline_budget.py --render   (the .md again from the .json, nothing measured)

1. `dvc repro` from an empty cache (budget: 10 minutes on the 2-core CPU);
2. `dvc repro` again with nothing changed (budget: 10 s, and no stage runs);
3. an `evaluate` parameter changed: only the stages downstream of it re-run
   (`evaluate`; `mixed` and `finetune`, which share its splits; `report`).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from iqabench import io  # noqa: E402
from iqabench.provenance import stamp, stamp_line  # noqa: E402
from seed_spread import copy_env, copy_repo  # noqa: E402  (benchmarks/ is the script's own folder on sys.path)

BIN = Path(sys.executable).parent
OUT = REPO / "reports/benchmarks/pipeline_budget"


def repro(work: Path, env: dict) -> tuple[float, list[str]]:
    tic = time.perf_counter()
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if proc.returncode:
        raise SystemExit(f"dvc repro failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds, re.findall(r"Running stage '([^']+)'", proc.stdout)


def main() -> None:
    prov = stamp()  # what is copied and measured; the tree may move on during the ten minutes
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "repo"
        copy_repo(work, results=True)  # the report stage reads reports/variance.csv
        env = copy_env(work, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}")
        cold, cold_stages = repro(work, env)
        noop, noop_stages = repro(work, env)
        params = yaml.safe_load((work / "params.yaml").read_text())
        params["evaluate"]["n_splits"] += 1
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        changed, changed_stages = repro(work, env)
    result = {
        "provenance": prov,
        "cold_repro_s": round(cold, 1), "cold_stages": cold_stages, "cold_budget_s": 600,
        "noop_repro_s": round(noop, 1), "noop_stages": noop_stages, "noop_budget_s": 10,
        "evaluate_change_s": round(changed, 1), "evaluate_change_stages": changed_stages,
    }
    io.write_json(OUT.with_suffix(".json"), result)
    write_markdown(result)


def always_run() -> set[str]:
    """Stages dvc.yaml marks `always_changed` (fingerprint: it lists files outside DVC's view): they run on every
    `dvc repro` by design and are not counted as work a change caused."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name for name, body in stages.items() if body.get("always_changed")}


def write_markdown(result: dict) -> None:
    ignored = always_run()
    noop = [s for s in result["noop_stages"] if s not in ignored]
    changed = [s for s in result["evaluate_change_stages"] if s not in ignored]
    ok = (result["cold_repro_s"] <= result["cold_budget_s"], result["noop_repro_s"] <= result["noop_budget_s"] and not noop,
          set(changed) == {"evaluate", "mixed", "finetune", "report"})
    md = "\n".join([
        "# Pipeline budgets (default params, empty cache, temporary copy)", "",
        stamp_line(result["provenance"]), "",
        "| run | seconds | budget | stages run | within budget |", "|---|---:|---:|---|---|",
        f"| `dvc repro`, empty cache | {result['cold_repro_s']:.1f} | {result['cold_budget_s']} | "
        f"{len(result['cold_stages'])} | {'yes' if ok[0] else 'NO'} |",
        f"| `dvc repro`, nothing changed | {result['noop_repro_s']:.1f} | {result['noop_budget_s']} | "
        f"{', '.join(noop) or 'none'} | {'yes' if ok[1] else 'NO'} |",
        f"| `evaluate.n_splits` changed | {result['evaluate_change_s']:.1f} | - | {', '.join(changed)} | "
        f"{'yes' if ok[2] else 'NO'} |", "",
        f"Not counted: {', '.join(sorted(ignored)) or 'none'} (`always_changed` in dvc.yaml, runs on every "
        "`dvc repro` by design, ~1 s). The empty-cache run re-runs no stage whose outputs are in git and whose "
        "inputs come out identical (finetune, mixed, report).", ""])
    io.write_text(OUT.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render", action="store_true",
                        help="write the .md again from the measured .json (after a change to its wording)")
    if parser.parse_args().render:
        write_markdown(json.loads(OUT.with_suffix(".json").read_text()))
    else:
        main()
