"""DVC knows every module a stage runs: each stage script's iqabench imports, walked transitively with ast,
must be covered by that stage's deps in dvc.yaml (a package folder covers its files)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

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
