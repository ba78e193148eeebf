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


def _code_block(page: str, first_line: str) -> str:
    """The fenced Python block of ``page`` that starts with ``first_line``."""
    import re

    text = (REPO / "docs" / page).read_text()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"no code block starting {first_line!r} in docs/{page}")


def test_the_trainable_plugin_example_trains_and_evaluates_as_written(tmp_path):
    """docs/plugins.md's my_sgd.py, verbatim, as a local plugin: a TrainablePlugin of task
    classify gets the classification metrics without a task base class."""
    import json

    from tests.conftest import run_cli

    (tmp_path / "my_sgd.py").write_text(_code_block("plugins.md", "# my_sgd.py"))
    (tmp_path / "registry.toml").write_text('[[plugins]]\nmodule = "my_sgd"\n')
    env = {"ZOO_REGISTRY": str(tmp_path / "registry.toml")}
    trained = run_cli("run", "sgd-net", "--max-steps", "5", "--train-size", "640",
                      "--test-size", "200", "--no-progress", "--out",
                      str(tmp_path / "runs"), env=env)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    evaluated = json.loads((run / "eval.json").read_text())
    assert evaluated["test_images"] == 200 and 0.0 <= evaluated["accuracy"] <= 1.0
    assert len(evaluated["confusion_matrix"]) == 10
