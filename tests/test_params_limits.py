"""Hostile params.yaml values that passed validation and then crashed, hung or allocated gigabytes inside a stage
after DVC had deleted its outputs: each now stops params validation with one line naming key, value and range."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console

from iqabench import gate, gate_inputs, params, params_schema
from iqabench.datasets import embedded
from iqabench.io import write_json
from params_variant import variant
from stage_cmd import args as dvc_args

REPO = Path(__file__).resolve().parents[1]
HUGE_SEED = 99999999999999999999


def _validate(tmp_path, monkeypatch, edits: dict, stage=None) -> dict:
    monkeypatch.chdir(tmp_path)  # data/raw and data/registry.json are read relative to the repository
    return params.validate(variant(edits), stage=stage)


def _error(tmp_path, monkeypatch, edits: dict, stage=None) -> str:
    with pytest.raises(params.ParamsError) as info:
        _validate(tmp_path, monkeypatch, edits, stage)
    message = str(info.value)
    assert "\n" not in message and message.startswith("params.yaml: ")
    return message


def _refused_above_and_allowed_at_the_bound(tmp_path, monkeypatch, key: str, value, allowed: str) -> None:
    """``key = value`` stops validation naming the integer range ``allowed`` ("[lo, hi]"); hi itself passes."""
    assert f"{key} = {value} is not allowed; it must be an integer in {allowed}" in _error(
        tmp_path, monkeypatch, {key: value})
    # A corpus that holds the largest batch (the relation between the two is checked on its own).
    assert _validate(tmp_path, monkeypatch, {key: int(allowed.strip("[]").split(", ")[1]),
                                             "synthesize.n_images": 10**6, "synthesize.shard_size": 10**6})


# --- seeds ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, null_ok", [("seed", False), ("evaluate.seed", True), ("pretrain.contrique.seed", True),
                                          ("pretrain.arniqa.seed", True)])
def test_every_seed_stops_above_2_31(tmp_path, monkeypatch, key, null_ok):
    message = _error(tmp_path, monkeypatch, {key: HUGE_SEED})
    assert f"{key} = {HUGE_SEED} is not allowed; it must be an integer in [0, 2147483647]" + (
        " or null" if null_ok else "") in message
    assert _validate(tmp_path, monkeypatch, {key: 2**31 - 1})


def test_the_largest_seed_fits_every_generator_it_feeds():
    """The bound is what the code can take: a larger top-level seed overflowed prepare's generator."""
    top = params_schema.MAX_SEED
    embedded._generator(top, "synthetic-mixed")                      # seed * 1_000_003 + crc32 in an int64
    np.random.seed(top + params_schema.MAX_SPLITS)                   # split seeds seed + i, numpy's < 2**32
    torch.Generator().manual_seed(top * 31 + 7)                      # pretrain's seed * 31 + rank
    with pytest.raises((ValueError, RuntimeError, OverflowError)):  # what the audit hit without the bound
        embedded._generator(HUGE_SEED, "synthetic-single")


def test_the_fingerprint_stage_stops_on_a_huge_seed_before_writing(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(variant({"seed": HUGE_SEED})))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fingerprint.py", *dvc_args("fingerprint")])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "stages/fingerprint.py"), run_name="__main__")
    assert str(stop.value.code) == (f"error: params.yaml: seed = {HUGE_SEED} is not allowed; it must be an integer "
                                    "in [0, 2147483647]")
    assert not (tmp_path / "data").exists()


# --- split and step counts --------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, allowed", [
    ("evaluate.n_splits", 10**9, "[1, 1000]"),
    ("finetune.n_splits", 1001, "[1, 1000]"),
    ("finetune.steps", 10**9, "[1, 1000000]"),
    ("mixed.steps", 10**9, "[1, 1000000]"),
    ("pretrain.contrique.steps", 10**7, "[1, 1000000]"),
    ("pretrain.arniqa.epochs", 10**6, "[0, 10000]"),
])
def test_split_and_step_counts_have_an_upper_bound(tmp_path, monkeypatch, key, value, allowed):
    assert f"{key} = {value} is not allowed; it must be an integer in {allowed}" in _error(
        tmp_path, monkeypatch, {key: value})


