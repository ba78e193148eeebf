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


def test_cli_reference_covers_every_command_and_task():
    from zoo.cli import cli

    reference = (REPO / "docs" / "cli.md").read_text()
    for name in cli.commands:
        assert f"\n## zoo {name}\n" in reference, name
    for plugin in ("dense", "cnn", "fgsm", "gan", "colorizer"):  # one of each task at least
        assert f"\n## zoo run {plugin}\n" in reference, plugin


def test_ci_runs_the_readmes_test_command():
    readme = (REPO / "README.md").read_text().split("```bash\n", 1)[1].splitlines()
    setup_and_run, setup_and_test = (line.split("#")[0].strip() for line in readme[:2])
    assert setup_and_run.startswith("bash setup.sh") and "zoo run" in setup_and_run
    assert setup_and_test in (REPO / ".ci" / "run").read_text()


def test_relative_links_in_the_docs_point_to_files():
    import re

    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        prose = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # not code
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
