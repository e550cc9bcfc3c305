"""Keys of params.yaml that the stages checked only when they ran (after DVC had deleted their outputs), or not
at all: each is refused by validation, in one line naming key, value and what is allowed (docs/failures.md)."""
from __future__ import annotations

import json

import pytest

from iqabench import images, params, params_schema
from params_variant import variant


def _validate(tmp_path, monkeypatch, edits: dict, drop: tuple = ()) -> dict:
    monkeypatch.chdir(tmp_path)  # data/raw and data/registry.json are read relative to the repository
    return params.validate(variant(edits, drop))


def _error(tmp_path, monkeypatch, edits: dict, drop: tuple = ()) -> str:
    with pytest.raises(params.ParamsError) as info:
        _validate(tmp_path, monkeypatch, edits, drop)
    message = str(info.value)
    assert "\n" not in message and message.startswith("params.yaml: ")
    return message


@pytest.mark.parametrize("key, value, allowed", [
    ("finetune.loss", "l3", "one of the fine-tuning losses (l1, mse)"),
    ("finetune.head", "two-scale", "one of the fine-tuning heads (two_scale, pooled)"),
    ("finetune.bn_stats", "freeze", "one of ['frozen', 'train']"),
    ("finetune.probe_alpha", float("nan"), "a number"),
    ("finetune.logistic", "5PL", "one of the PLCC mappings (none, 4pl, 5pl)"),
    ("finetune.max_short_side", -1, "0 or null (no downscaling), or an integer in [32, 4096]"),
    ("mixed.loss", ["smooth_l1", "l2"], "a non-empty list of one of the loss terms"),
    ("mixed.loss", [], "a non-empty list of one of the loss terms"),
    ("mixed.batch_size", 1, "0 (full batch) or an integer in [2, 65536]"),
    ("mixed.batch_size", 10**12, "0 (full batch) or an integer in [2, 65536]"),
    ("pretrain.contrique.compile", "false", "true or false"),   # a quoted "false" was true: torch.compile ran
    ("pretrain.contrique.all_gather", "no", "true or false"),
    ("pretrain.contrique.momentum", float("nan"), "a number in [0, 1)"),
    ("pretrain.contrique.source", "kadis", "one of ['corpus', 'kadis700k', 'folder', 'embedded']"),
    ("pretrain.contrique.source_dir", 5, "a string"),
    ("extract.max_short_side", 10, "0 or null (no downscaling), or an integer in [32, 4096]"),
    ("extract.max_short_side", 10**6, "0 or null (no downscaling), or an integer in [32, 4096]"),
])
def test_keys_the_stages_checked_late_are_refused_by_validation(tmp_path, monkeypatch, key, value, allowed):
    assert f"{key} = {value!r} is not allowed; it must be {allowed}" in _error(tmp_path, monkeypatch, {key: value})


@pytest.mark.parametrize("key, value", [
    ("finetune.loss", "mse"), ("finetune.head", "pooled"), ("finetune.bn_stats", "train"),
    ("finetune.probe_alpha", 0), ("finetune.probe_alpha", -1.0), ("finetune.max_short_side", None),
    ("finetune.max_short_side", 0), ("finetune.logistic", "none"), ("mixed.loss", ["rank", "mse"]),
    ("mixed.batch_size", 0), ("mixed.batch_size", 2), ("pretrain.contrique.compile", True),
    ("pretrain.contrique.momentum", 0.0), ("extract.max_short_side", 0), ("extract.max_short_side", None),
    ("extract.max_short_side", 4096), ("pretrain.contrique.source", "kadis700k"),
])
def test_what_the_stages_read_still_passes(tmp_path, monkeypatch, key, value):
    assert _validate(tmp_path, monkeypatch, {key: value})


def test_the_smallest_cap_is_the_smallest_image_the_models_read():
    assert params_schema.MIN_IMAGE_SIDE == images.MIN_SIDE


def test_a_cap_below_niqe_patch_size_is_refused_when_niqe_is_a_row(tmp_path, monkeypatch):
    message = _error(tmp_path, monkeypatch, {"extract.max_short_side": 64})
    assert "extract.max_short_side = 64 is below niqe.patch_size = 96" in message and "drop niqe" in message
    assert _validate(tmp_path, monkeypatch, {"extract.max_short_side": 64, "models": ["brisque"],
                                             "mixed.model": "brisque"})


