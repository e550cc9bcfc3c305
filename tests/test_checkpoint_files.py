"""An encoder file with bad content (an edited config, tensors of another shape, an old-protocol pickle) is refused
with one line naming the file, the key or tensor and what to do, before a network is built from it; no pickle is
ever executed (they were TypeError / "size mismatch" tracebacks, an attempt to allocate terabytes, and torch's
"Re-running `torch.load` with `weights_only` set to `False` will likely succeed")."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from iqabench import params_schema, regressor, rows
from iqabench.cli import app
from iqabench.models import encoder_files, encoders


class _Payload:
    """Unpickling this creates a file: the proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _file(tmp_path, blob, name="enc.pt"):
    torch.save(blob, tmp_path / name)
    return tmp_path / name


def _small():
    torch.manual_seed(0)
    encoder = encoders.Encoder(arch="small_cnn", width=4)
    return {"config": encoder.config(), "state_dict": encoder.state_dict()}


def _refused(path) -> str:
    with pytest.raises(ValueError) as err:
        encoders.load(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}")
    assert "weights_only" not in message and "likely succeed" not in message
    return message


@pytest.mark.parametrize("config, problem", [
    ({"arch": "small_cnn", "width": 4, "depth": 3},
     "'depth' is not a known key; an encoder's config has ['arch', 'width']"),
    (["small_cnn", 4], "it is a list, not a mapping of ['arch', 'width']"),
    ({"arch": "small_cnn", "width": "abc"}, "width = 'abc' is not allowed; it must be an integer in [1, 1024]"),
    ({"arch": "small_cnn", "width": 2 ** 40},  # small_cnn would ask for ~10^26 bytes
     "width = 1099511627776 is not allowed; it must be an integer in [1, 1024]"),
    ({"arch": "small_cnn", "width": 0}, "width = 0 is not allowed"),
    ({"arch": "small_cnn", "width": True}, "width = True is not allowed"),
    ({"arch": "vgg16", "width": 4}, "arch = 'vgg16' is not an encoder architecture; it must be one of ['small_cnn'"),
])
def test_an_edited_config_is_refused_before_anything_is_built(tmp_path, monkeypatch, config, problem):
    path = _file(tmp_path, {**_small(), "config": config})

    def never(*args, **kwargs):
        raise AssertionError("an encoder was built from an invalid config")

    monkeypatch.setattr(encoders.SmallCNN, "__init__", never)
    message = _refused(path)
    assert f"{path}: its encoder config " in message and f"cannot be built: {problem}" in message
    assert "download or copy it again" in message


def _edited(state, how):
    state = dict(state)
    if how == "transposed":
        state["trunk.0.weight"] = state["trunk.0.weight"].transpose(0, 1).contiguous()
    elif how == "missing":
        del state["trunk.3.weight"]
    elif how == "unexpected":
        state["head.weight"] = torch.zeros(2)
    elif how == "not a tensor":
        state["trunk.0.weight"] = 3
    return state


@pytest.mark.parametrize("how, first", [
    ("transposed", "trunk.0.weight is (3, 4, 3, 3) in the file, (4, 3, 3, 3) in the network"),
    ("missing", "missing trunk.3.weight"),
    ("unexpected", "unexpected 'head.weight'"),
    ("not a tensor", "'trunk.0.weight' is of type int, not a tensor"),
])
def test_tensors_that_do_not_fit_the_config_name_the_first_mismatch(tmp_path, how, first):
    blob = _small()
    path = _file(tmp_path, {**blob, "state_dict": _edited(blob["state_dict"], how)})
    message = _refused(path)
    assert message.startswith(f"{path}: weights do not fit its config (small_cnn, width 4): {first}")
    assert "The file was changed after iqabench saved it" in message and "size mismatch" not in message


def test_another_width_names_the_first_three_mismatches_and_counts_the_rest(tmp_path):
    blob = _small()
    message = _refused(_file(tmp_path, {**blob, "config": {"arch": "small_cnn", "width": 8}}))
    assert "weights do not fit its config (small_cnn, width 8): trunk.0.weight is (4, 3, 3, 3) in the file, " \
           "(8, 3, 3, 3) in the network; trunk.1.weight" in message
    assert "more mismatch(es)" in message


def test_a_state_dict_that_is_a_number(tmp_path):
    message = _refused(_file(tmp_path, {**_small(), "state_dict": 5}))
    assert "weights do not fit its config (small_cnn, width 4): its state_dict is of type int (5), not a mapping " \
           "of names to tensors" in message


def test_a_pretrained_file_says_how_dvc_restores_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = encoders.trained_path("contrique")
    path.parent.mkdir(parents=True)
    torch.save({**_small(), "config": {"arch": "small_cnn", "width": "abc"}}, path)
    assert f"restore it with `dvc checkout {path}` (or `dvc repro -f pretrain@contrique`)" in _refused(path)


def test_a_torchvision_state_dict_with_a_wrong_conv1(tmp_path):
    from torchvision.models import resnet18

    state = resnet18().state_dict()
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)  # a grey-input network
    path = _file(tmp_path, state)
    message = _refused(path)
    assert message.startswith(f"{path}: weights do not fit torchvision's resnet18: conv1.weight is (64, 1, 7, 7) in "
                              "the file, (64, 3, 7, 7) in the network.")
    assert "give that network's own state dict" in message
    del state["conv1.weight"], state["layer1.0.bn1.weight"]
    state["conv1.weight"] = torch.zeros(64, 3, 7, 7)
    assert "weights do not fit torchvision's resnet18: missing layer1.0.bn1.weight" in _refused(_file(tmp_path, state))


