"""Checkpoints never run code when read, and a damaged newest one falls back to the previous one."""
import ast
import json
import os
import random
import warnings

import numpy as np
import pytest
import torch

from iqabench import io, runtime
from iqabench.training import checkpoint
from iqabench.training.checkpoint import CheckpointWarning


class _Payload:
    """Unpickling this creates a file: the proof that code from a checkpoint ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _state(step, digest="abc"):
    return {"model": {"w": torch.full((3,), float(step))}, "step": step, "config_hash": digest,
            "rng": runtime.rng_state(), "history": [{"loss": np.float64(0.5)}]}


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    checkpoint.save(tmp_path, 1, _state(1))
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = checkpoint.latest(tmp_path, "abc")
    runtime.set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    assert state["history"] == [{"loss": 0.5}] and type(state["history"][0]["loss"]) is float
    torch.load(checkpoint.path_for(tmp_path, 1), weights_only=True)  # plain types and tensors only


def test_planted_pickle_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint.save(tmp_path / "ckpt", 5, _state(5))
    planted = tmp_path / "ckpt" / "step-99999999.pt"
    torch.save({"model": _Payload(marker), "config_hash": "abc", "step": 99999999}, planted)
    with pytest.warns(CheckpointWarning, match="step-99999999.pt skipped: no valid sidecar"):
        state = checkpoint.latest(tmp_path / "ckpt", "abc")
    assert state["step"] == 5 and not marker.exists()

    # Even with a forged sidecar that matches its bytes, the file is read weights-only and refused.
    (tmp_path / "ckpt" / "step-99999999.json").write_text(json.dumps(
        {"step": 99999999, "config_hash": "abc", "size": planted.stat().st_size, "sha256": io.sha256_file(planted)}))
    with pytest.warns(CheckpointWarning) as caught:
        state = checkpoint.latest(tmp_path / "ckpt", "abc")
    message = str(caught[0].message)
    assert state["step"] == 5 and not marker.exists()
    assert "step-99999999.pt" in message and "posix.system" in message and "arbitrary code" in message
    assert "will likely succeed" not in message and "weights_only" not in message


def test_truncated_newest_checkpoint_is_skipped_with_its_name(tmp_path):
    checkpoint.save(tmp_path, 10, _state(10))
    newest = checkpoint.save(tmp_path, 20, _state(20))
    newest.write_bytes(newest.read_bytes()[:200])
    with pytest.warns(CheckpointWarning, match=r"step-00000020.pt skipped: its bytes differ.*truncated"):
        state = checkpoint.latest(tmp_path, "abc")
    assert state["step"] == 10 and torch.equal(state["model"]["w"], torch.full((3,), 10.0))


def test_checkpoint_without_a_sidecar_is_skipped(tmp_path):
    checkpoint.save(tmp_path, 10, _state(10))
    half = checkpoint.path_for(tmp_path, 20)
    half.write_bytes(checkpoint.path_for(tmp_path, 10).read_bytes()[:100])  # e.g. an older iqabench's checkpoint
    with pytest.warns(CheckpointWarning, match="step-00000020.pt skipped"):
        assert checkpoint.latest(tmp_path, "abc")["step"] == 10


def test_other_configs_are_skipped_silently_and_pruned(tmp_path):
    checkpoint.save(tmp_path, 7, _state(7, digest="other"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoint.latest(tmp_path, "abc") is None
    assert checkpoint.of_other_settings(tmp_path, "abc") == [checkpoint.path_for(tmp_path, 7)]
    for step in (1, 2, 3):
        checkpoint.save(tmp_path, step, _state(step))
    # The other run is further along: kept (reverting the params change resumes it) until this one passes it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000002.json", "step-00000002.pt",
                                                          "step-00000003.json", "step-00000003.pt",
                                                          "step-00000007.json", "step-00000007.pt"]
    checkpoint.save(tmp_path, 8, _state(8))
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".pt") == ["step-00000003.pt", "step-00000008.pt"]


def test_encoder_file_with_a_pickled_object_is_refused_without_torchs_retry_hint(tmp_path):
    from iqabench.models import encoders

    marker = tmp_path / "pwned"
    torch.save({"config": _Payload(marker), "state_dict": {}}, tmp_path / "evil.pt")
    with pytest.raises(ValueError) as err:
        encoders.load(tmp_path / "evil.pt")
    assert "refused to load" in str(err.value) and "likely succeed" not in str(err.value)
    assert not marker.exists()


def test_every_torch_load_in_the_project_is_weights_only(repo_root):
    offenders = []
    for folder in ("src", "stages", "benchmarks", "tests"):
        for path in (repo_root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                    safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                               for k in node.keywords)
                    if not safe:
                        offenders.append(f"{path.relative_to(repo_root)}:{node.lineno}")
    assert not offenders, "torch.load without weights_only=True: " + ", ".join(offenders)


@pytest.mark.parametrize("damage", ["half", "head", "empty", "text"])
def test_a_corrupt_encoder_file_is_called_corrupt_not_an_unsafe_pickle(tmp_path, monkeypatch, damage):
    """A truncated data/encoders/contrique.pt (and a text file given as file:x.pt) got the unsafe-pickle advice
    ("Full pickles are not loaded ... save its state dict alone"): wrong for a damaged file."""
    from iqabench.models import encoders

    monkeypatch.chdir(tmp_path)
    path = encoders.trained_path("contrique")
    encoders.save(encoders.Encoder(arch="small_cnn", width=4), path)
    whole = path.read_bytes()
    path.write_bytes({"half": whole[:len(whole) // 2], "head": whole[:200], "empty": b"",
                      "text": b"not a checkpoint\n"}[damage])
    with pytest.raises(ValueError) as err:
        encoders.load(path)
    message = str(err.value)
    assert message.startswith(f"{path} is corrupt or not a torch checkpoint (")
    assert f"`dvc checkout {path}` (or `dvc repro -f pretrain@contrique`)" in message
    assert "pickle" not in message.lower() and "state dict alone" not in message
    assert "weights_only" not in message and "likely succeed" not in message  # torch's retry hint, never
    elsewhere = tmp_path / "x.pt"
    elsewhere.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=r"x\.pt is corrupt or not a torch checkpoint .*download or copy it again"):
        encoders.load(elsewhere)
