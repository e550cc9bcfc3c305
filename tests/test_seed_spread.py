"""benchmarks/seed_spread.py without running the pipeline: seeds into params, aggregation, the markdown."""
from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from iqabench import gate_noise
from iqabench.io import write_json

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("seed_spread", REPO / "benchmarks" / "seed_spread.py")
seed_spread = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed_spread)

PARAMS = {"seed": 0, "models": ["contrique"],
          "pretrain": {"contrique": {"steps": 600, "seed": None}, "arniqa": {"steps": 300, "seed": None}},
          "evaluate": {"n_splits": 10, "seed": None}}


def metrics(srcc: float, plcc: float = 0.5) -> dict:
    return {"within": {"contrique": {"d": {"srcc": srcc, "plcc": plcc}}},
            "cross": {"contrique": {"d->e": {"srcc": 0.3}}}}


def test_seeds_go_to_pretraining_and_splits_and_the_datasets_stay_fixed():
    out = seed_spread.with_seed(PARAMS, 3, {"pretrain.contrique.steps": 20, "models": ["a"]})
    # Split i is drawn from evaluate.seed + i: the stride keeps two seeds' 10 splits apart.
    seeds = (out["pretrain"]["contrique"]["seed"], out["pretrain"]["arniqa"]["seed"], out["evaluate"]["seed"])
    assert seeds == (3, 3, 3000)
    assert seed_spread.with_seed(PARAMS, 0, {})["evaluate"]["seed"] == 0  # seed 0 is the default run
    assert out["seed"] == 0 and out["pretrain"]["contrique"]["steps"] == 20 and out["models"] == ["a"]
    assert PARAMS["pretrain"]["contrique"]["seed"] is None  # the input is not modified
    # Every encoder of pretrain: gets the seed, also one with no seed key of its own.
    extra = seed_spread.with_seed({**PARAMS, "pretrain": {**PARAMS["pretrain"], "mine": {"steps": 5}}}, 2, {})
    assert extra["pretrain"]["mine"] == {"steps": 5, "seed": 2}
    with pytest.raises(SystemExit, match="section 'pretrain.contrique' has no key 'step'.*steps"):
        seed_spread.with_seed(PARAMS, 1, {"pretrain.contrique.step": 20})
    with pytest.raises(SystemExit, match="no section 'pretrain.contriqe'.*arniqa"):
        seed_spread.with_seed(PARAMS, 1, {"pretrain.contriqe.steps": 20})
    with pytest.raises(SystemExit, match="no section 'pretrian'"):
        seed_spread.with_seed(PARAMS, 1, {"pretrian.steps": 20})
    with pytest.raises(SystemExit, match="no top-level key 'model'"):
        seed_spread.with_seed(PARAMS, 1, {"model": ["a"]})
    assert seed_spread.parse_overrides(["pretrain.contrique.steps=20", "models=[a, b]"]) == {
        "pretrain.contrique.steps": 20, "models": ["a", "b"]}
    with pytest.raises(SystemExit, match="section.key=value"):
        seed_spread.parse_overrides(["pretrain.steps"])


def test_aggregate_gives_mean_sample_std_range_and_each_seed():
    frame = seed_spread.aggregate({0: metrics(0.4), 1: metrics(0.5), 2: metrics(0.6, plcc=float("nan"))})
    row = frame.set_index("metric").loc["within.contrique.d.srcc"]
    assert (row["mean"], row["min"], row["max"], row["n_seeds"]) == (pytest.approx(0.5), 0.4, 0.6, 3)
    assert row["std"] == pytest.approx(0.1)  # ddof 1: sqrt((0.01 + 0 + 0.01) / 2)
    assert (row["seed_0"], row["seed_2"]) == (0.4, 0.6)
    plcc = frame.set_index("metric").loc["within.contrique.d.plcc"]
    assert plcc["n_seeds"] == 2 and plcc["std"] == 0.0 and math.isnan(plcc["seed_2"])  # undefined: not counted
    assert set(frame["metric"]) == {"within.contrique.d.srcc", "within.contrique.d.plcc", "cross.contrique.d->e.srcc"}
    with pytest.raises(ValueError, match="no seed"):
        seed_spread.aggregate({})


