"""A copy of the repository for tests that run DVC: its tracked and untracked-but-not-ignored files."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def copy_repo(work: Path) -> Path:
    """Copy the working tree to ``work``, without reports/ (the pipeline writes them) but with the measured
    seed spread, reports/variance.csv, which the report stage reads as a dependency."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file() and (not rel.startswith("reports/") or rel == "reports/variance.csv"):
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, work / rel)
    return work