def test_finetune_cannot_run_more_splits_than_evaluate_compares_with(tmp_path, monkeypatch):
    """stages/finetune.py reports evaluate's frozen ridge over splits < finetune.n_splits beside its own median:
    with more fine-tuning splits than evaluate draws, the two medians would cover different splits."""
    message = _error(tmp_path, monkeypatch, {"evaluate.n_splits": 10, "finetune.n_splits": 12})
    assert "finetune.n_splits = 12 is above evaluate.n_splits = 10" in message
    assert "lower finetune.n_splits or raise evaluate.n_splits" in message
    assert _validate(tmp_path, monkeypatch, {"evaluate.n_splits": 10, "finetune.n_splits": 10})
    # Without the key finetune runs FinetuneConfig's 3 splits, which evaluate must draw too.
    cfg = variant({"evaluate.n_splits": 2})
    del cfg["finetune"]["n_splits"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(params.ParamsError, match=r"finetune.n_splits = 3 is above evaluate.n_splits = 2"):
        params.validate(cfg)


def test_a_finetune_seed_is_refused_because_the_splits_are_evaluates(tmp_path, monkeypatch):
    # stages/finetune.py replaced finetune.seed with evaluate.seed without a word: a set seed changed nothing.
    message = _error(tmp_path, monkeypatch, {"finetune.seed": 5})
    assert "finetune.seed = 5 is not read" in message and "evaluate.seed" in message


# --- batch sizes, widths, workers ---------------------------------------------------------------------

@pytest.mark.parametrize("key, value, allowed", [
    ("extract.batch_size", 10**12, "[1, 65536]"),
    ("finetune.batch_size", 65537, "[1, 65536]"),
    ("pretrain.contrique.batch_size", 10**12, "[1, 65536]"),
    ("pretrain.contrique.authentic_batch_size", 10**12, "[0, 65536]"),
    ("pretrain.contrique.lr_base_batch", 10**12, "[0, 65536]"),
    ("pretrain.arniqa.width", 160000, "[1, 1024]"),
    ("pretrain.contrique.proj_hidden", 10**9, "[1, 16384]"),
    ("pretrain.arniqa.proj_dim", 10**9, "[1, 16384]"),
    ("mixed.hidden", 10**9, "[1, 16384]"),
    ("pretrain.arniqa.workers", 10**12, "[0, 256]"),
    ("pretrain.contrique.nproc", 1000, "[1, 256]"),
])
def test_batch_sizes_widths_and_workers_have_an_upper_bound(tmp_path, monkeypatch, key, value, allowed):
    """A slipped digit (1e12 for 128) stops validation instead of an allocation or a fork storm inside the stage."""
    _refused_above_and_allowed_at_the_bound(tmp_path, monkeypatch, key, value, allowed)


@pytest.mark.parametrize("key, value, allowed", [
    ("synthesize.n_images", 10**12, "[1, 1000000]"),
    ("synthesize.shard_size", 10**12, "[1, 1000000]"),
    ("niqe.kadis_sample", 10**9, "[1, 1000000]"),
    ("prepare.max_patches_per_photo", 10**9, "[1, 10000]"),
    ("pretrain.contrique.grid", 10**5, "[1, 64]"),
])
def test_image_patch_and_grid_counts_have_an_upper_bound(tmp_path, monkeypatch, key, value, allowed):
    _refused_above_and_allowed_at_the_bound(tmp_path, monkeypatch, key, value, allowed)


def test_every_monotone_transformer_width_has_an_upper_bound(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, {"mixed.transformer_hidden": [16, 10**9]})
    assert "mixed.transformer_hidden = [16, 1000000000] is not allowed" in message and "[1, 16384]" in message
    assert _validate(tmp_path, monkeypatch, {"mixed.transformer_hidden": [16, 16]})


# --- devices ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["extract.device", "finetune.device", "pretrain.arniqa.device"])
def test_cuda_without_a_gpu_names_the_key(tmp_path, monkeypatch, key):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = _error(tmp_path, monkeypatch, {key: "cuda"})
    assert f"{key} = 'cuda' but torch sees no GPU on this machine" in message and "use auto" in message
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _validate(tmp_path, monkeypatch, {key: "cuda"})


def test_torch_is_not_asked_unless_a_section_wants_cuda(tmp_path, monkeypatch):
    def asked():
        raise AssertionError("torch.cuda.is_available() called for auto/cpu devices")
    monkeypatch.setattr(torch.cuda, "is_available", asked)
    assert _validate(tmp_path, monkeypatch, {"extract.device": "cpu", "finetune.device": "auto"})


# --- crop and patch sizes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, allowed", [
    ("finetune.crop", 100000, "[16, 4096]"),
    ("pretrain.contrique.crop", 100000, "[16, 4096]"),
    ("pretrain.arniqa.region", 100000, "[16, 4096]"),
    ("prepare.patch_size", 100000, "[48, 4096]"),
    ("niqe.patch_size", 100000, "[8, 4096]"),
])
def test_crop_and_patch_sizes_have_an_upper_bound(tmp_path, monkeypatch, key, value, allowed):
    assert f"{key} = {value} is not allowed; it must be an integer in {allowed}" in _error(
        tmp_path, monkeypatch, {key: value})