def test_a_source_the_objective_cannot_read_is_refused(tmp_path, monkeypatch):
    # ARNIQA distorts pristine photos on the fly: without `source`, the default corpus failed in pretrain@arniqa.
    message = _error(tmp_path, monkeypatch, {}, drop=("pretrain.arniqa.source",))
    assert ("pretrain.arniqa.source is 'corpus' (the default), which objective 'arniqa' cannot read; set "
            "pretrain.arniqa.source to one of ['embedded', 'folder', 'kadis700k']") in message
    assert "objective 'contrique' cannot read" in _error(tmp_path, monkeypatch,
                                                         {"pretrain.contrique.source": "embedded"})
    message = _error(tmp_path, monkeypatch, {"pretrain.contrique.source": "folder"})
    assert "pretrain.contrique.source is 'folder' but pretrain.contrique.source_dir is empty" in message
    assert _validate(tmp_path, monkeypatch, {"pretrain.contrique.source": "folder",
                                             "pretrain.contrique.source_dir": "photos"})


def test_a_profile_counts_in_the_source_check(tmp_path, monkeypatch):
    (tmp_path / "p.yaml").write_text("objective: arniqa\nsource: corpus\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(params.ParamsError) as info:
        _validate(tmp_path, monkeypatch, {"pretrain.contrique.profile": "p.yaml"})
    assert str(info.value).startswith("p.yaml: pretrain.contrique.source is 'corpus', which objective 'arniqa' "
                                      "cannot read")


# --- the file itself ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.yaml", "missing.yaml does not exist; give an existing params file"),
    (lambda d: d, "is a folder; give the params file, e.g. "),
    (lambda d: _write(d / "p.yaml", b"\xff\xfeseed: 0"), "p.yaml is not UTF-8 text (byte 0: invalid start byte)"),
    (lambda d: _write(d / "p.yaml", b"seed: 0\n\tdatasets: x\n"), "p.yaml is not valid YAML: while scanning for the "
                                                                  "next token found character '\\t'"),
    (lambda d: _write(d / "p.yaml", b"seed: !!python/object/apply:os.system [echo hi]\n"),
     "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
])
def test_a_params_file_that_cannot_be_read_is_one_line_naming_it(tmp_path, make, expected):
    """They were tracebacks (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) or messages over 3 lines."""
    path = make(tmp_path)
    with pytest.raises(params.ParamsError) as info:
        params.load(path)
    assert expected in str(info.value) and "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(SystemExit, match=r"^error: "):   # as a stage reads it
        params.section("evaluate", path)


def test_a_stage_outside_the_repository_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: no params.yaml in .* or its parents; run iqabench from the "):
        params.section("evaluate")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_contrique_batch_larger_than_the_corpus_is_refused_before_any_stage(tmp_path, monkeypatch):
    # It failed only in pretrain@contrique ("a pretraining source is smaller than one global batch"), after
    # prepare and synthesize had run.
    message = _error(tmp_path, monkeypatch, {"synthesize.n_images": 100})
    assert "pretrain.contrique.batch_size = 128 is more than the corpus it reads (synthesize.n_images = 100)" in message
    message = _error(tmp_path, monkeypatch, {"pretrain.contrique.nproc": 2, "synthesize.n_images": 200})
    assert "batch_size = 128 x nproc 2 is more than the corpus" in message
    # At the bound it runs; ARNIQA's entry reads the photographs, not the corpus.
    assert _validate(tmp_path, monkeypatch, {"synthesize.n_images": 128, "synthesize.shard_size": 128})


# --- what PyYAML reads otherwise than DVC, or not at all ----------------------------------------------------------

def test_a_complex_key_is_one_line_naming_its_line(tmp_path):
    # `? [a, b]` was TypeError: unhashable type: 'list' from the repeated-key check.
    for text, kind in (("seed: 0\n? [a, b]\n: 3\n", "list"), ("seed: 0\n? {a: 1}\n: 3\n", "mapping")):
        path = _write(tmp_path / "p.yaml", text.encode())
        with pytest.raises(params.ParamsError) as info:
            params.load(path)
        assert f"{path} is not valid YAML: the key at line 2 is a {kind} (a '? ' complex key); a key is a name" \
            in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("written, read, meant", [("010", "8", "10"), ("09", "'09'", "9"), ("-010", "-8", "-10")])
