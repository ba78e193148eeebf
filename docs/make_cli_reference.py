"""Regenerate docs/cli.md from the click commands themselves.

    .venv/bin/python docs/make_cli_reference.py

tests/test_docs.py fails when docs/cli.md differs from what this script writes, so the
reference cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from zoo.cli import cli
from zoo.core.registry import Registry, default_registry, use_registry

TARGET = Path(__file__).resolve().parent / "cli.md"

INTRO = """\
# zoo command-line reference

Generated from the click commands by `docs/make_cli_reference.py`; a test fails when this
file and the code disagree. The options of `zoo run NAME` are generated from the plugin's
`Config` and the shared run settings, so each plugin has its own `zoo run NAME --help`.
Errors print one line, `zoo: error: ...`, on stderr. The exit code is 2 for a bad option,
value or config file and for an unknown plugin, and 1 for missing or damaged data, a bad
checkpoint or run folder, or a failed run (see [the guide](guide.md#errors-and-exit-codes)).
"""

SECTIONS: list[tuple[list[str], str]] = [
    (
        [],
        "`--registry FILE` (or the `ZOO_REGISTRY` environment variable) adds the local plugin\n"
        "modules listed in a `registry.toml` of your own. Put it before the subcommand:\n"
        "`zoo --registry ~/my-plugins/registry.toml list`. `zoo --help` and `zoo list` do not\n"
        "import torch.",
    ),
    (
        ["list"],
        "The SOURCE column shows `builtin`, `local`, `api`, or, for a plugin from an installed\n"
        "package, the distribution's name and version (e.g. `zoo-logreg 0.1.0`). `--all` adds\n"
        "plugins that failed to load, with task `broken` and the error as their summary. The\n"
        "JSON rows have the keys `name`, `task`, `summary`, `source`, `origin` and `status`\n"
        "(`ok` or `broken`).",
    ),
    (
        ["info"],
        "Prints the plugin's name, task, version, summary, paper, source and metrics, then\n"
        "every hyperparameter and run setting with its flag, type, default (with this\n"
        "plugin's own defaults applied) and help. An unknown name exits 2 and suggests the\n"
        "closest name.",
    ),
    (["run"], ""),
    (
        ["run", "dense"],
        "Each plugin lists its hyperparameters first, then the run settings every plugin\n"
        "shares. `--config FILE` reads the same options from a flat TOML file, keys written\n"
        "with `_` (`max_steps = 100`); a flag on the command line wins over the file. List\n"
        "options take a repeated flag or commas (`--epsilons 0,0.05,0.1`). Progress and one\n"
        "line per epoch go to stderr; at the end stdout gets one JSON line with the run folder\n"
        "and the last epoch's metrics.",
    ),
    (["run", "cnn"], ""),
    (
        ["run", "fgsm"],
        "`zoo run fgsm --target RUN [--target RUN2]` attacks classifier runs and writes\n"
        "`robustness.json`, `robustness.png` (accuracy against epsilon, one colour per\n"
        "classifier, one line style per mode) and `examples.png` to its own run folder.\n"
        "Accuracy at epsilon 0 equals what `zoo eval` reports for the target with the same\n"
        "`--test-size`. Every attack (`fgsm`, `pgd`, third-party ones on `zoo.AttackPlugin`)\n"
        "has these options; an attack's output outside the eps-ball or the pixel range stops\n"
        "the run with one line.",
    ),
    (
        ["run", "pgd"],
        "`zoo run pgd --target RUN` is L-inf PGD (Madry et al.); it was `zoo run fgsm --modes\n"
        "pgd` before. `--step-size` is in the scale of the epsilons; `--restarts N` keeps each\n"
        "image's worst case over N random starts.",
    ),
    (
        ["eval"],
        "`zoo eval RUN` rebuilds the plugin from `RUN/config.json`, loads its weights from\n"
        "`RUN/model.safetensors`, evaluates it on the test split with every metric the plugin\n"
        "declares, prints the numbers and rewrites `RUN/eval.json` (plus\n"
        "`confusion_matrix.png` for classifiers). Without `--test-size` or `--data-dir`, the\n"
        "values saved with the run are used.",
    ),
]


def render() -> str:
    """The reference as the built-ins alone make it (installed extras would change it)."""
    previous = default_registry()
    use_registry(Registry(entry_points=False, user_registry=None))
    try:
        return _render()
    finally:
        use_registry(previous)


RUN_EXAMPLES = ["gan", "colorizer"]  # besides dense, cnn and fgsm above: one per task


def _sections() -> list[tuple[list[str], str]]:
    """The sections above, one `zoo run NAME` per task, then every other command."""
    sections = list(SECTIONS)
    after_fgsm = [args for args, _ in sections].index(["run", "fgsm"]) + 1
    sections[after_fgsm:after_fgsm] = [(["run", name], "") for name in RUN_EXAMPLES]
    covered = {tuple(args) for args, _ in sections}
    sections += [([name], "") for name in cli.commands if (name,) not in covered]
    return sections


def _render() -> str:
    runner = CliRunner()
    parts = [INTRO]
    for args, notes in _sections():
        result = runner.invoke(cli, [*args, "--help"], terminal_width=88, prog_name="zoo")
        if result.exit_code != 0:
            raise RuntimeError(f"zoo {' '.join(args)} --help failed: {result.output}")
        parts.append(f"## {' '.join(['zoo', *args])}\n\n```text\n{result.stdout.rstrip()}\n```\n")
        if notes:
            parts.append(notes + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
