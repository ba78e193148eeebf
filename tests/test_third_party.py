"""Third-party plugins through real entry-point metadata: install, list, run, contain."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

EXAMPLES = REPO / "docs" / "examples"


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


def _install(tmp_path_factory, example: str) -> Path:
    """``pip install`` an example package into a private target folder (no network)."""
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--target", str(target), str(EXAMPLES / example))
    assert list(target.glob(f"{example.replace('-', '_')}-0.1.0.dist-info"))
    return target


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    return _install(tmp_path_factory, "zoo-logreg")


@pytest.fixture(scope="module")
def installed_attack(tmp_path_factory) -> Path:
    return _install(tmp_path_factory, "zoo-mifgsm")


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


def test_installed_attack_lists_runs_and_beats_fgsm(installed_attack, dense_run, tmp_path):
    """A third-party attack on the contract alone: found through its entry point, given
    the core's options, checked, and measured on the same images as the built-in fgsm."""
    env = {"PYTHONPATH": str(installed_attack)}
    listed = run_cli("list", "--task", "attack", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["mifgsm"]["source"] == "zoo-mifgsm 0.1.0"
    assert rows["mifgsm"]["origin"] == "mifgsm = zoo_mifgsm"
    assert {"fgsm", "pgd"} <= set(rows)

    # large epsilons: at small ones the dense net is near-linear and the two attacks tie
    same = ["--target", str(dense_run.path), "--epsilons", "0,0.2,0.3", "--test-size", "500",
            "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    runs, reports = {}, {}
    for attack in ("mifgsm", "fgsm"):
        ran = run_cli("run", attack, *same, env=env)
        assert ran.returncode == 0, ran.stderr
        runs[attack] = Path(json.loads(ran.stdout.strip().splitlines()[-1])["run"])
        reports[attack] = json.loads((runs[attack] / "robustness.json").read_text())
    assert reports["mifgsm"]["attack"] == "mifgsm"
    config = json.loads((runs["mifgsm"] / "config.json").read_text())["config"]
    assert config["steps"] == 10 and config["decay"] == 1.0  # its own options, recorded
    momentum = reports["mifgsm"]["targets"][0]["curves"]
    single = reports["fgsm"]["targets"][0]["curves"]
    assert set(momentum) == set(single) == {"masked", "standard"}
    for mode in momentum:
        assert momentum[mode][0] == single[mode][0]  # eps 0: the same clean accuracy
        for iterated, one_step in zip(momentum[mode][1:], single[mode][1:], strict=True):
            assert iterated["accuracy"] <= one_step["accuracy"], (mode, iterated, one_step)
        assert sum(p["accuracy"] for p in momentum[mode]) < sum(p["accuracy"] for p in single[mode])


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
