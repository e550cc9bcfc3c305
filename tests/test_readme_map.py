"""README maps the house: every library module and package (and each module inside a package), stage script, DVC stage, benchmark and docs page is
named there, so a newcomer finds each file from one page (a new file without a line in README fails here)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _unnamed(paths) -> list[str]:
    # Named as code: `io.py`, `stages/pretrain.py ENCODER`, `gpu_check.sh` + `gpu_check.py`.
    return [str(p.relative_to(ROOT)) for p in paths if not re.search(rf"[`/]{re.escape(p.name)}\b", README)]


def test_every_module_package_stage_script_and_benchmark_is_named_in_readme():
    library = ROOT / "src" / "iqabench"
    files = [p for p in [*library.glob("*.py"), *library.glob("*/*.py")] if p.name != "__init__.py"]
    packages = [p for p in library.iterdir() if (p / "__init__.py").is_file()]
    scripts = [*(ROOT / "stages").glob("*.py"), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks").glob("*.sh")]
    assert files and packages and scripts
    assert _unnamed(files + scripts) == []
    assert [p.name for p in packages if f"`{p.name}/`" not in README] == []


def test_every_page_in_docs_is_linked_from_readme():
    pages = sorted((ROOT / "docs").iterdir())
    assert pages and [p.name for p in pages if f"docs/{p.name}" not in README] == []


def test_every_dvc_stage_has_a_row_in_the_stage_table():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    rows = set(re.findall(r"^\| `([a-z_]+)(?:@[A-Z]+)?` \|", README, flags=re.M))
    assert set(stages) - rows == set()
