"""Shared test fixtures: the repository root and the optional ../shared material."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    root = SHARED / "datasets"
    if not root.is_dir():
        pytest.skip(f"{root} is absent (a user's fresh clone): the shared real subsets are not available")
    return root
