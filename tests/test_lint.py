"""The code base stays clean under the project's ruff configuration."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _ruff() -> list[str] | None:
    beside = Path(sys.executable).with_name("ruff")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_finds_nothing():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (setup.sh installs it with the test extra)")
    done = subprocess.run([*ruff, "check", "--quiet", str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nothing_is_ever_unpickled():
    """Checkpoints and data are safetensors, JSON and IDX; no loader of pickles is used."""
    unsafe = (
        "torch.load(",
        "import pickle",
        "from pickle import",
        "pickle.load",
        "allow_pickle=True",
        "dill.",
    )
    offenders = [
        f"{path.relative_to(REPO)}: {pattern}"
        for folder in ("zoo", "plugins")
        for path in sorted((REPO / folder).rglob("*.py"))
        for pattern in unsafe
        if pattern in path.read_text()
    ]
    assert not offenders, offenders
