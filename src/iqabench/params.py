"""Read and validate ``params.yaml``: one section per DVC stage, plus a few top-level keys.

Every stage reads its settings through :func:`section`, which validates the
whole file first (:func:`validate`, against :mod:`iqabench.params_schema`), so
a typo or an out-of-range value anywhere stops the run with one line naming the
key, the value and what is allowed, before any stage has done any work.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml

from . import io, params_datasets, params_relations, params_schema as schema
from .params_schema import ParamsError  # defined beside the checks of one key or section; importable from here


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The folder that holds ``params.yaml`` (searched upwards from ``start`` or the cwd)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no params.yaml in {here} or its parents; run iqabench from the repository")


def outside_repository(consequence: str, command: str, option: str | None = None) -> str:
    """The one wording for a command run outside the repository: why it cannot go on, and the ways out."""
    return (f"no params.yaml in {Path.cwd()} or its parents, so {consequence}: run `{command}` from the repository "
            f"(any folder in it){f', or pass {option}' if option else ''}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently: a section appended at the end replaced the first. A key
    must be a name (``? [a, b]`` was a TypeError traceback), and an integer has no leading zero (see below)."""

    def construct_mapping(self, node, deep=False):
        # Merge keys (`<<: *base`, which DVC reads too) first: a key of this mapping may override a merged one.
        own = {id(key) for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge"}
        self.flatten_mapping(node)
        seen = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key at line {key_node.start_mark.line + 1} is a {kind} (a '? ' complex key); "
                    "a key is a name: write `name: value`", key_node.start_mark)
            key = self.construct_object(key_node, deep=deep)
            items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for index, item in enumerate(items):
                if isinstance(item, yaml.ScalarNode):
                    self._refuse_yaml11_number(item, key if item is value_node else f"{key}[{index}]")
            if key in seen and seen[key][1] and id(key_node) in own:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key][0] + 1} and "
                    f"{key_node.start_mark.line + 1}); keep one, with every setting in it", key_node.start_mark)
            seen[key] = (key_node.start_mark.line, id(key_node) in own)
        return super().construct_mapping(node, deep=deep)

    def _refuse_yaml11_number(self, node, key) -> None:
        # PyYAML (YAML 1.1) reads a plain 010 as octal 8 and 09 as text, 1:30 as base-60 90, and yes/on as true;
        # DVC (ruamel, YAML 1.2) reads 10, 9 and the texts "1:30" and "yes", so the stage and `dvc exp show` would
        # disagree on the value (007 is 7 to both: harmless).
        if node.style is not None:
            return
        line = node.start_mark.line + 1
        if re.fullmatch(r"[-+]?0[0-9_]+", node.value):
            read, meant = self.construct_object(node), int(node.value.replace("_", ""), 10)
            if read != meant:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key} = {node.value} (line {line}) is an integer written with a leading zero, "
                    f"which PyYAML reads as {read!r} and DVC as {meant}; write {meant}", node.start_mark)
        elif node.tag == "tag:yaml.org,2002:bool" and node.value.lower() not in ("true", "false"):
            read = self.construct_object(node)  # yes/no/on/off: YAML 1.1 booleans, text in YAML 1.2
            raise yaml.constructor.ConstructorError(
                None, None, f"{key} = {node.value} (line {line}) is {str(read).lower()} to PyYAML and the text "
                f"{node.value!r} to DVC; write {str(read).lower()}", node.start_mark)
        elif ":" in node.value and node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
            read = self.construct_object(node)
            raise yaml.constructor.ConstructorError(
                None, None, f"{key} = {node.value} (line {line}) is a base-60 number to PyYAML ({read!r}) and text "
                f"to DVC; write {read!r}, or quote it if text is meant", node.start_mark)