def test_an_integer_with_a_leading_zero_is_refused(tmp_path, written, read, meant):
    # PyYAML (YAML 1.1) read n_splits: 010 as octal 8 while DVC (YAML 1.2) showed 10.
    path = _write(tmp_path / "p.yaml", f"evaluate:\n  n_splits: {written}\n  alphas: [0.1]\n".encode())
    with pytest.raises(params.ParamsError) as info:
        params.load(path)
    assert (f"n_splits = {written} (line 2) is an integer written with a leading zero, which PyYAML reads as {read} "
            f"and DVC as {meant}; write {meant}") in str(info.value)
    path.write_text(f"evaluate:\n  alphas: [0.1, {written}]\n")
    with pytest.raises(params.ParamsError, match=rf"alphas\[1\] = {written} \(line 2\) is an integer written with"):
        params.load(path)
    path.write_text("evaluate:\n  n_splits: 007\n  seed: 0\n  name: '010'\n")   # 7 to both; a quoted one is text
    assert params.load(path) == {"evaluate": {"n_splits": 7, "seed": 0, "name": "010"}}


def test_a_base_60_number_is_refused_and_merge_keys_are_read_as_dvc_reads_them(tmp_path):
    # n_splits: 1:30 passed validation as 90 splits (PyYAML's base 60) while `dvc params diff` showed "1:30";
    # a `<<: *anchor` merge key (DVC reads it) was "could not determine a constructor for the tag ...merge".
    path = _write(tmp_path / "p.yaml", b"evaluate:\n  n_splits: 1:30\n")
    with pytest.raises(params.ParamsError, match=r"n_splits = 1:30 \(line 2\) is a base-60 number to PyYAML \(90\) "
                                                 r"and text to DVC; write 90, or quote it if text is meant"):
        params.load(path)
    path.write_text("evaluate:\n  time: '1:30'\n  alphas: [0.1, 1:30.5]\n")
    with pytest.raises(params.ParamsError, match=r"alphas\[1\] = 1:30.5 \(line 3\) is a base-60 number"):
        params.load(path)
    path.write_text("base: &base {steps: 10, lr: 0.1}\nrun:\n  <<: *base\n  lr: 0.2\n")
    assert params.load(path)["run"] == {"steps": 10, "lr": 0.2}
    path.write_text("base: &base {steps: 10}\nrun:\n  <<: *base\n  lr: 0.2\n  lr: 0.3\n")
    with pytest.raises(params.ParamsError, match=r"key 'lr' appears twice \(lines 4 and 5\)"):
        params.load(path)


def test_an_integer_in_exponent_notation_is_told_to_be_written_as_an_integer(tmp_path, monkeypatch):
    # "write it with a dot, e.g. 1.0e1" led straight to "must be an integer".
    message = _error(tmp_path, monkeypatch, {"evaluate.n_splits": "1e1"})
    assert message.endswith("evaluate.n_splits = '1e1' is not allowed; it must be an integer in [1, 1000] (YAML reads "
                            "'1e1' as text: write the integer 10)") and "dot" not in message
    assert "write it with a dot and a signed exponent, e.g. 2.0e-3" in _error(tmp_path, monkeypatch,
                                                                             {"pretrain.contrique.lr": "2e-3"})
    # 1.5e3 is unquoted, yet text to YAML 1.1 (its exponent has no sign): "it is quoted" sent the user nowhere.
    message = _error(tmp_path, monkeypatch, {"pretrain.contrique.lr": "1.5e3"})
    assert "e.g. 1.5e+3" in message and "quoted" not in message
    # A number key is not told to write 5e30 as a 31-digit integer.
    message = _error(tmp_path, monkeypatch, {"pretrain.contrique.lr": "5e30"})
    assert "e.g. 5.0e+30" in message and "integer" not in message


