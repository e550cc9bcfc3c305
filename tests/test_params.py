"""params.yaml is validated in one place: each bad value stops with one line naming key, value and range."""
from __future__ import annotations

import copy
import re
import runpy
import sys
from pathlib import Path

import pytest
import yaml

from iqabench import params
from stage_cmd import args as dvc_args

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


def _validate(tmp_path, monkeypatch, edit=None, stage=None, keep_regressor=False, **top):
    monkeypatch.chdir(tmp_path)  # data/raw and data/registry.json are read relative to the repository
    cfg = copy.deepcopy(DEFAULT)
    cfg.update(top)
    if "datasets" in top and not keep_regressor:
        del cfg["evaluate"]["regressor_dataset"]  # the default: the first dataset listed
    if edit:
        section, key, value = edit
        body = cfg
        for part in section.split("."):  # "pretrain.contrique": one encoder's entry
            body = body[part]
        body[key] = value
    return params.validate(cfg, stage=stage)


def _error(tmp_path, monkeypatch, *args, **kwargs) -> str:
    with pytest.raises(params.ParamsError) as info:
        _validate(tmp_path, monkeypatch, *args, **kwargs)
    message = str(info.value)
    assert "\n" not in message  # one line
    return message


def test_the_repository_params_are_valid_for_every_stage(tmp_path, monkeypatch):
    out = _validate(tmp_path, monkeypatch, stage="prepare")
    assert out["evaluate"]["regressor_dataset"] == "synthetic-single"
    monkeypatch.chdir(REPO)
    for name in ("prepare", "synthesize", "pretrain.contrique", "pretrain.arniqa", "niqe", "extract", "evaluate",
                 "finetune", "mixed", "report"):
        assert params.section(name)["seed"] == DEFAULT["seed"]


@pytest.mark.parametrize("edit, expected", [
    (("evaluate", "n_splits", 0), "evaluate.n_splits = 0 is not allowed; it must be an integer in [1, 1000]"),
    (("evaluate", "test_frac", 1.5), "evaluate.test_frac = 1.5 is not allowed; it must be a number in (0, 1)"),
    (("evaluate", "val_frac", -0.1), "evaluate.val_frac = -0.1 is not allowed; it must be a number in [0, 1)"),
    (("evaluate", "logistic", "6pl"), "evaluate.logistic = '6pl' is not allowed; it must be one of the PLCC"),
    (("evaluate", "alphas", []), "evaluate.alphas = [] is not allowed; it must be a non-empty list"),
    (("evaluate", "alpha_rule", "mean"), "evaluate.alpha_rule = 'mean' is not allowed; it must be one of the rules "
                                         "for choosing alpha (median, per_split)"),
    (("prepare", "versions_per_patch", 200), "prepare.versions_per_patch = 200 is not allowed; it must be an "
                                             "integer in [1, 125]"),
    (("prepare", "label_metrics", ["ssim", "lpips"]), "prepare.label_metrics = ['ssim', 'lpips'] is not allowed"),
    (("synthesize", "photos", ["astronaut", "moon"]), "synthesize.photos = ['astronaut', 'moon'] is not allowed"),
    (("extract", "device", "gpu"), "extract.device = 'gpu' is not allowed; it must be one of ['auto', 'cpu', "
                                   "'cuda']"),
    (("pretrain.contrique", "steps", 0), "pretrain.contrique.steps = 0 is not allowed; it must be an integer in "
                                         "[1, 1000000]"),
    (("pretrain.arniqa", "nproc", 0), "pretrain.arniqa.nproc = 0 is not allowed; it must be an integer in [1, 256]"),
    (("finetune", "lr_encoder", -1.0), "finetune.lr_encoder = -1.0 is not allowed; it must be a number >= 0"),
    (("mixed", "batch_size", -2), "mixed.batch_size = -2 is not allowed; it must be 0 (full batch) or an integer in [2, 65536]"),
    (("extract", "bf16", "yes"), "extract.bf16 = 'yes' is not allowed; it must be true or false"),
    (("prepare", "patch_size", 64), "prepare.patch_size = 64 is below niqe.patch_size = 96"),
])
def test_out_of_range_values_name_key_value_and_range(tmp_path, monkeypatch, edit, expected):
    assert expected in _error(tmp_path, monkeypatch, edit)