def load(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The file as a mapping; a missing, unreadable or non-YAML file is a one-line ParamsError (they were
    tracebacks: FileNotFoundError outside the repository, IsADirectoryError, UnicodeDecodeError)."""
    try:
        path = Path(path) if path else repo_root() / "params.yaml"
        with open(path, encoding="utf-8") as fh:
            params = yaml.load(fh, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:  # PyYAML's message spans lines (problem, context, the line's marks): one line
        raise ParamsError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8 YAML") from None
    except RecursionError:  # PyYAML composes nested nodes recursively: 5000 '[' were a traceback
        raise ParamsError(f"{path} nests deeper than the YAML parser follows; params.yaml nests a few levels: "
                          "remove the deep nesting") from None
    except IsADirectoryError:
        raise ParamsError(f"{path} is a folder; give the params file, e.g. {Path(path) / 'params.yaml'}") from None
    except FileNotFoundError as err:
        if not err.filename:  # repo_root's: names the folder searched and what to do
            raise ParamsError(str(err)) from None
        raise ParamsError(f"{err.filename} does not exist; give an existing params file (the repository's is "
                          "params.yaml at its root)") from None
    except OSError as err:
        raise ParamsError(f"{path} cannot be read ({err.strerror or err})") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(name: str, path: str | os.PathLike | None = None, optional: bool = False) -> dict[str, Any]:
    """A stage's section, validated and with defaults filled, plus the top-level ``seed``, ``datasets``
    and ``models``. A params error ends the stage with its one-line message (no traceback).
    ``optional``: a section absent from the file is its defaults (e.g. ``niqe``).
    ``SECTION.NAME`` is one entry of a named section: ``pretrain.contrique``."""
    name, _, entry = name.partition(".")
    try:
        params = validate(load(path), where=str(path or "params.yaml"), stage=name)
        if optional and name not in params and name in schema.SECTIONS:
            params[name] = schema.check_section(str(path or "params.yaml"), name, {}, schema.SECTIONS[name], fill=True)
    except ParamsError as err:
        raise SystemExit(f"error: {err}") from None
    if name not in params:
        raise SystemExit(f"error: {path or 'params.yaml'} has no '{name}' section; known sections: "
                         f"{sorted(params)}")
    body = params[name] or {}
    if entry:
        if entry not in body:
            raise SystemExit(f"error: {path or 'params.yaml'}: {name}: has no {entry!r} entry; it has {sorted(body)}")
        body = body[entry]
    merged = {k: params[k] for k in ("seed", "datasets", "models") if k in params}
    # A section's own seed (pretrain.NAME.seed, evaluate.seed) overrides the top-level one; null means "the
    # top-level seed", so a seed study can vary training and splits while the datasets stay fixed.
    merged.update({k: v for k, v in body.items() if not (k == "seed" and v is None)})
    return merged


def validate(params: dict[str, Any], where: str = "params.yaml", stage: str | None = None) -> dict[str, Any]:
    """Check every section present; return a copy with defaults filled. Raises :class:`ParamsError`.

    ``stage`` is the section about to run: ``prepare`` also checks that every listed dataset can be read
    (downloaded, registered, or to be downloaded by the ``download`` stage).
    """
    out = dict(params)
    for key in params:
        if str(key).startswith("pretrain_") and key not in schema.KNOWN_SECTIONS:
            raise ParamsError(f"{where}: unknown top-level key {key!r}: each encoder's settings are an entry of "
                              f"pretrain: now; move them under pretrain: as {str(key)[len('pretrain_'):]}:")
        if key not in schema.KNOWN_SECTIONS:
            raise ParamsError(f"{where}: unknown top-level key {key!r}{schema.did_you_mean(key, schema.KNOWN_SECTIONS)}; "
                              f"known: {', '.join(schema.KNOWN_SECTIONS)}")
    for key, spec in schema.TOP_LEVEL.items():
        if key in params:
            schema.check_value(where, key, params[key], spec)
        elif spec.default is not schema.REQUIRED:
            out[key] = spec.default
    for name in (*schema.SECTIONS, *schema.DATACLASS_SECTIONS):
        if name not in params:
            continue
        body = _mapping(where, name, params[name])
        if name in schema.DATACLASS_SECTIONS:
            out[name] = schema.check_section(where, name, body, schema.dataclass_section(name), fill=False)
        elif schema.SECTIONS[name] is not None:
            out[name] = schema.check_section(where, name, body, schema.SECTIONS[name], fill=True)
    for name in schema.NAMED_SECTIONS:
        if name in params:
            out[name] = _check_named_section(where, name, params[name])
    if "datasets" in out:
        params_datasets.check_names(where, out, ready=stage == "prepare")
    if "check" in params:
        check_gate_section(where, params["check"], out.get("datasets"))
    params_datasets.check_downloads(where, out.get("download") or [])
    if "models" in out:
        _check_models(where, out["models"])
        _check_encoders(where, out["models"], out.get("pretrain") or {})
    params_relations.check(where, out)
    evaluate = out.get("evaluate")
    if evaluate and evaluate.get("regressor_dataset") is None and out.get("datasets"):
        evaluate["regressor_dataset"] = out["datasets"][0]   # `iqabench score`'s regressors: the first set listed
    _check_devices(where, out)
    if stage is None and out.get("prepare") and out.get("datasets"):
        # Only in the fingerprint stage (stage None), which runs before DVC deletes prepare@NAME's outputs: it
        # decodes the photographs (0.15-0.3 s), which the stages after it need not repeat.
        params_datasets.check_patch_fits(where, out["prepare"]["patch_size"], out["datasets"])
    return out


def _check_named_section(where: str, name: str, body: Any) -> dict:
    """``pretrain:``: encoder name -> its settings, each checked as one dataclass section (no defaults filled:
    the dataclass has them)."""
    from .models.encoders import TRAINED_NAME

    keys = schema.dataclass_section(name)
    if not isinstance(body, dict) or not body:
        raise ParamsError(f"{where}: {name}: must map each encoder to its settings, e.g. {name}: {{contrique: "
                          f"{{steps: 600}}}}; got {body!r} (the extract stage reads what {name}@NAME trains)")
    flat = sorted(k for k, v in body.items() if k in keys and not isinstance(v, dict))
    if flat:
        raise ParamsError(f"{where}: {name}.{flat[0]} is a setting, but {name}: maps encoder names to their "
                          f"settings; move the keys under an encoder's name, e.g. {name}: contrique: {flat[0]}: ...")
    out = {}
    for entry, settings in body.items():
        if not isinstance(entry, str) or not TRAINED_NAME.fullmatch(entry):
            raise ParamsError(f"{where}: {name}: {entry!r} cannot name an encoder: use letters, digits, '_' and '-' "
                              f"(it names the file data/encoders/NAME.pt and the stage {name}@NAME)")
        settings = {} if settings is None else settings
        if not isinstance(settings, dict):
            raise ParamsError(f"{where}: {name}.{entry} must be a mapping of settings, got {settings!r}")
        out[entry] = schema.check_section(where, f"{name}.{entry}", settings, keys, fill=False)
        if out[entry].get("profile"):  # its overrides replace these settings in the stage: same keys, same ranges
            check_profile(out[entry]["profile"], f"{name}.{entry}", out[entry], where)
        else:
            _check_pretrain_source(where, f"{name}.{entry}", out[entry])
    return out


def check_profile(path: str | os.PathLike, key: str, settings: dict, where: str = "params.yaml") -> dict:
    """The overrides of the pretrain profile at ``path``, checked as the settings of ``key`` (``pretrain.NAME``,
    whose ``settings`` they are merged over) are: same keys, same ranges, a source the objective can read.
    One function for ``pretrain.NAME.profile`` and stages/pretrain.py's ``--profile``. Raises ParamsError."""
    profile = read_profile(path)
    schema.check_section(str(path), key, profile, schema.dataclass_section(key.partition(".")[0]), False)
    source_from = str(path) if {"source", "objective", "source_dir"} & set(profile) else where
    _check_pretrain_source(source_from, key, {**settings, **profile})
    return profile


def _check_pretrain_source(where: str, key: str, settings: dict) -> None:
    """The sources each objective reads (training.sources, training.arniqa), as the stage would find them."""
    from .training.arniqa import SOURCES
    from .training.pretrain import PretrainConfig

    objective = settings.get("objective", PretrainConfig.objective)
    source = settings.get("source", PretrainConfig.source)
    allowed = SOURCES if objective == "arniqa" else ("corpus", "kadis700k", "folder")
    if source not in allowed:
        said = f"{source!r}" if "source" in settings else f"{source!r} (the default)"
        raise ParamsError(f"{where}: {key}.source is {said}, which objective {objective!r} cannot read; set "
                          f"{key}.source to one of {list(allowed)}")
    if source == "folder" and not settings.get("source_dir"):
        raise ParamsError(f"{where}: {key}.source is 'folder' but {key}.source_dir is empty; set source_dir to "
                          "the folder of pristine images")


def read_profile(path: str | os.PathLike) -> dict:
    """The overrides of the pretrain profile at ``path``, read as params.yaml is; raises ParamsError.

    The one reader of profiles: the schema's checks (:func:`check_profile`) and the stage that trains read the
    same mapping. Unchecked here: the keys and their ranges (that is :func:`check_profile`)."""
    if not Path(path).is_file():  # "does not exist" misled for /dev/null or a folder
        what = ("is a folder" if Path(path).is_dir() else "does not exist" if not Path(path).exists()
                else f"is {io.NOT_REGULAR}")
        raise ParamsError(f"pretrain profile {path} {what}; give a YAML file of overrides (see profiles/ for the "
                          "shipped ones)")
    try:
        # The params loader: a repeated key (PyYAML keeps the last silently), a complex key, a leading zero.
        overrides = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParamsError(f"profile {path} cannot be read as YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(overrides, dict):
        raise ParamsError(f"profile {path}: a profile is a mapping of pretrain keys, got {type(overrides).__name__}")
    return overrides


def _check_encoders(where: str, models: list[str], trained: dict) -> None:
    """Every row in ``models`` that reads an encoder trained here names a key of ``pretrain:``, so the stage
    that writes it exists. An encoder no listed row reads is allowed: it is trained all the same."""
    from . import rows

    for name, key in rows.pretrain_keys(models).items():
        if key not in trained:
            raise ParamsError(f"{where}: models: {name!r} reads the encoder trained under pretrain.{key}, but "
                              f"pretrain: has no {key!r} entry (it has {sorted(trained)}); add `{key}:` with its "
                              f"settings under pretrain: (docs/contrique.md, docs/arniqa.md) or remove {name!r} "
                              "from models:")


def _mapping(where: str, name: str, body: Any) -> dict:
    """A section's body: a mapping of keys (an empty section, null in YAML, is an empty one)."""
    body = {} if body is None else body
    if not isinstance(body, dict):
        raise ParamsError(f"{where}: section {name!r} must be a mapping of keys, got {body!r}")
    return body


def check_gate_section(where: str, body: Any, datasets: list[str] | None = None) -> dict:
    """``check:``, read by `iqabench check`, which checks it here too (gate_inputs.check_settings): each key in
    range, and each key of ``check.tolerance`` is ``default``, a dataset or an ``A->B`` pair, so a misspelt
    dataset does not silently leave it on the default. ``datasets``: the file's ``datasets:`` list."""
    body = schema.check_section(where, "check", _mapping(where, "check", body), schema.CHECK, fill=False)
    tolerance = body.get("tolerance")
    if not isinstance(tolerance, dict):
        return body
    # Any dataset iqabench knows, listed or not: `dvc exp run -S datasets=[...]` must not need a check: edit.
    known = {*(datasets or []), *params_datasets.known_names()}
    for key, rule in tolerance.items():
        parts = str(key).split("->")
        if key != "default" and not (len(parts) <= 2 and set(parts) <= known):
            fixed = "->".join((difflib.get_close_matches(part, sorted(known), n=1) or [part])[0] for part in parts)
            hint = f" (did you mean {fixed!r}?)" if fixed != key and set(fixed.split("->")) <= known else ""
            raise ParamsError(f"{where}: check.tolerance.{key} names no dataset{hint}; a key is default, a dataset "
                              f"(datasets: {datasets or []}) or 'A->B', a train->test pair of them (a "
                              "misspelt key would leave its dataset on the default tolerance)")
        schema.check_value(where, f"check.tolerance.{key}", rule, schema.TOLERANCE)
    return body


def _check_devices(where: str, params: dict) -> None:
    """``device: cuda`` without a GPU fails in runtime.setup, after DVC deleted the stage's outputs: refuse it
    here. torch is asked only when a section asks for cuda (it is imported by then: encoders, FR metrics)."""
    asked = [f"{name}.device" for name, body in params.items()
             if isinstance(body, dict) and body.get("device") == "cuda"]
    for name in schema.NAMED_SECTIONS:
        asked += [f"{name}.{entry}.device" for entry, body in (params.get(name) or {}).items()
                  if isinstance(body, dict) and body.get("device") == "cuda"]
    if asked:
        import torch

        if not torch.cuda.is_available():
            raise ParamsError(f"{where}: {asked[0]} = 'cuda' but torch sees no GPU on this machine "
                              "(torch.cuda.is_available() is False); use auto (the GPU when there is one) or cpu")


def _check_models(where: str, models: list[str]) -> None:
    """Every row is declared (:mod:`iqabench.rows`), and a file the user supplies exists."""
    from . import rows

    for name in models:
        try:
            row = rows.get(name)
        except rows.UnknownRowError as err:
            raise ParamsError(f"{where}: models: {name!r} is not a known row{schema.did_you_mean(name, rows.names())}: "
                              f"{err}") from None
        except ValueError as err:
            raise ParamsError(f"{where}: models: {name!r} cannot be built: {err}") from None
        missing = [str(p) for p in row.artifacts if row.stage is None and not Path(p).is_file()]
        if missing:  # is_file: `file:` (an empty path) or a folder is no weights file either
            first = Path(missing[0])
            what = ("is a folder, not a file" if first.is_dir() else
                    f"is {io.NOT_REGULAR}" if first.exists() else "does not exist")
            raise ParamsError(f"{where}: models: {name!r} reads {missing[0]!r}, which {what}; put the file there or "
                              "remove the row from models:")