def test_a_patch_larger_than_a_photograph_stops_the_fingerprint_stage(tmp_path, monkeypatch):
    """prepare refused it too, but only after DVC had deleted prepare's outputs; the fingerprint stage (stage
    None) runs first. The smallest photograph of the embedded sets is chelsea (synthetic-mixed), 300 px."""
    side = min(min(embedded.PHOTOS[p]().shape[:2]) for p in embedded.SETS["synthetic-mixed"].photos)
    message = _error(tmp_path, monkeypatch, {"prepare.patch_size": side + 1})
    assert (f"prepare.patch_size = {side + 1} is larger than photograph chelsea of synthetic-mixed ({side} px on its "
            f"shorter side); set prepare.patch_size to at most {side}") in message
    assert _validate(tmp_path, monkeypatch, {"prepare.patch_size": side})
    # The stages after fingerprint do not decode the photographs again.
    assert _validate(tmp_path, monkeypatch, {"prepare.patch_size": side + 1}, stage="evaluate")


# --- check: the CI gate's section ------------------------------------------------------------------------

@pytest.mark.parametrize("tolerance, expected", [
    ({"default": "abc"}, "check.tolerance.default = 'abc' is not allowed; it must be a number in [0, 1]"),
    ({"default": -0.1}, "check.tolerance.default = -0.1 is not allowed"),
    ({"synthetic-single": True}, "check.tolerance.synthetic-single = True is not allowed"),
    ("lots", "check.tolerance = 'lots' is not allowed"),
    ({"synthetic-singel": 0.05}, "check.tolerance.synthetic-singel names no dataset (did you mean "
                                 "'synthetic-single'?)"),
    ({"synthetic-single->synthetic-mixd": 0.05}, "check.tolerance.synthetic-single->synthetic-mixd names no "
                                                 "dataset (did you mean 'synthetic-single->synthetic-mixed'?)"),
    ({"a->b->c": 0.05}, "check.tolerance.a->b->c names no dataset"),
])
def test_check_tolerance_values_and_keys_are_validated(tmp_path, monkeypatch, tolerance, expected):
    assert expected in _error(tmp_path, monkeypatch, {"check.tolerance": tolerance})


def test_check_tolerance_accepts_what_the_gate_reads(tmp_path, monkeypatch):
    # koniq10k: a dataset iqabench knows but this params.yaml does not list (`dvc exp run -S datasets=...`).
    good = {"default": "AUTO", "synthetic-mixed": 0, "koniq10k": 0.1, "synthetic-single->synthetic-mixed": 0.05}
    assert _validate(tmp_path, monkeypatch, {"check.tolerance": good})
    assert _validate(tmp_path, monkeypatch, {"check.tolerance": 0.02})


@pytest.mark.parametrize("key, value, expected", [
    ("auto_factor", "x", "check.auto_factor = 'x' is not allowed; it must be a number in [0, 10]"),
    # A factor or tolerance that lets any drop pass said "passed" on 0.9 -> 0.36; a 400-digit one was a traceback.
    ("seed_factor", 4000000000, "check.seed_factor = 4000000000 is not allowed; it must be a number in [0, 10]"),
    ("seed_factor", 10 ** 400, "check.seed_factor = 1000"),
    ("tolerance", {"synthetic-single": 5}, "check.tolerance.synthetic-single = 5 is not allowed; it must be a "
                                          "number in [0, 1]"),
    ("gate", ["srcc", "krcc"], "check.gate = ['srcc', 'krcc'] is not allowed"),
    ("gate", [], "check.gate = [] is not allowed; it must be a non-empty list"),   # it gated nothing, and passed
    ("seed_factr", 3, "check.seed_factr is not a known key (did you mean 'seed_factor'?)"),
])
def test_other_check_keys_are_validated(tmp_path, monkeypatch, key, value, expected):
    assert expected in _error(tmp_path, monkeypatch, {f"check.{key}": value})