def test_yaml_text_that_looks_like_a_number_gets_a_hint(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, ("pretrain.contrique", "lr", "2e-3"))
    assert "pretrain.contrique.lr = '2e-3'" in message and "write it with a dot and a signed exponent, e.g. 2.0e-3" in message
    # A quoted whole number is text too, but a dot would not help: the quotes must go.
    message = _error(tmp_path, monkeypatch, ("evaluate", "n_splits", "10"))
    assert "it is quoted, so YAML reads it as text: write 10 without quotes" in message and "dot" not in message


@pytest.mark.parametrize("edit, expected", [
    (("pretrain.contrique", "arch", "resnet5O"), "pretrain.contrique.arch = 'resnet5O' is not allowed; it must be one "
                                                 "of the encoder architectures (small_cnn, resnet18"),
    (("pretrain.arniqa", "objective", "arniq"), "pretrain.arniqa.objective = 'arniq' is not allowed"),
    (("pretrain.contrique", "optimizer", "adam"), "pretrain.contrique.optimizer = 'adam' is not allowed; it must be "
                                                  "one of ['adamw', 'sgd']"),
    (("pretrain.contrique", "colour_spaces", ["rgb", "yuv"]), "pretrain.contrique.colour_spaces = ['rgb', 'yuv']"),
    (("pretrain.arniqa", "photos", ["moon"]), "pretrain.arniqa.photos = ['moon'] is not allowed"),
    (("pretrain.contrique", "profile", "profiles/nope.yaml"), "pretrain.contrique.profile = 'profiles/nope.yaml' is "
                                                              "not allowed; it must be '' or an existing YAML file"),
])
def test_pretrain_names_are_checked_before_any_stage_runs(tmp_path, monkeypatch, edit, expected):
    # These once passed validation: prepare and synthesize ran, then pretrain stopped (an arch typo with a traceback).
    assert expected in _error(tmp_path, monkeypatch, edit)


def test_an_unlabelled_set_cannot_be_a_column_of_the_tables(tmp_path, monkeypatch):
    # prepare once stopped with "use list_images() to read it", a function name, after earlier stages ran.
    message = _error(tmp_path, monkeypatch, datasets=["synthetic-single", "kadis700k"])
    assert "datasets: 'kadis700k' has no quality scores (pristine-unlabelled); remove it from datasets:" in message


@pytest.mark.parametrize("name, expected", [
    ("nosuch", "download: 'nosuch' is not a dataset iqabench can download; choose from ['csiq', 'kadid10k'"),
    ("kadid1ok", "(did you mean 'kadid10k'?)"),
    ("synthetic-single", "download: 'synthetic-single' is not a dataset iqabench can download"),
    ("clive", "download: 'clive' has no public URL (request form at"),
])
def test_download_entries_must_be_datasets_with_a_url(tmp_path, monkeypatch, name, expected):
    assert expected in _error(tmp_path, monkeypatch, download=[name])


@pytest.mark.parametrize("edit, expected", [
    (("evaluate", "n_split", 5), "evaluate.n_split is not a known key (did you mean 'n_splits'?); known keys of "
                                 "evaluate: alpha_rule, alphas, arniqa_splits, logistic, n_splits"),
    (("pretrain.arniqa", "learning_rate", 0.1), "pretrain.arniqa.learning_rate is not a known key"),
    (("pretrain.contrique", "step", 3), "pretrain.contrique.step is not a known key (did you mean 'steps'?); "
                                        "known keys of pretrain.contrique: "),
    (("finetune", "step", 3), "finetune.step is not a known key (did you mean 'steps'?)"),
    (("niqe", "kadis_samples", 3), "niqe.kadis_sample"),
])
def test_unknown_keys_name_the_closest_known_one(tmp_path, monkeypatch, edit, expected):
    assert expected in _error(tmp_path, monkeypatch, edit)


def test_unknown_section_and_sums_across_keys(tmp_path, monkeypatch):
    cfg = copy.deepcopy(DEFAULT)
    cfg["evalute"] = cfg.pop("evaluate")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(params.ParamsError, match=r"unknown top-level key 'evalute' \(did you mean 'evaluate'\?\)"):
        params.validate(cfg)
    message = _error(tmp_path, monkeypatch, ("evaluate", "val_frac", 0.85))
    assert "evaluate.test_frac + evaluate.val_frac = 1.05 leaves nothing to train on" in message


