"""zoo installed as a wheel, away from the checkout: the built-ins are still found.

The wheel is built from the tracked files only (a stale build/ folder in a checkout
would otherwise slip old modules into it) and installed with ``pip --target`` into a
temporary folder: the install mode where a data file under ``sys.prefix`` is lost.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _tracked_copy(destination: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        source = REPO / name
        if source.is_file() and not name.startswith("docs/"):
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--quiet", *args, "--no-deps", "--no-build-isolation",
         "--no-index"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = _tracked_copy(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--wheel-dir", str(out), str(source))
    (built,) = out.glob("zoo-*.whl")
    return built


def test_the_wheel_holds_the_layers_and_the_builtins_but_no_checkout_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"zoo/core/registry.py", "zoo/engine/trainer.py", "zoo_plugins/classifiers.py",
            "zoo/tasks/generate/weights/fmnist-features-v1.safetensors"} <= names  # fmt: skip
    assert not any(n.startswith(("plugins/", "tests/", "zoo/registry.py")) for n in names)
    (points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "zoo_plugins.classifiers" in zipfile.ZipFile(wheel).read(points).decode()


def test_a_target_install_lists_and_trains_the_builtins(wheel, tmp_path):
    target = tmp_path / "target"
    _pip("install", "--target", str(target), str(wheel))
    elsewhere = tmp_path / "elsewhere"  # no checkout on the path, no registry.toml around
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("ZOO_REGISTRY", None)
    code = (
        "import json, zoo\n"
        "rows = [(e.name, e.source, e.origin) for e in zoo.list_plugins()]\n"
        "print(json.dumps({'file': zoo.__file__, 'rows': rows}))\n"
    )
    listed = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert Path(found["file"]).is_relative_to(target)
    rows = {name: (source, origin) for name, source, origin in found["rows"]}
    assert {"dense", "cnn", "fgsm", "gan", "wgan_gp", "colorizer"} <= set(rows)
    assert rows["cnn"] == ("builtin", "zoo_plugins.classifiers")
    assert "no built-in plugins" not in listed.stderr

    trained = subprocess.run(
        [sys.executable, "-m", "zoo", "run", "dense", "--max-steps", "3", "--train-size", "256",
         "--test-size", "100", "--no-progress", "--out", str(tmp_path / "runs")],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "model.safetensors").is_file()


def test_code_without_its_metadata_says_how_to_install_it(wheel, tmp_path):
    """The packages copied by hand, without zoo's dist-info: no built-ins, and one line
    saying why and what to do, instead of an empty list without a word."""
    bare = tmp_path / "bare"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(bare, [n for n in archive.namelist() if ".dist-info/" not in n])
    # only the libraries `zoo list` needs, linked from this venv without any metadata
    for library in ("pluggy", "attr", "attrs", "click"):
        (bare / library).symlink_to(Path(importlib.import_module(library).__file__).parent)
    code = f"import sys; sys.path[:0] = [{str(bare)!r}]; from zoo.cli import main; main()"
    listed = subprocess.run([sys.executable, "-I", "-S", "-c", code, "list"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "cnn" not in listed.stdout
    lines = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no built-in plugins" in lines[0] and "setup.sh" in lines[0]


def test_an_older_copy_of_zoos_metadata_adds_no_builtins(tmp_path):
    """A leftover dist-info of another zoo version, earlier on the path, naming modules
    that no longer exist: the built-ins come from this version's metadata only."""
    stale = tmp_path / "zoo-0.0.9.dist-info"
    stale.mkdir()
    (stale / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo\nVersion: 0.0.9\n")
    (stale / "entry_points.txt").write_text("[zoo]\nold = zoo_plugins.gone_module\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = subprocess.run([sys.executable, "-m", "zoo", "list", "--all", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert listed.returncode == 0 and not listed.stderr.strip(), listed.stderr
    rows = json.loads(listed.stdout)
    assert all(row["status"] == "ok" for row in rows)
    assert "zoo_plugins.gone_module" not in listed.stdout and "cnn" in listed.stdout