@pytest.mark.parametrize("check, expected", [
    ({"tolerance": {"default": "abc", "synthetic-single": 0.05}},
     "check.tolerance.default = 'abc' is not allowed; it must be a number in [0, 1]"),
    ({"tolerance": {"default": "auto", "synthetic-mixed": -1}}, "check.tolerance.synthetic-mixed = -1 is not allowed"),
    ({"tolerance": "abc"}, "check.tolerance = 'abc' is not allowed"),
    ({"tolerance": {"synthetic-singel": 0.05}}, "check.tolerance.synthetic-singel names no dataset (did you mean "
                                                "'synthetic-single'?)"),
    ({"seed_factr": 3}, "check.seed_factr is not a known key (did you mean 'seed_factor'?)"),
    ({"gate": ["srcc", "krcc"]}, "check.gate = ['srcc', 'krcc'] is not allowed"),
    ("lots", "section 'check' must be a mapping of keys, got 'lots'"),
])
def test_iqabench_check_refuses_a_bad_check_section_in_the_words_of_params_validation(tmp_path, monkeypatch, check,
                                                                                       expected):
    """One schema for check:, whether params validation or `iqabench check --params FILE` reads it: the same
    line, naming the file, the key and the value."""
    monkeypatch.chdir(tmp_path)
    params_file = tmp_path / "mine.yaml"
    params_file.write_text(yaml.safe_dump({"check": check}))
    with pytest.raises(params.ParamsError) as validated:
        params.validate({"check": check}, where=str(params_file))
    with pytest.raises(gate_inputs.GateError) as checked:
        gate_inputs.check_settings(check, str(params_file))
    assert str(checked.value) == str(validated.value)
    assert str(validated.value).startswith(f"{params_file}: {expected}"), str(validated.value)
    metrics = {"within": {"contrique": {"synthetic-single": {"srcc": 0.9, "plcc": 0.9}}},
               "cross": {"contrique": {"synthetic-single->synthetic-mixed": {"srcc": 0.7, "plcc": 0.7}}}}
    write_json(tmp_path / "reports" / "metrics.json", metrics)
    write_json(tmp_path / "old.json", metrics)
    console = Console(record=True, width=300)
    code = gate.run_check(str(tmp_path / "old.json"), metrics_path=tmp_path / "reports" / "metrics.json",
                          params_path=params_file, console=console)
    text = " ".join(console.export_text().split())  # rich wraps long lines
    assert code == 2 and f"error: {validated.value}" in text, text


def test_iqabench_check_accepts_what_validation_accepts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = {"baseline": "reports/baseline.json", "gate": ["srcc"], "auto_factor": 2, "seed_factor": 4.24,
            "tolerance": {"default": "auto", "koniq10k": 0.1, "synthetic-single->synthetic-mixed": 0.05}}
    assert gate_inputs.check_settings(good) == good
    assert gate_inputs.check_settings(None) == {}


# --- pretrain profiles --------------------------------------------------------------------------------------
def test_a_profiles_keys_and_ranges_are_checked_before_any_stage_runs(tmp_path, monkeypatch):
    """A profile's values replace the section's inside pretrain@NAME, after DVC deleted its outputs: the same
    schema checks them first, naming the profile file."""
    paper = REPO / "profiles" / "paper.yaml"
    assert _validate(tmp_path, monkeypatch, {"pretrain.contrique.profile": str(paper)})  # the shipped one passes
    bad = tmp_path / "mine.yaml"
    for text, expected in (("lrr: 0.1\n", "pretrain.contrique.lrr is not a known key (did you mean 'lr'?)"),
                           ("crop: 100000\n", "pretrain.contrique.crop = 100000 is not allowed"),
                           ("crop: [\n", "cannot be read as YAML"),
                           ("- crop\n", "a profile is a mapping of pretrain keys, got list")):
        bad.write_text(text)
        with pytest.raises(params.ParamsError) as info:
            _validate(tmp_path, monkeypatch, {"pretrain.contrique.profile": str(bad)})
        assert str(bad) in str(info.value) and expected in str(info.value), str(info.value)


@pytest.mark.parametrize("key", ["pretrain.contrique.temperature", "pretrain.arniqa.temperature"])
@pytest.mark.parametrize("value", [1e-30, 0.0009, 101])
def test_a_contrastive_temperature_outside_what_trains_is_refused(tmp_path, monkeypatch, key, value):
    # 1e-30 pretrained to the end and reported success: float32 softmax kept only the hardest negative.
    assert (f"{key} = {value} is not allowed; it must be a number in [0.001, 100]"
            in _error(tmp_path, monkeypatch, {key: value}))
    assert _validate(tmp_path, monkeypatch, {key: 0.001}) and _validate(tmp_path, monkeypatch, {key: 100})