def test_models_are_checked_against_the_declared_rows(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, models=["contrique", "nonexistent"])
    assert message.startswith("params.yaml: models: 'nonexistent' is not a known row") and "contrique" in message
    assert "did you mean 'contrique'" in _error(tmp_path, monkeypatch, models=["contrique", "contriqe"])
    missing = tmp_path / "missing.pt"
    message = _error(tmp_path, monkeypatch, models=["contrique", f"file:{missing}"])
    assert f"reads '{missing}', which does not exist" in message
    assert "reads '.', which is a folder, not a file" in _error(tmp_path, monkeypatch, models=["contrique", "file:"])
    assert "reads '/dev/null', which is not a regular file" in _error(tmp_path, monkeypatch,
                                                                        models=["contrique", "file:/dev/null"])
    assert "without repeats" in _error(tmp_path, monkeypatch, models=["random", "random"])
    message = _error(tmp_path, monkeypatch, ("mixed", "model", "arniqa"), models=["contrique"])
    assert "mixed.model = 'arniqa' is not in models: ['contrique']" in message


def test_datasets_unknown_not_downloaded_and_without_url(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, datasets=["nonexistent"])
    assert "datasets: 'nonexistent' is not registered; run `iqabench datasets add nonexistent --from PATH`" in message
    message = _error(tmp_path, monkeypatch, datasets=["koniq10k"], stage="prepare")
    assert "'koniq10k' is not downloaded yet; run `iqabench datasets download koniq10k`" in message
    # Names are checked in every stage; presence only where the data is read (prepare).
    assert _validate(tmp_path, monkeypatch, datasets=["koniq10k"], stage="evaluate")
    # Listed in download:, the download stage fetches it before prepare.
    assert _validate(tmp_path, monkeypatch, datasets=["koniq10k"], download=["koniq10k"], stage="prepare")
    (tmp_path / "data/raw/koniq10k").mkdir(parents=True)
    assert _validate(tmp_path, monkeypatch, datasets=["koniq10k"], stage="prepare")


@pytest.mark.parametrize("registry, expected", [
    ("{broken", "data/registry.json is not valid JSON"),
    ('{"x": {"kind": "generic"}}', "entry 'x' lacks 'path', 'csv'"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "data/registry.json is not UTF-8 text (a binary file?)"),  # (a traceback before)
])
def test_a_broken_registry_stops_every_stage_with_one_line(tmp_path, monkeypatch, registry, expected):
    # read_registry's error once escaped params validation as a traceback, in every stage.
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "registry.json"
    path.write_bytes(registry) if isinstance(registry, bytes) else path.write_text(registry)
    message = _error(tmp_path, monkeypatch)
    assert message.startswith("params.yaml: datasets: cannot be checked: ") and expected in message


def test_regressor_dataset_defaults_to_the_first_dataset_and_must_be_listed(tmp_path, monkeypatch):
    cfg = copy.deepcopy(DEFAULT)
    del cfg["evaluate"]["regressor_dataset"]
    cfg["datasets"] = ["synthetic-mixed", "synthetic-single"]
    monkeypatch.chdir(tmp_path)
    assert params.validate(cfg)["evaluate"]["regressor_dataset"] == "synthetic-mixed"
    assert DEFAULT["evaluate"]["regressor_dataset"] is None  # params.yaml: replacing the sets needs no second edit
    assert params.validate({**DEFAULT, "datasets": ["synthetic-mixed"]})["evaluate"]["regressor_dataset"] == \
        "synthetic-mixed"
    message = _error(tmp_path, monkeypatch, ("evaluate", "regressor_dataset", "synthetic-single"),
                     datasets=["synthetic-mixed"], keep_regressor=True)
    assert "evaluate.regressor_dataset = 'synthetic-single' is not in datasets: ['synthetic-mixed']" in message


def test_a_stage_stops_with_one_line_before_writing_anything(tmp_path, monkeypatch):
    """`evaluate.n_splits: 0` once ended in a traceback after outputs were deleted; now nothing is touched."""
    cfg = copy.deepcopy(DEFAULT)
    cfg["evaluate"]["n_splits"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["evaluate.py", *dvc_args("evaluate")])
    with pytest.raises(SystemExit) as stop:  # Python prints its message to stderr and exits with status 1
        runpy.run_path(str(REPO / "stages/evaluate.py"), run_name="__main__")
    assert str(stop.value.code) == ("error: params.yaml: evaluate.n_splits = 0 is not allowed; it must be an integer "
                                    "in [1, 1000]")
    assert not (tmp_path / "reports").exists() and not (tmp_path / "data").exists()


