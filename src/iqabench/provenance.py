"""Where a result comes from: the git commit, the pipeline state as DVC locked it, params changed against HEAD.

``lock_digest`` is the hash every report and MLflow run carries as ``dvc_lock``.
The `report` stage runs inside ``dvc repro``, before DVC has written report's
own entry in ``dvc.lock``, so hashing the whole file would name a file that
never exists. DVC writes each stage's entry when that stage finishes, so the
entries of the stages *upstream of report* are final when report runs: the
digest covers exactly those, and of them only their output hashes, which is
what the results are computed from. A stage that re-runs because its code or
params changed but writes the same bytes (DVC does not re-run report then)
leaves the digest, and the committed report, true. ``iqabench``'s test suite
recomputes it from the committed ``dvc.lock`` and compares it with
``reports/results.md``.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import yaml

LOCK = Path("dvc.lock")
DVC_YAML = Path("dvc.yaml")
# The pipeline's own outputs change during `dvc repro`, and a params.yaml change is named in full by
# params_diff (`dvc exp run -S` makes one): neither makes the code "dirty".
NOT_CODE = ("reports", "dvc.lock", "params.yaml")


def _git(*args: str, cwd: str | Path | None = None) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=cwd).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def git_state(cwd: str | Path | None = None) -> tuple[str, bool]:
    """(commit sha or "unknown", whether tracked code differs from it; see NOT_CODE)."""
    sha = (_git("rev-parse", "HEAD", cwd=cwd) or "").strip()
    if not sha:
        return "unknown", False
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                  *(f":(exclude){p}" for p in NOT_CODE), cwd=cwd)
    return sha, bool((status or "").strip())


def commit_tag(sha: str, dirty: bool) -> str:
    """The ``git_commit`` tag (and results.md's commit): ``<sha>-dirty`` when the code differs from it.

    ``-dirty`` as ``git describe --dirty`` writes it, and as `iqabench compare --commit` matches the tag in runs
    already stored (compare.COMMIT_PREFIX). :func:`run_name` and :func:`stamp_line` write ``+dirty`` on purpose:
    a note for people beside a short sha, never read back, whose spelling README documents; the two are kept
    apart so neither the stored tags nor the documented names change."""
    return sha + ("-dirty" if dirty else "")


def git_commit(cwd: str | Path | None = None) -> str:
    """:func:`commit_tag` of the checkout at ``cwd``."""
    return commit_tag(*git_state(cwd))


def file_hash(path: str | Path) -> str:
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def _overlaps(a: str, b: str) -> bool:
    """DVC's rule: a dependency on a folder covers every output inside it, and the other way round."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def upstream_stages(locked: dict, deps: list[str]) -> list[str]:
    """Names of the locked stages whose outputs ``deps`` read, directly or through other stages, sorted."""
    found: set[str] = set()
    frontier = list(deps)
    while frontier:
        path = frontier.pop()
        for name, entry in locked.items():
            if name in found:
                continue
            if any(_overlaps(path, out.get("path", "")) for out in entry.get("outs", []) or []):
                found.add(name)
                frontier.extend(dep.get("path", "") for dep in entry.get("deps", []) or [])
    return sorted(found)


def _stage_deps(stage: str, dvc_yaml: Path) -> list[str]:
    try:
        spec = yaml.safe_load(dvc_yaml.read_text())["stages"][stage]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ValueError(f"{dvc_yaml}: cannot read the deps of stage '{stage}' ({err!r}); the dvc_lock "
                         "digest needs them") from None
    return [d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])]


