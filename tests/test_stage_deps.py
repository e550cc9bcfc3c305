"""DVC knows every module a stage runs: each stage script's iqabench imports, walked transitively with ast,
must be covered by that stage's deps in dvc.yaml (a package folder covers its files). And DVC's paths are
dvc.yaml's alone: each stage's command names its outs and data deps with the same strings, and no stage script
holds a data/ or reports/ path of its own."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

import stage_cmd

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
# params.py checks names against registries (rows, datasets, photos, config dataclasses) and stops the stage
# when one is wrong: what those lookups import (inside its functions) cannot change what a stage writes, so
# the walk does not follow them. params.py, params_schema.py and params_datasets.py themselves are deps: their
# defaults are settings.
VALIDATION_ONLY = {"iqabench.params", "iqabench.params_schema", "iqabench.params_datasets"}
# Checks that only refuse (they change no setting, test below), so no stage depends on them.
REFUSE_ONLY = {"iqabench.params_relations"}


def _module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts[:-1])


def _nodes(tree: ast.AST, lazy: bool):
    """Every node, or (``lazy=False``) every node outside function bodies."""
    if lazy:
        yield from ast.walk(tree)
        return
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node
            yield from _nodes(node, lazy)


def _imports(path: Path, lazy: bool = True) -> set[str]:
    """Every iqabench module ``path`` imports, at module level or (``lazy``) inside functions: both run."""
    found = set()
    package = _package_of(path) if path.is_relative_to(SRC) else ""
    for node in _nodes(ast.parse(path.read_text(), filename=str(path)), lazy):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "iqabench"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "iqabench":
                continue
            found.add(base)
            # `from iqabench import io` imports the submodule iqabench.io
            found |= {f"{base}.{alias.name}" for alias in node.names if _module_file(f"{base}.{alias.name}")}
    return found


def _trivial(path: Path) -> bool:
    """An __init__.py with nothing but a docstring or a version string imports nothing and defines nothing."""
    return path.name == "__init__.py" and not any(
        isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))
        for n in ast.walk(ast.parse(path.read_text())))


def modules_of(script: Path) -> set[Path]:
    """The iqabench source files ``script`` runs: its imports, theirs, and each one's parent packages."""
    seen: set[str] = set()
    todo = list(_imports(script))
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py first
            name = ".".join(parts[:k])
            if name in seen or name in REFUSE_ONLY or _module_file(name) is None:
                continue
            seen.add(name)
            todo.extend(_imports(_module_file(name), lazy=name not in VALIDATION_ONLY))
    return {f for f in map(_module_file, seen) if f is not None and not _trivial(f)}


def stages() -> dict[str, tuple[Path, list[str]]]:
    """Stage name -> (its script, its deps), foreach stages once (their deps do not depend on the item)."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in spec.items():
        body = stage.get("do", stage)
        scripts = [s for s in re.findall(r"stages/\w+\.py", body["cmd"])]
        assert len(scripts) == 1, f"{name}: expected one stages/*.py in its cmd, found {scripts}"
        out[name] = (REPO / scripts[0], [str(d) for d in body.get("deps", [])])
    return out


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(stages()))
def test_every_module_a_stage_runs_is_one_of_its_deps(stage):
    script, deps = stages()[stage]
    assert _covered(script, deps), f"{stage}: its script {script.relative_to(REPO)} is not a dep"
    missing = sorted(p.relative_to(REPO).as_posix() for p in modules_of(script) if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs these modules but does not depend on them: {missing}"


def test_the_walk_follows_relative_lazy_and_package_imports(tmp_path):
    # prepare imports iqabench.datasets.embedded, which imports ..models.nss inside the package.
    found = {p.relative_to(SRC).as_posix() for p in modules_of(REPO / "stages/prepare.py")}
    assert {"iqabench/datasets/embedded.py", "iqabench/models/nss.py", "iqabench/images.py",
            "iqabench/datasets/__init__.py", "iqabench/params.py", "iqabench/params_schema.py"} <= found
    assert "iqabench/rows.py" not in found  # looked up by params' validation only
    assert "iqabench/__init__.py" not in found  # a version string only
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from iqabench.training import corpus\n")
    assert SRC / "iqabench/training/corpus.py" in modules_of(script)


def test_the_refuse_only_checks_change_no_setting():
    import copy

    from iqabench import params, params_relations

    settings = params.validate(params.load(REPO / "params.yaml"))
    before = copy.deepcopy(settings)
    assert params_relations.check("params.yaml", settings) is None
    assert settings == before


# --- paths only in dvc.yaml: each stage script takes every path it reads or writes from its command ---------------

# Deps a stage's command does not name, and why: what the script reads is elsewhere, or nothing.
NOT_IN_CMD = {
    "data/checksums": "orders every download@NAME before fingerprint; not read",
    "data/fingerprints": "stand-ins for inputs outside DVC's view (data/raw, registered folders, weights); not read",
    "data/encoders": "read by the row registry (iqabench.rows, encoders.trained_path), as `iqabench score` reads them",
    "data/models/niqe_mvg.npz": "read by the niqe row (baselines.NIQE_MODEL), as `iqabench score` reads it",
    "profiles": "named by params.yaml (pretrain.NAME.profile)",
}
# Paths a command names that are no deps or outs: a resume folder, and the two files report logs to MLflow.
NOT_DVC = {"data/checkpoints/finetune", "data/checkpoints/pretrain-${key}", "params.yaml", "dvc.lock"}


def _paths(entries) -> set[str]:
    return {e if isinstance(e, str) else next(iter(e)) for e in entries or []}


def _under(path: str, folders) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def _cmd_paths(name: str) -> set[str]:
    """The path values in a stage's command (after its script): every word but options and the foreach item."""
    words = stage_cmd.cmd(name).split()
    words = words[next(i for i, w in enumerate(words) if re.fullmatch(r"stages/\w+\.py", w)) + 1:]
    return {w for w in words if not w.startswith("--") and w not in ("${item}", "${key}")}


