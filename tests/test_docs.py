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