def test_a_trained_row_needs_its_encoder_in_pretrain(tmp_path, monkeypatch):
    """A row that reads an encoder trained here is refused, before any work, when `pretrain:` lacks its entry."""
    cfg = copy.deepcopy(DEFAULT)
    del cfg["pretrain"]["arniqa"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(params.ParamsError) as info:
        params.validate(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message == ("params.yaml: models: 'arniqa' reads the encoder trained under pretrain.arniqa, but pretrain: "
                       "has no 'arniqa' entry (it has ['contrique']); add `arniqa:` with its settings under pretrain: "
                       "(docs/contrique.md, docs/arniqa.md) or remove 'arniqa' from models:")
    cfg["models"].remove("arniqa")
    assert set(params.validate(cfg)["pretrain"]) == {"contrique"}
    # random and fr:deepwsd read contrique's encoder: without it, the first of them listed is named.
    cfg["models"] = ["brisque", "random", "fr:deepwsd"]
    cfg["pretrain"] = {"arniqa": DEFAULT["pretrain"]["arniqa"]}
    with pytest.raises(params.ParamsError, match=r"models: 'random' reads the encoder trained under "
                                                 r"pretrain.contrique"):
        params.validate(cfg)
    # An encoder no row reads is trained all the same: allowed.
    cfg["pretrain"]["mine"] = {"steps": 10}
    cfg["models"] = ["brisque"]
    cfg["mixed"]["model"] = "brisque"
    assert set(params.validate(cfg)["pretrain"]) == {"arniqa", "mine"}
    # file:data/encoders/NAME.pt is that entry's encoder: asked for in pretrain:, not on disk (not trained yet).
    cfg["models"] = ["brisque", "file:data/encoders/mine.pt"]
    assert params.validate(cfg)["models"] == cfg["models"]
    cfg["models"] = ["brisque", "file:data/encoders/yours.pt"]
    with pytest.raises(params.ParamsError, match="'file:data/encoders/yours.pt' reads the encoder trained under "
                                                 "pretrain.yours, but pretrain: has no 'yours' entry"):
        params.validate(cfg)
    cfg["models"] = ["brisque"]
    # The stage reads one entry, with the top-level seed where its own is null.
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(cfg))
    assert params.section("pretrain.mine")["steps"] == 10 and params.section("pretrain.arniqa")["seed"] == 0
    with pytest.raises(SystemExit, match=r"pretrain: has no 'contrique' entry; it has \['arniqa', 'mine'\]"):
        params.section("pretrain.contrique")


@pytest.mark.parametrize("pretrain, expected", [
    ({}, "pretrain: must map each encoder to its settings"),
    ({"steps": 600, "arch": "small_cnn"}, "pretrain.arch is a setting, but pretrain: maps encoder names to their "
                                           "settings; move the keys under an encoder's name"),
    ({"my.enc": {"steps": 1}}, "pretrain: 'my.enc' cannot name an encoder"),
    ({"contrique": [1, 2]}, "pretrain.contrique must be a mapping of settings"),
])
def test_pretrain_is_a_mapping_of_encoder_names_to_settings(tmp_path, monkeypatch, pretrain, expected):
    cfg = copy.deepcopy(DEFAULT)
    cfg.update(pretrain=pretrain, models=["brisque"])
    cfg["mixed"]["model"] = "brisque"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(params.ParamsError, match=re.escape(expected)):
        params.validate(cfg)


def test_the_old_per_encoder_sections_say_where_their_keys_go(tmp_path, monkeypatch):
    cfg = copy.deepcopy(DEFAULT)
    cfg["pretrain_arniqa"] = cfg["pretrain"].pop("arniqa")
    cfg["models"] = ["contrique"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(params.ParamsError, match="unknown top-level key 'pretrain_arniqa': each encoder's settings "
                                                 "are an entry of pretrain: now; move them under pretrain: as arniqa:"):
        params.validate(cfg)


def test_a_section_written_twice_is_refused_not_silently_replaced(tmp_path):
    # PyYAML kept the last: an `evaluate:` appended at the end dropped every other evaluate setting.
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\nevaluate:\n  n_splits: 10\n  test_frac: 0.3\nevaluate:\n  n_splits: 5\n")
    with pytest.raises(params.ParamsError, match=r"key 'evaluate' appears twice \(lines 2 and 5\); keep one"):
        params.load(path)
    path.write_text("seed: 0\nevaluate:\n  n_splits: 10\n  n_splits: 5\n")
    with pytest.raises(params.ParamsError, match=r"key 'n_splits' appears twice \(lines 3 and 4\)"):
        params.load(path)
    assert params.load(REPO / "params.yaml") == DEFAULT