def test_a_key_repeated_in_a_profile_is_refused(tmp_path, monkeypatch):
    # yaml.safe_load kept the last lr silently; a profile is read as params.yaml is.
    profile = _write(tmp_path / "mine.yaml", b"lr: 0.1\nsteps: 10\nlr: 0.5\n")
    with pytest.raises(params.ParamsError) as info:
        _validate(tmp_path, monkeypatch, {"pretrain.contrique.profile": str(profile)})
    assert str(info.value).startswith(f"profile {profile} cannot be read as YAML: key 'lr' appears twice (lines 1 "
                                      "and 3); keep one")
    profile.write_text("steps: 010\n")
    with pytest.raises(params.ParamsError, match="steps = 010 .* which PyYAML reads as 8 and DVC as 10; write 10"):
        _validate(tmp_path, monkeypatch, {"pretrain.contrique.profile": str(profile)})


@pytest.mark.parametrize("model, says", [("contriqe", "contriqe"), ("brisque", "not one encoder file")])
def test_a_finetune_row_that_cannot_be_fine_tuned_is_refused_before_the_stage(tmp_path, monkeypatch, model, says):
    # It passed validation and failed in the finetune stage, after DVC had removed reports/finetune.*.
    message = _error(tmp_path, monkeypatch, {"finetune.model": model})
    assert "finetune.model" in message and says in message


def test_a_pretraining_crop_larger_than_the_corpus_images_is_refused_before_the_stage(tmp_path, monkeypatch):
    # It passed validation and stopped pretrain@contrique with "crop 200 px is larger than the training images".
    message = _error(tmp_path, monkeypatch, {"pretrain.contrique.crop": 200, "synthesize.crop": 96})
    assert "pretrain.contrique.crop = 200 is larger than synthesize.crop = 96" in message
    _validate(tmp_path, monkeypatch, {"pretrain.arniqa.crop": 200, "synthesize.crop": 96})  # ARNIQA reads photos


def test_two_rows_whose_regressors_would_share_a_file_are_refused(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    for name in ("a/enc.pt", "a_enc.pt"):
        (tmp_path / name).write_bytes(b"weights")  # existence is all validation asks of a user's file
    message = _error(tmp_path, monkeypatch, {"models": ["file:a/enc.pt", "file:a_enc.pt"]})
    assert ("models: 'file:a/enc.pt' and 'file:a_enc.pt' map to one regressor file "
            "(data/models/regressors/file_a_enc.pt.npz, where case is ignored); rename one of their files, or list "
            "only one") in message


def test_a_params_file_nested_too_deep_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("report:\n  x: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(params.ParamsError, match="nests deeper than the YAML parser follows"):
        params.load(path)


@pytest.mark.parametrize("written, read", [("yes", "true"), ("on", "true"), ("No", "false"), ("OFF", "false")])
def test_a_yaml_11_boolean_word_is_refused(tmp_path, written, read):
    # PyYAML read extract.bf16: yes as True while DVC (YAML 1.2) showed the text 'yes'.
    path = _write(tmp_path / "p.yaml", f"extract:\n  bf16: {written}\n".encode())
    with pytest.raises(params.ParamsError, match=rf"bf16 = {written} \(line 2\) is {read} to PyYAML and the text "
                                                 rf"'{written}' to DVC; write {read}"):
        params.load(path)
    path.write_text("extract:\n  bf16: true\n  name: 'yes'\n  other: False\n")
    assert params.load(path) == {"extract": {"bf16": True, "name": "yes", "other": False}}


def test_names_that_differ_only_in_case_are_refused_they_share_files_on_macos(tmp_path, monkeypatch):
    entry = {"kind": "generic", "path": "x", "csv": "x.csv", "image_col": "image", "score_col": "mos", "lo": 1,
             "hi": 5, "higher_is_better": True}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "registry.json").write_text(json.dumps({"mine": entry, "Mine": entry}))
    message = _error(tmp_path, monkeypatch, {"datasets": ["mine", "Mine"]}, drop=("evaluate.regressor_dataset",))
    assert "datasets: 'mine' and 'Mine' differ only in case, so their files (data/prepared/Mine, ...)" in message
    for name in ("A.pt", "a.pt"):
        (tmp_path / name).write_bytes(b"weights")
    message = _error(tmp_path, monkeypatch, {"models": ["file:A.pt", "file:a.pt"]})
    assert "models: 'file:A.pt' and 'file:a.pt' map to one regressor file" in message