def _dvc_stages() -> dict[str, dict]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in spec.items()}


@pytest.mark.parametrize("stage", sorted(_dvc_stages()))
def test_a_stage_command_names_its_outputs_and_data_with_the_strings_of_its_deps_and_outs(stage):
    body = _dvc_stages()[stage]
    outs = _paths(body.get("outs")) | _paths(body.get("metrics")) | _paths(body.get("plots"))
    deps = {d for d in _paths(body.get("deps")) if not _under(d, ("src", "stages"))}
    named = _cmd_paths(stage)
    # download names the folder its out data/raw/${item} goes in (--data-root): the one out under a named folder
    assert [o for o in sorted(outs) if not _under(o, named)] == [], f"{stage}: outs its command does not name"
    assert [d for d in sorted(deps) if not _under(d, named) and not _under(d, NOT_IN_CMD)] == [], \
        f"{stage}: deps its command does not name (or add them to NOT_IN_CMD with the reason)"
    stray = [p for p in sorted(named) if p not in outs | deps | NOT_DVC and not any(_under(o, [p]) for o in outs)]
    assert stray == [], f"{stage}: its command names paths that are neither deps nor outs"


def test_the_files_the_rows_read_are_where_dvc_yaml_has_their_stages_write_them():
    """pretrain@NAME and fit_niqe write where dvc.yaml says; extract, finetune, report and `iqabench score` read
    the rows' files (and evaluate's regressors) where the library says: the two must be the same paths."""
    from iqabench import baselines, regressor
    from iqabench.models import encoders

    def value(words: list[str], flag: str) -> str:
        return words[words.index(flag) + 1]

    pretrain = stage_cmd.args("pretrain", "contrique")
    assert value(pretrain, "--out") == encoders.trained_path("contrique").as_posix()
    assert value(pretrain, "--history") == encoders.history_path(encoders.trained_path("contrique")).as_posix()
    assert value(stage_cmd.args("fit_niqe"), "--out") == baselines.NIQE_MODEL.as_posix()
    assert value(stage_cmd.args("evaluate"), "--regressors") == regressor.REGRESSORS.as_posix()


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the module's, classes' and functions' docstring nodes."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def test_no_stage_script_holds_a_path_of_its_own():
    """Paths only in dvc.yaml: a stage script's string literals (f-strings' text included) name no path under
    data/ or reports/; its docstrings and comments may."""
    offenders = []
    for script in sorted((REPO / "stages").glob("*.py")):
        tree = ast.parse(script.read_text(), filename=str(script))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                    and ("data/" in node.value or "reports/" in node.value):
                offenders.append(f"{script.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert offenders == [], "paths belong in dvc.yaml's cmd (a required option of the script):\n" + "\n".join(offenders)
