"""Shared fixtures: small training scripts written into a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def autoresearch_dir(tmp_path: Path) -> Path:
    """A folder with the autoresearch stand-in (train.py + prepare.py), as a user would have it."""
    d = tmp_path / "autoresearch"
    d.mkdir()
    shutil.copy(FIXTURES / "autoresearch_train.py", d / "train.py")
    shutil.copy(FIXTURES / "prepare.py", d / "prepare.py")
    return d


def write_script(folder: Path, body: str, name: str = "train.py") -> Path:
    path = folder / name
    path.write_text(body)
    return path
