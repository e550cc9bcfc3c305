"""Faults a stage meets halfway end in one line, or a warning, not a traceback: a bad `pretrain --profile`
(it skipped the params checks a params.yaml profile gets), a damaged timing file in report, and a fine-tuning
loss that diverges."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

from iqabench import stage_errors, timing
from stage_cmd import args as dvc_args
from test_finetune import _cfg, _run, one_thread, tiny  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]


def _stage(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}_faults", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("profile, says", [
    ("lr: 1.0e30\n", "pretrain.contrique.lr = '1.0e30' is not allowed"),  # PyYAML: text (no exponent sign)
    ("steps: -5\n", "pretrain.contrique.steps = -5 is not allowed"),
    ("batch_size: 0\n", "pretrain.contrique.batch_size = 0 is not allowed"),
    ("width: abc\n", "pretrain.contrique.width = 'abc' is not allowed"),
    ("arch: resnet5O\n", "pretrain.contrique.arch = 'resnet5O' is not allowed"),
    ("warmup_frac: 5\n", "pretrain.contrique.warmup_frac = 5 is not allowed"),
])
def test_a_bad_profile_given_with_the_option_stops_pretrain_in_one_line(monkeypatch, tmp_path, profile, says):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"contrique": {"steps": 1}}}))
    (tmp_path / "p.yaml").write_text(profile)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        _stage("pretrain").main([*dvc_args("pretrain", "contrique"), "--profile", "p.yaml"])
    message = str(stop.value.code)
    assert message.startswith("error: p.yaml: ") and says in message and "\n" not in message
    assert not (tmp_path / "data").exists()  # refused before any work: no encoder, no checkpoint


@pytest.mark.parametrize("what, says", [(os.devnull, "is not a regular file"), (".", "is a folder"),
                                        ("gone.yaml", "does not exist")])
def test_a_profile_that_is_not_a_file_is_named_for_what_it_is(monkeypatch, tmp_path, what, says):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "pretrain": {"contrique": {"steps": 1}}}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=f"pretrain profile {what} {says}"):
        _stage("pretrain").main([*dvc_args("pretrain", "contrique"), "--profile", what])
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("text, says", [
    ('<<<<<<< HEAD\n{"stage": "evaluate", "seconds": 1.0}\n=======\n{"stage": "evaluate", "seconds": 2.0}\n'
     '>>>>>>> other\n', "is not readable JSON (JSONDecodeError"),
    ('{"stage": "evaluate"}', "has no number 'seconds' (got None)"),
    ("[1, 2]", "is a JSON list, not an object"),
    ('{"stage": "evaluate", "seconds": 1.0, "seconds": 2.0}', "is not readable JSON (JSONShapeError: ")])
def test_a_damaged_timing_file_is_skipped_with_a_warning(monkeypatch, tmp_path, capsys, text, says):
    timings = tmp_path / "reports" / "timings"
    timings.mkdir(parents=True)
    (timings / "evaluate.json").write_text(text)
    (timings / "prepare.json").write_text(json.dumps({"stage": "prepare", "seconds": 3.0, "machine": "x"}))
    monkeypatch.chdir(tmp_path)
    every, ran = timing.stage_timings(started=0.0)
    assert [t["stage"] for t in every] == ["prepare"] == [t["stage"] for t in ran]
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("warning: reports/timings/evaluate.json ") and says in warning
    assert "\n" not in warning
    assert "| prepare | 3.0 |" in timing.timings_markdown(every, ran)


def test_a_diverging_fine_tuning_loss_names_dataset_split_and_the_lr_to_lower(tiny, tmp_path):  # noqa: F811
    with pytest.raises(FloatingPointError) as err:
        _run(tiny, tmp_path, _cfg(n_splits=1, lr_head=1e30, lr_encoder=1e30, steps=3))
    with pytest.raises(SystemExit) as stop, stage_errors.one_line("finetune", FloatingPointError):
        raise err.value  # as stages/finetune.py wraps finetune_dataset
    message = str(stop.value.code)
    assert message.startswith("error: finetune: dataset tiny-blur: fine-tuning loss became ")
    assert "of split 0; lower finetune.lr_head / finetune.lr_encoder" in message
    assert "resume" not in message and "\n" not in message


@pytest.mark.parametrize("profile, says", [("steps: 1\nsteps: 2\n", "key 'steps' appears twice (lines 1 and 2)"),
                                           ("? [a, b]\n: 1\n", "complex key"),
                                           ("- lr\n", "a profile is a mapping of pretrain keys, got list")])
def test_the_stage_reads_its_profile_with_the_params_reader(monkeypatch, tmp_path, profile, says):
    # The stage read profiles with yaml.safe_load (the last of two equal keys won) and params' checks with its own
    # loader: two readers of one file. Now one, and the stage's own read refuses what params refuses.
    (tmp_path / "p.yaml").write_text(profile)
    with pytest.raises(SystemExit) as stop:
        _stage("pretrain").read_profile(tmp_path / "p.yaml", "contrique")
    message = str(stop.value.code)
    assert message.startswith(f"error: profile {tmp_path / 'p.yaml'}") and says in message and "\n" not in message
