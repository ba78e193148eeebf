"""Docs that are generated from the code stay in sync with it."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO


def test_cli_reference_is_current():
    spec = importlib.util.spec_from_file_location(
        "make_cli_reference", REPO / "docs" / "make_cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (REPO / "docs" / "cli.md").read_text() == module.render(), (
        "docs/cli.md is stale: run .venv/bin/python docs/make_cli_reference.py"
    )


def test_ci_runs_the_readmes_test_command():
    readme = (REPO / "README.md").read_text().split("```bash\n", 1)[1].splitlines()
    setup_and_run, setup_and_test = (line.split("#")[0].strip() for line in readme[:2])
    assert setup_and_run.startswith("bash setup.sh") and "zoo run" in setup_and_run
    assert setup_and_test in (REPO / ".ci" / "run").read_text()
