"""Shared fixtures: real Fashion-MNIST subsets, small trained runs, isolated registries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.core import data
from zoo.core.registry import Registry, default_registry, use_registry

REPO = Path(__file__).resolve().parent.parent
ZOO = [sys.executable, "-m", "zoo"]

# Small real-data subsets keep every training test to a few seconds.
SMALL = {"train_size": 2000, "test_size": 500, "progress": False}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """The evaluator's feature cache of this test session, not the user's
    (subprocesses inherit it)."""
    previous = os.environ.get("ZOO_CACHE_DIR")
    os.environ["ZOO_CACHE_DIR"] = str(tmp_path_factory.mktemp("zoo-cache"))
    yield Path(os.environ["ZOO_CACHE_DIR"])
    if previous is None:
        os.environ.pop("ZOO_CACHE_DIR", None)
    else:
        os.environ["ZOO_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """The folder the zoo finds Fashion-MNIST in; the suite needs the real files."""
    return data.find_data_dir()


@pytest.fixture(scope="session")
def dense_run(tmp_path_factory) -> zoo.RunResult:
    """One small dense run shared by read-only tests (copy it before damaging it)."""
    out = tmp_path_factory.mktemp("runs")
    return zoo.run("dense", epochs=2, out=str(out), seed=3, **SMALL)


@pytest.fixture()
def registry():
    """A fresh process-wide registry, restored afterwards, for tests that register plugins."""
    previous = default_registry()
    fresh = Registry(entry_points=False)
    use_registry(fresh)
    yield fresh
    use_registry(previous)


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run ``python -m zoo`` in a subprocess (real entry points, real exit codes)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*ZOO, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600
    )