def test_valid_files_load_the_same_weights_as_before(tmp_path):
    """The checks only speak when torch refuses: a valid file gives the same tensors (num_batches_tracked may be
    absent from a plain dict, as torch allows)."""
    blob = _small()
    loaded = encoders.load(_file(tmp_path, blob))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in blob["state_dict"].items())
    plain = {k: v for k, v in blob["state_dict"].items() if not k.endswith("num_batches_tracked")}
    encoders.load(_file(tmp_path, {**blob, "state_dict": plain}, "plain.pt"))
    only_arch = encoders.load(_file(tmp_path, {"config": {"arch": "small_cnn"}, "state_dict": encoders.Encoder(
        width=16).state_dict()}, "default.pt"))
    assert only_arch.width == 16  # a missing key takes Encoder's default, as before


@pytest.mark.parametrize("protocol", [0, 1])
def test_an_old_protocol_pickle_is_refused_as_a_full_pickle_never_run(tmp_path, protocol):
    """Its first byte is not 0x80, so it was called corrupt, with torch's advice to retry with weights_only=False."""
    marker = tmp_path / "pwned"
    path = tmp_path / "old.pt"
    with open(path, "wb") as fh:
        pickle.dump({"config": _Payload(marker), "state_dict": {}}, fh, protocol=protocol)
    message = _refused(path)
    assert message.startswith(f"{path}: cannot be read as a weights-only torch checkpoint (refused to load: a "
                              "pickle (protocol 0 or 1) written by pickle.dump rather than torch.save, asking for "
                              "posix.system)")
    assert "Full pickles are not loaded (they can run code); save its state dict alone" in message
    assert "corrupt" not in message and not marker.exists()


@pytest.mark.parametrize("protocol", [0, 1])
def test_an_old_protocol_state_dict_and_torchs_legacy_format(tmp_path, protocol):
    blob = _small()
    plain = tmp_path / "plain.pt"
    with open(plain, "wb") as fh:
        pickle.dump({"a": 1}, fh, protocol=protocol)
    assert ("refused to load: a pickle (protocol 0 or 1) written by pickle.dump rather than torch.save)"
            in _refused(plain))
    legacy = tmp_path / "legacy.pt"
    torch.save(blob, legacy, pickle_protocol=protocol, _use_new_zipfile_serialization=False)
    assert ("refused to load: torch.save's legacy format with pickle protocol 0 or 1, which the weights-only reader "
            "does not read)") in _refused(legacy)


def test_a_pickle_dump_of_protocol_2_is_not_called_corrupt(tmp_path):
    path = tmp_path / "dumped.pt"
    with open(path, "wb") as fh:
        pickle.dump({"a": 1}, fh, protocol=2)
    assert "refused to load: a pickle (protocol 2) written by pickle.dump rather than torch.save)" in _refused(path)


def test_bytes_that_are_no_pickle_are_corrupt_without_torchs_hint(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(bytes(range(256)) * 4)
    message = _refused(path)
    assert message.startswith(f"{path} is corrupt or not a torch checkpoint (UnpicklingError: not what torch.save "
                              r"writes (it starts with b'\x00\x01")
    assert encoder_files.pickle_kind(path) is None


def test_pickle_kind_only_parses(tmp_path, monkeypatch):
    """pickletools decodes opcodes; nothing is imported or built (pickle's loaders would)."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump(_Payload(marker), fh, protocol=0)

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickled")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert encoder_files.pickle_kind(path) == ("a pickle (protocol 0 or 1) written by pickle.dump rather than "
                                               "torch.save, asking for posix.system")
    assert not marker.exists()


def test_the_width_limit_is_params_yamls():
    assert encoder_files.MAX_WIDTH == params_schema.MAX_WIDTH


def test_iqabench_score_and_the_rows_say_it_in_one_line(tmp_path):
    """`iqabench score --model file:X.pt` and what extract and finetune call (rows.feature_fn, encoders.load)."""
    blob = _small()
    path = _file(tmp_path, {**blob, "config": {"arch": "small_cnn", "width": 2 ** 40}})
    model = f"file:{path}"
    feats = np.random.default_rng(0).normal(size=(10, 64))
    regressor.fit(feats, np.linspace(0, 1, 10), alpha=0.1, standardize=False, dataset="d").save(
        regressor.path_for(model, tmp_path / "regressors"))
    Image.new("RGB", (64, 64), "grey").save(tmp_path / "p.png")
    result = CliRunner().invoke(app, ["score", str(tmp_path / "p.png"), "--model", model,
                                      "--regressors", str(tmp_path / "regressors")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    out = " ".join(result.output.split())
    assert f"error: {path}: its encoder config" in out and "width = 1099511627776 is not allowed" in out
    with pytest.raises(ValueError, match="width = 1099511627776 is not allowed"):
        rows.feature_fn(model)  # the extract stage's call (its `except ValueError` prints one line)


def test_an_absent_trained_encoder_names_the_stage_that_makes_it(tmp_path, monkeypatch):
    # extract@DS with data/encoders/arniqa.pt absent (DVC deletes it while pretrain@arniqa re-runs) was a
    # traceback advising "check the path after 'file:'".
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^data/encoders/arniqa.pt: no such encoder file; it is made by "
                                                r"`dvc repro pretrain@arniqa` \(or fetched by `dvc pull`"):
        encoders.load("data/encoders/arniqa.pt")
    with pytest.raises(FileNotFoundError, match=r"elsewhere.pt: no such encoder file; check the path after 'file:'"):
        encoders.load("elsewhere.pt")
