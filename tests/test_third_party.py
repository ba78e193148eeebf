"""Third-party plugins through real entry-point metadata: install, list, run, contain."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

EXAMPLE = REPO / "docs" / "examples" / "zoo-logreg"


def _pip(command: str, *args: str) -> None:
    """pip offline, without build isolation (setuptools comes from the venv)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            command,
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """``pip install`` the example package into a private target folder (no network)."""
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--target", str(target), str(EXAMPLE))
    assert list(target.glob("zoo_logreg-0.1.0.dist-info"))
    return target


def test_installed_package_lists_and_runs(installed_example, tmp_path):
    env = {"PYTHONPATH": str(installed_example)}
    listed = run_cli("list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["logreg"]["source"] == "zoo-logreg 0.1.0"
    assert rows["logreg"]["origin"] == "logreg = zoo_logreg"

    ran = run_cli(
        "run",
        "logreg",
        "--max-steps",
        "5",
        "--train-size",
        "500",
        "--test-size",
        "200",
        "--weight-decay",
        "0.0001",
        "--out",
        str(tmp_path),
        env=env,
    )
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    assert summary["step"] == 5
    assert (Path(summary["run"]) / "model.safetensors").is_file()


def _fake_distribution(site: Path, name: str, module: str, source: str) -> None:
    """A minimal installed distribution: a module plus dist-info with an entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[zoo]\n{module} = {module}\n")


DUPLICATE_CNN = """
    from zoo import ClassifierPlugin, PluginInfo, hookimpl

    class FakeCNN(ClassifierPlugin):
        info = PluginInfo(name="cnn", task="classify", summary="impostor")

    @hookimpl
    def register_plugins(register):
        register(FakeCNN)
"""


def test_poisoned_and_duplicate_plugins_are_contained(tmp_path):
    _fake_distribution(tmp_path, "poisoned", "poisoned_plugin", "raise RuntimeError('kaboom')\n")
    _fake_distribution(tmp_path, "dupe", "dupe_plugin", DUPLICATE_CNN)
    env = {"PYTHONPATH": str(tmp_path)}

    listed = run_cli("list", env=env)
    assert listed.returncode == 0
    warnings = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(warnings) == 2, listed.stderr
    assert any("poisoned_plugin" in w and "RuntimeError: kaboom" in w for w in warnings)
    assert any("'cnn'" in w and "already registered by builtin" in w for w in warnings)
    assert "Traceback" not in listed.stderr
    assert "dense" in listed.stdout and "impostor" not in listed.stdout

    every = json.loads(run_cli("list", "--all", "--json", env=env).stdout)
    broken = {row["origin"]: row for row in every if row["status"] == "broken"}
    assert set(broken) == {"poisoned_plugin = poisoned_plugin", "dupe_plugin = dupe_plugin"}
    assert broken["poisoned_plugin = poisoned_plugin"]["source"] == "poisoned 1.0"

    info = run_cli("info", "cnn", env=env)
    assert info.returncode == 0 and "builtin" in info.stdout

    strict = run_cli("list", env={**env, "ZOO_STRICT_PLUGINS": "1"})
    assert strict.returncode != 0
    assert "Traceback" not in strict.stderr
    assert len(strict.stderr.strip().splitlines()) == 1
    assert "ZOO_STRICT_PLUGINS" in strict.stderr


def test_wheel_ships_the_builtin_catalogue(tmp_path):
    """A non-editable install finds registry.toml under <prefix>/share/zoo."""
    import zipfile

    _pip("wheel", "--wheel-dir", str(tmp_path), str(REPO))
    (wheel,) = tmp_path.glob("zoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".data/data/share/zoo/registry.toml") for n in names)
    assert "zoo_plugins/classifiers.py" in names and "zoo/core/registry.py" in names
    assert not any(n.startswith("plugins/") for n in names)