def test_what_it_writes_is_what_the_gate_reads(tmp_path):
    frame = seed_spread.aggregate({0: metrics(0.40), 1: metrics(0.46), 2: metrics(0.43)})
    frame.to_csv(tmp_path / "variance.csv", index=False)
    assert gate_noise.seed_std_from(tmp_path / "variance.csv")["within.contrique.d.srcc"] == pytest.approx(0.03)
    prov = {"commit": "abc", "dirty": True, "machine": "x86_64, 2 cores", "python": "3.11.7", "torch": "2.5.0",
            "torch_threads": 2, "command": "python benchmarks/seed_spread.py", "params_sha256": "f00",
            "overrides": {}, "seeds": [0, 1, 2], "top_level_seed": 0,
            "seconds_total": 90.0, "seconds_per_seed": {0: 30.0, 1: 30.0, 2: 30.0}}
    std = dict(zip(frame["metric"], frame["std"]))
    text = seed_spread.markdown(frame, prov, 3, gate_noise.training_noise(std, metrics(0.4)))
    assert "| within.contrique.d.srcc | 0.4300 | 0.0300 | 0.4000 | 0.4600 | 3 |" in text
    assert "3 seeds (0, 1, 2)" in text and "commit: `abc` (+dirty)" in text
    assert text.splitlines()[2] == ("Measured at commit `abc` (+dirty) on x86_64, 2 cores, Python 3.11.7, torch 2.5.0 "
                                    "(threads: 2), command `python benchmarks/seed_spread.py`.")
    assert "up to 0.090 (`within.contrique.d.srcc`)" in text  # contrique reads a pretrained encoder
    with_brisque = metrics(0.4)
    with_brisque["within"]["brisque"] = {"d": {"srcc": 0.5}}  # no training: its spread is no slack of the gate
    assert gate_noise.training_noise({"within.brisque.d.srcc": 0.2, **std}, with_brisque) == std
    assert "plcc |" not in text  # SRCC rows only; the rest is in the CSV


def test_run_seeds_collects_each_seeds_metrics_and_stops_at_a_failure(tmp_path):
    def fake_repro(work, env):  # stands in for `dvc repro evaluate`: the result depends on the seeds set
        params = yaml.safe_load((work / "params.yaml").read_text())
        assert params["seed"] == 0 and params["pretrain"]["contrique"]["steps"] == 20
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(work / "src")  # the copy's code, not the checkout's
        seed = params["pretrain"]["arniqa"]["seed"]
        if seed == 13:
            raise RuntimeError("extract failed")
        write_json(work / "reports" / "metrics.json", metrics(0.4 + 0.01 * seed))

    per_seed, seconds = seed_spread.run_seeds(tmp_path, PARAMS, [0, 2], {"pretrain.contrique.steps": 20},
                                          repro=fake_repro)
    assert per_seed[2]["within"]["contrique"]["d"]["srcc"] == pytest.approx(0.42) and set(seconds) == {0, 2}
    with pytest.raises(SystemExit, match="seed 13: extract failed"):
        seed_spread.run_seeds(tmp_path, PARAMS, [0, 13], {"pretrain.contrique.steps": 20}, repro=fake_repro)


def test_the_command_refuses_too_few_seeds_and_bad_overrides_before_running(monkeypatch):
    monkeypatch.setattr(seed_spread, "copy_repo", lambda dest: pytest.fail("ran despite bad input"))
    with pytest.raises(SystemExit, match="at least 2 distinct seeds"):
        seed_spread.main(["--seeds", "0"])
    with pytest.raises(SystemExit, match="no key"):
        seed_spread.main(["--seeds", "0", "1", "--set", "evaluate.nsplits=3"])


def test_the_repository_has_the_seed_keys_and_the_gate_factor():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    keys = seed_spread.seed_keys(params)
    assert {"pretrain.contrique.seed", "pretrain.arniqa.seed", "evaluate.seed"} <= set(keys)
    for dotted in keys:
        body = params
        for part in dotted.split(".")[:-1]:
            body = body[part]
        assert "seed" in body and body["seed"] is None  # null = the top-level seed
    assert params["evaluate"]["n_splits"] < seed_spread.SPLIT_STRIDE
    # The smoke settings name real keys of the repository's params.
    seed_spread.with_seed(params, 1, seed_spread.TINY)
    assert params["check"]["seed_factor"] > 0
    assert isinstance(json.loads((REPO / "reports" / "baseline.json").read_text())["accepted"], list)
    assert pd.notna(params["seed"])
