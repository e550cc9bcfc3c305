"""Stage `fingerprint`: one small JSON per input that DVC cannot see, so that changing it re-runs its readers.

    python stages/fingerprint.py --out data/fingerprints  ->  OUT/{DATASET,niqe,pretrain-NAME,models,splits}.json

DATASET.json for every dataset in `datasets:` (prepare@DATASET depends on it), niqe.json for
fit_niqe's pristine photos (KADIS-700k when data/raw/kadis700k exists), pretrain-NAME.json for
the image folders of each encoder NAME in `pretrain:` (pretrain@NAME depends on it; its
`profile` applied), models.json for what the rows in `models:` read that no stage writes (extract
depends on it), splits.json for the folder of `evaluate.arniqa_splits` (evaluate and mixed depend
on it). The stage is always run (it lists files, it reads no pixels); see
iqabench.datasets.fingerprint for what a fingerprint holds.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from iqabench import baselines, io, params, params_schema, rows, stage_paths
from iqabench.models import published_classic
from iqabench.datasets import fingerprint


def pretrain_settings(section: dict) -> dict:
    """The section with its profile's overrides, as stages/pretrain.py merges them. params.validate has read the
    profile (params.check_profile) by now: it exists and is a mapping."""
    profile = section.get("profile")
    return {**section, **(params.read_profile(profile) if profile else {})}


def row_inputs(models: list[str]) -> dict:
    """Per row, by sha256, what it reads that DVC cannot see: files the user supplies (weights/, `file:PATH`),
    data an installed package ships (a package upgrade can change them) and, for a row declared outside
    iqabench (entry point, `py:`), the module that builds it. Replacing any of them re-runs extract."""
    out = {}
    for name in models:
        row = rows.get(name)
        files = {str(p): p for p in row.artifacts if row.stage is None}
        build = row.build
        while isinstance(build, functools.partial):  # the function it wraps is the code (not functools)
            build = build.func
        module = getattr(build, "__module__", "") or ""
        code = getattr(getattr(build, "__code__", None), "co_filename", None)  # where the builder is defined
        code = code or getattr(sys.modules.get(module), "__file__", None)      # a callable object: its module
        if code and not module.startswith("iqabench"):
            files[f"code:{module}"] = Path(code)
        declared = rows.declared_in(name)  # the factory's module: the Row's settings and preprocessing
        declared_file = getattr(sys.modules.get(declared or ""), "__file__", None)
        if declared_file and not declared.startswith("iqabench"):
            files[f"code:{declared}"] = Path(declared_file)
        for distribution, relative in row.package_files:
            try:
                files[f"{distribution}:{relative}"] = published_classic.package_file(distribution, relative)
            except FileNotFoundError:  # extract names what to install; here the entry only has to say "missing"
                files[f"{distribution}:{relative}"] = None
        out[name] = {key: io.sha256_file(path) if path is not None and path.is_file() else "missing"
                     for key, path in files.items()}
    return {name: found for name, found in out.items() if found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stage_paths.option(parser, "--out", "DIR", "written: one KEY.json per input")
    out = parser.parse_args(argv).out
    try:  # a bad pretrain: entry would otherwise name a fingerprint file after it
        config = params.validate(params.load())
    except params.ParamsError as err:
        raise SystemExit(f"error: {err}") from None
    # validate fills prepare's defaults when the section is there; without it, the schema's default root.
    shared_root = (config.get("prepare") or {}).get("shared_root",
                                                    params_schema.SECTIONS["prepare"]["shared_root"].default)
    prints = {name: fingerprint.dataset(name, shared_root) for name in config.get("datasets") or []}
    prints["niqe"] = fingerprint.pristine("niqe", baselines.pristine_source())
    for name, section in (config.get("pretrain") or {}).items():
        cfg = pretrain_settings(section or {})
        # PretrainConfig's defaults: importing it (iqabench.training) would make this stage depend on the trainer.
        prints[f"pretrain-{name}"] = fingerprint.pristine(f"pretrain.{name}", str(cfg.get("source", "corpus")),
                                                          str(cfg.get("source_dir", "")), str(cfg.get("authentic", "")))
    prints["models"] = row_inputs(list(config.get("models") or []))
    split_files = (config.get("evaluate") or {}).get("arniqa_splits")
    prints["splits"] = fingerprint.folder(split_files) if split_files else {}
    try:
        for key, content in prints.items():
            io.write_json(out / f"{key}.json", content)
    except io.OutputWriteError as err:  # a full disk or a read-only folder: one line naming the file
        raise SystemExit(f"error: fingerprint: {err}") from None
    print(f"fingerprints of {len(prints)} input(s) -> {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