def lock_digest(stage: str = "report", lock: str | Path = LOCK, dvc_yaml: str | Path = DVC_YAML) -> str:
    """16 hex digits of the locked outputs of every stage upstream of ``stage`` (see module doc)."""
    lock, dvc_yaml = Path(lock), Path(dvc_yaml)
    if not lock.is_file():
        return "missing"
    locked = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    names = upstream_stages(locked, _stage_deps(stage, dvc_yaml))
    blob = json.dumps({name: locked[name].get("outs", []) for name in names}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def params_diff(current: dict, ref: str = "HEAD", path: str | os.PathLike = "params.yaml",
                cwd: str | Path | None = None) -> dict[str, tuple]:
    """``{key: (at ref, now)}`` for every flattened param that differs from ``ref``'s copy of the file at ``path``.

    What `dvc exp run -S key=value` changed, or an uncommitted edit; empty outside git. ``path`` is the file on
    disk, relative to ``cwd`` (default: the working folder) or absolute.
    """
    if os.path.isabs(path):
        path = os.path.relpath(path, cwd or os.curdir)
    # `REF:./PATH` is relative to git's working folder (`REF:PATH` to the repository's top).
    text = _git("show", f"{ref}:./{Path(path).as_posix()}", cwd=cwd)
    if text is None:
        return {}
    base, now = flatten(yaml.safe_load(text) or {}), flatten(current)
    missing = object()
    return {key: (base.get(key), now.get(key)) for key in sorted(set(base) | set(now))
            if base.get(key, missing) != now.get(key, missing)}


def _shown(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _change(key: str, old, new) -> str:
    """``key=value``; a list that gained or lost items shows only those (``datasets+=koniq10k,spaq``), so a run
    name stays short enough for MLflow's name column; a removed key shows as ``key=(removed)``."""
    if new is None:
        return f"{key}=(removed)"
    if isinstance(old, list) and isinstance(new, list):
        added, removed = [x for x in new if x not in old], [x for x in old if x not in new]
        if added or removed:
            return " ".join(f"{key}{sign}={','.join(map(_shown, items))}"
                            for sign, items in (("+", added), ("-", removed)) if items)
    return f"{key}={_shown(new)}"


def format_diff(diff: dict[str, tuple], limit: int = 200) -> str:
    """``evaluate.n_splits=5 seed=1 datasets+=koniq10k``; cut at ``limit`` characters."""
    text = " ".join(_change(k, old, new) for k, (old, new) in diff.items())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def experiment_name() -> str:
    """The DVC experiment being run (`dvc exp run` sets DVC_EXP_NAME), or ""."""
    return os.environ.get("DVC_EXP_NAME", "").strip()


def run_name(sha: str, dirty: bool, exp: str, diff: dict[str, tuple], lock: str = "") -> str:
    """``a1b2c3d4+dirty exp-1f2e3 evaluate.n_splits=5 results 2ddbedf1``: what tells one run of the study from
    another; ``lock`` (:func:`lock_digest`) names the results, so runs of other commits that reproduced the same
    outputs show it in the run table."""
    parts = [sha[:8] + ("+dirty" if dirty else "")]
    if exp:
        parts.append(exp)
    parts.append(format_diff(diff, limit=120) if diff else "HEAD params")
    if str(lock).strip():
        parts.append(f"results {str(lock).strip()[:8]}")
    return " ".join(parts)


def machine() -> str:
    """``x86_64, AMD EPYC 7B13, 2 cores``: the CPU model only where /proc/cpuinfo names one (Linux x86)."""
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return ", ".join(part for part in (platform.machine() or "unknown arch", model, f"{os.cpu_count()} cores") if part)


def stamp(argv: list[str] | None = None) -> dict:
    """Where a published number comes from: commit and dirty flag of the script's repository, machine, python,
    torch and its thread count now, and the command (``argv``, default ``sys.argv``; script first).

    Take it before the measurement (the tree may move on while it runs) and after setting torch's threads.
    """
    import platform
    import shlex
    import sys

    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]) if argv and argv[0] else None
    where = script.resolve().parent if script is not None and script.is_file() else Path.cwd()
    # git_state reads `git status -- .`: from the repository's top, or it would see only the script's folder.
    top = (_git("rev-parse", "--show-toplevel", cwd=where) or "").strip()
    sha, dirty = git_state(top) if top else ("unknown", False)
    shown = argv[:1]
    if script is not None and script.is_file():
        try:  # as it is typed from here: benchmarks/x.py, not the absolute path __file__ gives
            shown = [str(script.resolve().relative_to(Path.cwd()))]
        except ValueError:
            pass
    try:
        import torch
        torch_version, threads = torch.__version__, torch.get_num_threads()
    except ImportError:  # a reference run in a separate environment without torch
        torch_version, threads = None, None
    return {"commit": sha, "dirty": dirty, "machine": machine(), "python": platform.python_version(),
            "torch": torch_version, "torch_threads": threads,
            "command": shlex.join(["python", *shown, *argv[1:]])}


def stamp_line(prov: dict) -> str:
    """The markdown line under a benchmark report's title that says where its numbers come from."""
    torch = f", torch {prov['torch']} (threads: {prov['torch_threads']})" if prov.get("torch") else ""
    return (f"Measured at commit `{prov['commit'][:10]}`{' (+dirty)' if prov['dirty'] else ''} on {prov['machine']}, "
            f"Python {prov['python']}{torch}, command `{prov['command']}`.")
