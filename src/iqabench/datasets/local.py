"""Registering a local copy of a dataset without copying it.

``data/registry.json`` maps a dataset name to the folder that holds it (plus,
for a generic dataset, where its scores are). Nothing is registered until the
copy has passed every check: score file as published, image count, every
listed image present and decodable.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from .. import io, manifest
from .build import (is_file, why_missing, build_from_spec, check_scores_vary, join_identical_copies,
                    list_images)
from .registry import SHARED_SUBSETS, SPECS, get_spec
from .scorefiles import DatasetError, line_of, name_column, numeric_column, read_csv_columns

DEFAULT_REGISTRY = Path("data/registry.json")
DATA_ROOT = Path("data/raw")  # downloads land in DATA_ROOT/NAME
LOCK_WAIT = 60.0  # seconds a registration waits for another one's registry write
KADIS_ROOT = DATA_ROOT / "kadis700k"  # pristine photos: pretraining and the NIQE fit read them when present
# A dataset name becomes a folder (data/prepared/NAME) and a DVC stage key (prepare@NAME): no '/', '..' or dots.
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # 64 at most: it is part of file names


# What every registry entry needs, by kind: a hand-edited entry that lacks one fails here, by name,
# instead of as a KeyError wherever it is first read. A known dataset's image count is what `datasets add`
# counted (and, below the published count, had the user accept with --partial): a hand-written path alone
# skipped those checks.
REQUIRED = {"spec": ("path", "images"), "generic": ("path", "csv", "image_col", "score_col", "lo", "hi", "higher_is_better")}
TEXT_KEYS = ("path", "csv", "image_col", "score_col", "content_col", "score_type")  # strings wherever they are given


def read_registry(registry_path: Path = DEFAULT_REGISTRY) -> dict:
    path = Path(registry_path)
    if path.is_dir():
        raise DatasetError(f"registry {path} is a folder; give the JSON file (default {DEFAULT_REGISTRY})")
    if io.is_special(path):  # written over, /dev/null as root would become a JSON file
        raise DatasetError(f"registry {path} is {io.NOT_REGULAR}; give a JSON file's path (default "
                           f"{DEFAULT_REGISTRY})")
    if not path.is_file():
        return {}
    try:
        registry = io.loads_json(path.read_text(encoding="utf-8"), nesting="a registry nests 3 levels")
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); fix it or delete it and register again") from err
    except io.JSONShapeError as err:
        raise DatasetError(f"{path}: {err}" + ("; fix it or delete it and register again" if err.deep else "")
                           ) from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not UTF-8 text (a binary file?); restore it or delete it and register "
                           "again") from None
    except OSError as err:
        raise DatasetError(f"{path} cannot be read ({err.strerror or err}); check its permissions") from err
    if not isinstance(registry, dict):
        raise DatasetError(f"{path}: expected a JSON object of dataset entries, got {type(registry).__name__}; "
                           "fix it or delete it and register again")
    for name, entry in registry.items():
        if not DATASET_NAME.fullmatch(name):  # '../evil' or 'a/b' would name folders outside data/prepared
            raise DatasetError(f"{path}: {name!r} cannot name a dataset (up to 64 letters, digits, '_' and '-', "
                               "starting with a letter or digit: it names the folder data/prepared/NAME); rename "
                               "or remove that entry")
        problem = _entry_problem(name, entry)
        if problem:
            again = (f"iqabench datasets add {name} --from PATH" if name in SPECS
                     else f"iqabench datasets add-generic {name} --folder DIR --csv FILE ...")
            raise DatasetError(f"{path}: entry {name!r} {problem}; register it again with `{again}`, or remove "
                               "the entry")
    return registry


def _entry_problem(name: str, entry) -> str | None:
    """What is wrong with a (hand-edited) registry entry, in words; None when it can be read."""
    if not isinstance(entry, dict):
        return f"is {entry!r}, not a mapping of settings"
    kind = entry.get("kind", "spec")
    if kind not in REQUIRED:
        return f"has kind {kind!r}; it must be one of {sorted(REQUIRED)}"
    if kind == "spec" and name not in SPECS:
        return f"has kind 'spec', but {name!r} is not a known dataset (a dataset of your own is kind 'generic')"
    missing = [key for key in REQUIRED[kind] if key not in entry]
    if missing:
        return f"lacks {', '.join(map(repr, missing))} (kind {kind!r})"
    # "path": 123 was a TypeError traceback, and "path": "" silently the working folder.
    texts = [key for key in TEXT_KEYS if key in entry and (key in REQUIRED[kind] or entry[key] is not None)]
    for key in texts:
        if not isinstance(entry[key], str) or not entry[key].strip():
            return f"has {key} = {json.dumps(entry[key])[:60]}; it must be a non-empty string"
    if "images" in entry and (isinstance(entry["images"], bool) or not isinstance(entry["images"], int)
                              or entry["images"] < 0):
        return f"has images = {entry['images']!r}; it must be the number of images registered"
    if kind == "generic":
        bad = [k for k in ("lo", "hi") if isinstance(entry[k], bool) or not isinstance(entry[k], (int, float))
               or not math.isfinite(entry[k])]
        if bad or not entry["hi"] > entry["lo"]:
            return f"has lo = {entry['lo']!r}, hi = {entry['hi']!r}; they must be finite numbers with hi > lo"
        # Read as a truth value, the string "no" (or "false") would be true and flip every score.
        if not isinstance(entry["higher_is_better"], bool):
            return (f"has higher_is_better = {entry['higher_is_better']!r}; it must be the JSON boolean true or "
                    "false (unquoted)")
    return None


def _save_entry(name: str, entry: dict, registry_path: Path) -> None:
    path = Path(registry_path)
    try:
        with _registry_locked(path):  # two `datasets add` at once each wrote back what it had read: an entry lost
            registry = read_registry(path)
            earlier, registry[name] = registry.get(name), entry
            io.write_json(path, dict(sorted(registry.items())))  # atomic: a failed write leaves the old file
    except OSError as err:
        raise DatasetError(f"cannot write the registry {path} ({err.strerror or err}); nothing was registered. "
                           f"Make {path.parent} a folder you can write to (and {path.name} in it writable), then "
                           "register again") from None
    if earlier is not None:  # the way to fix a registration is to register again: said, not silent
        where = ", ".join(f"{label} {earlier[key]}" for key, label in (("csv", "csv"), ("path", "folder"))
                          if key in earlier)
        warnings.warn(f"{name}: replaces the earlier registration of {name} ({where})", stacklevel=3)


@contextlib.contextmanager
def _registry_locked(path: Path):
    """An exclusive lock on ``NAME.lock`` beside the registry (filelock: flock on POSIX, msvcrt on Windows),
    waited for up to LOCK_WAIT s; a registry linked to a shared one is locked beside the shared one."""
    target = io.destination(path)
    lock = target.with_name(f"{target.name}.lock")  # no leading dot: not a temporary file of io.atomic_path
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(lock, timeout=LOCK_WAIT):
            yield
    except Timeout:
        raise DatasetError(f"{lock} is still locked after {LOCK_WAIT:g} s: another registration into {path} is "
                           "running; wait for it to finish (or stop it), then register again") from None


def _check_pixels(name: str, images, progress: bool) -> None:
    from ..images import check_images  # torch: imported only when pixels are checked
    report = check_images(images, progress=progress, label=f"{name}: checking images")
    if report.unreadable:
        listed = io.listed(f"{p}: {why}" for p, why in report.unreadable)
        raise DatasetError(f"{name}: {len(report.unreadable)} image(s) cannot be decoded (unreadable or "
                           f"truncated):\n  {listed}\nReplace them from the original archive and register again")
    if report.too_small:  # extract would fail on them later, naming no file
        from ..images import MIN_SIDE
        listed = io.listed(f"{p}: {w} x {h} px" for p, w, h in report.too_small)
        raise DatasetError(f"{name}: {len(report.too_small)} image(s) are smaller than {MIN_SIDE} px on a side, "
                           f"which the models need:\n  {listed}\nRemove them from the score file (or "
                           "replace them) and register again")
    if report.converted:
        warnings.warn(f"{name}: non-RGB images will be converted when loaded: {report.conversion_note()}",
                      stacklevel=3)


def register(name: str, path: Path, *, registry_path: Path = DEFAULT_REGISTRY, allow_partial: bool = False,
             check_pixels: bool = True, progress: bool = True) -> dict:
    """Validate the local copy of a known dataset at ``path`` and record it in the registry."""
    spec = get_spec(name)
    read_registry(registry_path)  # a broken registry is said before the copy is checked
    path = _resolve(path, name, "--from")
    if spec.parser is None:
        images = [str(p) for p in list_images(name, path)]
    else:
        frame = build_from_spec(spec, path)
        images = frame["image"].tolist()
    partial = len(images) != spec.n_images
    if partial:
        message = (f"{name}: {path} has {len(images)} rated image(s); the published dataset has "
                   f"{spec.n_images}")
        if not allow_partial:
            raise DatasetError(f"{message}. Point at the complete copy, or pass --partial to register a subset")
        if spec.parser is not None:  # a subset of one score (one image, say) ranks nothing: no SRCC exists on it
            check_scores_vary(name, frame["raw_score"].to_numpy(), f"the partial copy {path}")
    if check_pixels:
        _check_pixels(name, images, progress)
    if partial:
        warnings.warn(f"{message}; registered as a partial copy", stacklevel=2)
    entry = {"path": str(path), "kind": "spec", "images": len(images), "partial": partial,
             "registered": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _save_entry(name, entry, registry_path)
    return entry


def register_generic(name: str, folder: Path, csv: Path, image_col: str, score_col: str, lo: float, hi: float,
                     higher_is_better: bool | None, *, score_type: str = "MOS", content_col: str | None = None,
                     registry_path: Path = DEFAULT_REGISTRY, check_pixels: bool = True, progress: bool = True) -> dict:
    """Register any other dataset: images under ``folder``, scores in ``csv`` on [lo, hi].

    ``content_col`` names the column that says which images share a scene (e.g. the reference image of a
    synthetic set), so that splits keep them on one side; without it every image is its own content.
    ``higher_is_better`` None (no direction given) is higher-is-better, refused for a DMOS (usually lower)."""
    if name in SPECS:
        raise DatasetError(f"{name!r} is a known dataset; use `iqabench datasets add {name} --from PATH`")
    if name in SHARED_SUBSETS:  # prepare would read those and never this registration (embedded names: the CLI)
        raise DatasetError(f"{name!r} is one of iqabench's own datasets; register yours under another name")
    if not DATASET_NAME.fullmatch(name):
        raise DatasetError(f"{name!r} cannot name a dataset: use up to 64 letters, digits, '_' and '-', starting "
                           "with a letter or digit (it names the folder data/prepared/NAME and the stage prepare@NAME)")
    if not score_type.strip():  # it labels the scale in every table and manifest ("DMOS [0, 100]")
        raise DatasetError(f"{name}: --score-type is empty; give the kind of score, e.g. --score-type MOS or DMOS")
    if higher_is_better is None and "DMOS" in score_type.upper():  # defaulted to higher: correlations flipped sign
        raise DatasetError(f"{name}: --score-type {score_type} is usually lower-is-better (a difference from the "
                           "reference image, as LIVE's and CSIQ's DMOS), so the direction is not assumed; pass "
                           "--lower-is-better (usual for DMOS) or --higher-is-better")
    # Checked before anything is read: the scale maps raw scores to [0, 1] (an infinite end maps all to one value).
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DatasetError(f"{name}: --lo ({lo:g}) and --hi ({hi:g}) must be finite numbers; give the lowest and "
                           "highest score the rating scale allows, e.g. --lo 1 --hi 5")
    if not math.isfinite(hi - lo):  # --lo -1e308 --hi 1e308: the span overflows and every score maps to 0
        raise DatasetError(f"{name}: --lo ({lo:g}) to --hi ({hi:g}) is wider than a float can hold; give the lowest "
                           "and highest score the rating scale allows, e.g. --lo 1 --hi 5")
    if not hi > lo:
        raise DatasetError(f"{name}: --hi ({hi:g}) must be greater than --lo ({lo:g}); give the lowest and highest "
                           "score the rating scale allows, e.g. --lo 1 --hi 5")
    named = [c for c in (image_col, score_col, content_col) if c]
    if len(set(named)) < len(named):
        raise DatasetError(f"{name}: --image-col, --score-col and --content-col must name different columns, got "
                           f"{named}")
    registry = read_registry(registry_path)  # also: a broken registry is said before any work
    registered = name in registry
    alike = [other for other in (*SPECS, *SHARED_SUBSETS, *registry) if other != name and
             other.casefold() == name.casefold()]
    if alike:  # macOS and Windows file systems ignore case: data/prepared/NAME would be the other's folder
        raise DatasetError(f"{name!r} differs from the dataset {alike[0]!r} only in case, and their folders "
                           f"(data/prepared/{name}) would be one on macOS and Windows; choose another name")
    folder, csv = _resolve(folder, name, "--folder"), _resolve(csv, name, "--csv")
    entry = {"path": str(folder), "kind": "generic", "csv": str(csv), "image_col": image_col, "score_col": score_col,
             "lo": float(lo), "hi": float(hi), "higher_is_better": higher_is_better is None or bool(higher_is_better),
             "score_type": score_type, **({"content_col": content_col} if content_col else {})}
    frame = generic_manifest(name, entry, registered=registered)
    if check_pixels:
        _check_pixels(name, frame["image"], progress)
    entry.update(images=len(frame), partial=False,
                 registered=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _save_entry(name, entry, registry_path)
    return entry


def generic_manifest(name: str, entry: dict, *, registered: bool = True) -> pd.DataFrame:
    """The manifest of a generic entry; ``registered``: ``name`` is in the registry already (prepare reads it
    long after registration, and a moved copy says how to register it again)."""
    csv, folder = Path(entry["csv"]), Path(entry["path"])
    again = (f"; if it moved, register it again with `iqabench datasets add-generic {name} --folder DIR --csv "
             "FILE ...`" if registered else "")
    if folder.is_file():
        raise DatasetError(f"{name}: image folder {folder} is a file, not a folder; give the folder that holds the "
                           "images with --folder")
    if not folder.is_dir():
        raise DatasetError(f"{name}: image folder {folder} does not exist{again}")
    if not csv.is_file():
        raise DatasetError(f"{name}: score file {csv} " + ("is a folder; give the CSV file in it with --csv"
                                                          if csv.is_dir() else f"does not exist{again}"))
    columns = [entry["image_col"], entry["score_col"], *([entry["content_col"]] if entry.get("content_col") else [])]
    # Only an empty cell is missing; a literal NaN/NA/null stays text, so the error quotes what is there.
    # read_csv_columns reads every column as text (a name column of numbers would become floats: 2 -> "2.0"),
    # and index_col=False stops pandas from taking a row's extra first field as an index and shifting every column.
    table = read_csv_columns(csv, name, columns, keep_default_na=False, na_values=[""], index_col=False,
                             remedy="name its columns with --image-col and --score-col (and --content-col)")
    names = name_column(table, entry["image_col"], csv, name)
    raw = numeric_column(table, entry["score_col"], csv, name)
    lines = [line_of(table, row) for row in range(len(table))]
    images = [str(_inside(folder, n, csv, line, name)) for line, n in zip(lines, names)]
    _check_distinct(images, lines, csv, name)
    _check_listed(name, names, images, lines, csv, folder)
    check_scores_vary(name, np.asarray(raw), csv)
    _check_in_scale(name, np.asarray(raw), entry["lo"], entry["hi"], csv, entry["score_col"], lines)
    content = None
    if entry.get("content_col"):  # blank cells name their line, like blank image names
        content = [str(c) for c in _content_column(table, entry["content_col"], csv, name)]
        if len(set(content)) < 2:  # content-disjoint splits need two contents; evaluate said so, stages later
            raise DatasetError(f"{name}: column {entry['content_col']!r} of {csv} holds one value ({content[0]!r}) "
                               "for every image, so no split can keep contents apart; name the column that tells "
                               "scenes apart, or leave --content-col out (each image its own content)")
    frame = manifest.make(name, images, raw, score_type=entry["score_type"], lo=entry["lo"], hi=entry["hi"],
                          higher_is_better=entry["higher_is_better"], content_id=content,
                          score_source=f"human {entry['score_type']} (from {csv.name}, registered locally)")
    return join_identical_copies(name, manifest.validate(frame, where=f"{name} manifest from {csv}"))


def _resolve(path: Path, name: str, option: str) -> Path:
    """``path`` made absolute through its links; a link that leads back to itself is said, with the option."""
    try:
        resolved = Path(path).resolve()
    except (RuntimeError, OSError):  # Python < 3.13: RuntimeError("Symlink loop"); later versions: OSError ELOOP
        raise DatasetError(f"{name}: {option} {path} is a symbolic link that leads back to itself (a link loop); "
                           f"give the real {'file' if option == '--csv' else 'folder'}") from None
    # Registry and manifests hold UTF-8 text: a byte like \xff is a surrogate in a str (was a pyarrow traceback).
    bad = next((i for i, part in enumerate(resolved.parts) if any("\ud800" <= c <= "\udfff" for c in part)), None)
    if bad is not None:
        above = shlex.quote(str(Path(*resolved.parts[:bad])))  # the folder whose entries convmv renames
        raise DatasetError(f"{name}: {option} {_shown(resolved)} is not UTF-8 (the name "
                           f"'{_shown(resolved.parts[bad])}' holds a byte that is not, e.g. a Latin-1 letter), and "
                           "the registry and manifests store paths as UTF-8 text; rename it, e.g. `convmv -f latin1 "
                           f"-t utf8 -r --notest {above}`, and register again")
    return resolved


def _shown(path) -> str:
    """``path`` for a one-line message (io.shown_path), a byte that is not UTF-8 written as ``\\xff``."""
    return io.shown_path(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _inside(folder: Path, relative: str, csv: Path, line: int, name: str) -> Path:
    """``folder / relative``, refused when it points outside ``folder`` (``../x.jpg``, an absolute path):
    a registered dataset is its folder, and a row elsewhere would read files nobody chose to include."""
    path = Path(os.path.normpath(folder / relative))
    if Path(relative).is_absolute() or not path.is_relative_to(Path(os.path.normpath(folder))):
        raise DatasetError(f"{name}: {csv} line {line}: image {relative!r} is outside --folder {folder}; "
                           "image names must be relative paths inside that folder")
    return path


def _check_listed(name: str, names, images: list[str], lines: list[int], csv: Path, folder: Path) -> None:
    """Every row's image is there (build.check_images_exist, whose remedy, re-download, is not a user CSV's): the
    missing are named by line, and names written with Windows separators ('sub\\a.png') are said to be so."""
    missing = [i for i, path in enumerate(images) if not is_file(path)]
    windows = [i for i in missing if "\\" in names[i]]  # on Linux and macOS '\\' is a letter of a name
    listings, shown = {}, windows or missing
    rows = io.listed(f"line {lines[i]}: " + (names[i] if windows else why_missing(images[i], listings)) for i in shown)
    if windows:
        raise DatasetError(f"{name}: {csv}: {len(windows)} of {len(images)} listed image name(s) use '\\' (Windows "
                           f"separators) and name no file:\n  {rows}\nWrite them with '/' in the CSV (e.g. "
                           f"'{names[windows[0]].replace(chr(92), '/')}'), then register again")
    if missing:
        folders = " or are folders" if any(Path(images[i]).is_dir() for i in missing) else ""
        raise DatasetError(f"{name}: {csv}: {len(missing)} of {len(images)} listed image(s) are missing{folders}:\n  "
                           f"{rows}\nFix those rows of {csv} (image names are relative to --folder {folder}) or put "
                           "the images there, then register again")


def _check_in_scale(name: str, raw: np.ndarray, lo: float, hi: float, csv: Path, column: str,
                    lines: list[int]) -> None:
    """The user declared this scale (a published set's is ours, and only warns: build.warn_out_of_range): a
    score outside it is a wrong --lo/--hi or a wrong row, and its normalised score would leave [0, 1]."""
    outside = np.flatnonzero((raw < lo) | (raw > hi))
    if outside.size:
        rows = io.listed((f"line {lines[i]}: {raw[i]:g}" for i in outside), sep=", ")
        raise DatasetError(f"{name}: {csv}: {outside.size} '{column}' score(s) outside the declared range "
                           f"[{lo:g}, {hi:g}] ({rows}); set --lo and --hi to the lowest and highest score "
                           "your rating scale allows, or fix those rows")


def _content_column(table: pd.DataFrame, column: str, csv: Path, name: str) -> pd.Series:
    values = table[column]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    if blank.any():
        line = line_of(table, int(np.flatnonzero(blank.to_numpy())[0]))
        raise DatasetError(f"{name}: {csv} line {line}: empty '{column}' (--content-col); every image needs the "
                           "content (scene or reference) it shows")
    return values.astype(str).str.strip()


def _check_distinct(images: list[str], lines: list[int], csv: Path, name: str) -> None:
    """Two rows naming one file (``a.png`` and ``./a.png``, or a link to it): the same image rated twice, and a
    manifest whose paths (stored resolved) repeat, which no later stage can read."""
    first: dict[str, int] = {}
    for line, path in zip(lines, images):
        real = os.path.realpath(path)  # a NUL byte, on which it would raise, is refused by name_column
        if real in first:
            raise DatasetError(f"{name}: {csv} line {line}: image {path!r} is the file of line {first[real]} again "
                               "(spelled differently, or a link to it); remove the duplicate")
        first[real] = line


def how_to_get(name: str) -> str:
    """The command that makes dataset ``name`` available, by what iqabench knows about it."""
    spec = SPECS.get(name)
    if spec is None:
        return (f"it is not a known dataset, and no local copy is registered under that name: register one with "
                f"`iqabench datasets add-generic {name} --folder DIR --csv SCORES.csv --lo LO --hi HI` (known "
                "datasets: `iqabench datasets`)")
    if spec.remotes:
        return (f"run `iqabench datasets download {name}` (or list it in `download:` in params.yaml so that "
                f"`dvc repro` fetches it), or register a copy you have with `iqabench datasets add {name} --from PATH`")
    return f"it has no public URL ({spec.access}); get the files there, then run `iqabench datasets add {name} --from PATH`"


def registered_manifest(name: str, registry_path: Path = DEFAULT_REGISTRY) -> pd.DataFrame:
    """The manifest of a registered dataset, known or generic."""
    registry = read_registry(registry_path)
    if name not in registry:
        raise DatasetError(f"{name}: not here yet; {how_to_get(name)}")
    entry = registry[name]
    generic = entry.get("kind") == "generic"
    frame = generic_manifest(name, entry) if generic else build_from_spec(get_spec(name), Path(entry["path"]))
    if "images" in entry and len(frame) != entry["images"]:  # the copy changed (a full set became a subset): said
        where = f"{entry['path']} with {entry['csv']}" if generic else entry["path"]
        again = _again(name, entry, len(frame))
        raise DatasetError(f"{name}: {where} now holds {len(frame)} rated images, {entry['images']} when it was "
                           f"registered; if the copy changed on purpose, register it again (`{again}`)")
    return frame


def _again(name: str, entry: dict, count: int) -> str:
    """The command that registers ``entry`` again, as it was (a known set below its published count: --partial)."""
    if entry.get("kind") != "generic":
        partial = " --partial" if count != get_spec(name).n_images else ""
        return f"iqabench datasets add {name} --from {shlex.quote(entry['path'])}{partial}"
    lo, hi = (f"{entry[k]:g}" if float(f"{entry[k]:g}") == entry[k] else repr(entry[k]) for k in ("lo", "hi"))
    options = [("--folder", entry["path"]), ("--csv", entry["csv"]), ("--image-col", entry["image_col"]),
               ("--score-col", entry["score_col"]), ("--lo", lo), ("--hi", hi),
               ("--score-type", entry.get("score_type", "MOS")), ("--content-col", entry.get("content_col"))]
    given = " ".join(f"{option} {shlex.quote(str(value))}" for option, value in options if value is not None)
    direction = "--higher-is-better" if entry["higher_is_better"] else "--lower-is-better"
    return f"iqabench datasets add-generic {name} {given} {direction}"
