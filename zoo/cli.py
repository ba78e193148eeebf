"""The ``zoo`` command line. ``zoo --help`` imports no torch; ``zoo run NAME`` options are
generated from the plugin's attrs Config and the shared run settings."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from zoo import api
from zoo.core.config import FieldSpec, field_specs, flag, read_toml
from zoo.core.errors import ConfigError, RunError, ZooError
from zoo.core.registry import Registry, check_task, use_registry
from zoo.core.settings import COMPILE_MODES, RunSettings


class _ZooGroup(click.Group):
    """Turns every failure a person can cause into one line on stderr and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ZooError as error:
            _show_cause(error)
            _fail(str(error), error.exit_code)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.format_message(), err=True)
            sys.exit(error.exit_code)
        except click.UsageError as error:
            hint = f" (see `{error.ctx.command_path} --help`)" if error.ctx else ""
            _fail(error.format_message().replace("\n", " ") + hint, error.exit_code)
        except click.ClickException as error:
            _fail(error.format_message(), error.exit_code)
        except click.Abort:
            _fail("interrupted", 130)
        code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _show_cause(error: ZooError) -> None:
    """--debug (or ZOO_DEBUG=1): the traceback of what a plugin raised, for its author."""
    if os.environ.get("ZOO_DEBUG", "") in ("", "0") or error.__cause__ is None:
        return
    import traceback

    traceback.print_exception(error.__cause__, file=sys.stderr)


def _fail(message: str, code: int) -> None:
    click.echo(f"zoo: error: {message}", err=True)
    sys.exit(code)


def _click_option(spec: FieldSpec, default: Any) -> click.Option:
    shown = "none" if default is None else default
    if isinstance(default, tuple):
        shown = ",".join(map(str, default))
    help_text = f"{spec.help} [{spec.type_name}; default: {shown}]"
    if spec.kind is bool:
        return click.Option(
            [f"{spec.flag}/--no-{spec.flag[2:]}", spec.name], default=None, help=help_text
        )
    if spec.choices is not None:
        kind: click.ParamType = click.Choice([str(c) for c in spec.choices])
    else:
        kind = {int: click.INT, float: click.FLOAT}.get(spec.kind, click.STRING)
    if spec.kind is tuple:  # repeat the flag or separate values with commas
        return click.Option(
            [spec.flag, spec.name], type=click.STRING, multiple=True, help=help_text
        )
    return click.Option([spec.flag, spec.name], type=kind, default=None, help=help_text)


def plugin_params(entry) -> list[click.Parameter]:
    """The options of ``zoo run NAME`` (and ``zoo sweep NAME``): the plugin's
    hyperparameters, the run settings and --config."""
    plugin = entry.plugin
    params: list[click.Parameter] = [
        _click_option(spec, spec.default) for spec in field_specs(plugin.Config)
    ]
    for spec in field_specs(RunSettings):
        params.append(_click_option(spec, plugin.defaults.get(spec.name, spec.default)))
    params.append(
        click.Option(
            ["--config", "config_file"],
            type=click.Path(dir_okay=False),
            help="TOML file of options (keys as option names with '_'); flags win over it.",
        )
    )
    return params


def given_values(config_file: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """The values a call gave: the --config file's, then the flags (which win)."""
    values = read_toml(config_file) if config_file else {}
    for key, value in given.items():
        if isinstance(value, tuple):  # a repeatable flag: () when not given
            parts = [part.strip() for item in value for part in item.split(",")]
            value = [part for part in parts if part] or None
        if value is not None:
            values[key] = value
    return values


def _run_command(entry) -> click.Command:
    plugin = entry.plugin
    params = plugin_params(entry)
    params.append(
        click.Option(
            ["--dry-run"],
            is_flag=True,
            help="Check the options and print the resulting configuration as JSON; train nothing.",
        )
    )

    def callback(config_file: str | None, dry_run: bool, **given: Any) -> None:
        prepared = api.prepare(entry.name, given_values(config_file, given), label=flag)
        if dry_run:
            click.echo(json.dumps(prepared.to_dict(), indent=2))
            return
        result = api.execute(prepared)
        from zoo.engine.distributed import current_world

        if current_world().is_main:  # under torchrun, one summary line
            click.echo(json.dumps({"run": str(result.path), **_scalars(result.metrics)}))

    return click.Command(
        entry.name,
        params=params,
        callback=callback,
        help=f"{plugin.info.summary}\n\nPaper: {plugin.info.paper or '-'}",
        short_help=plugin.info.summary,
    )


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}


class _RunGroup(click.Group):
    """``zoo run NAME``: one generated subcommand per registered plugin."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [entry.name for entry in api.list_plugins()]

    def get_command(self, ctx: click.Context, name: str) -> click.Command:
        return _run_command(api.default_registry().entry(name))

    def resolve_command(self, ctx, args):
        command = self.get_command(ctx, args[0])
        return command.name, command, args[1:]


@click.group(cls=_ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zoo", prog_name="zoo")
@click.option(
    "--registry",
    type=click.Path(dir_okay=False),
    envvar="ZOO_REGISTRY",
    help="A registry.toml of your own that adds local plugin modules (or ZOO_REGISTRY).",
)
@click.option(
    "--debug",
    is_flag=True,
    help="Print the traceback of an exception a plugin raised (or set ZOO_DEBUG=1).",
)
def cli(registry: str | None, debug: bool) -> None:
    """A plugin-based model zoo for Fashion-MNIST: classify, attack, generate, colorize."""
    if debug:
        os.environ["ZOO_DEBUG"] = "1"
    if registry:
        use_registry(Registry(user_registry=registry))


@cli.command("list")
@click.argument("pattern", required=False)
@click.option("--task", help="Only plugins of this task (classify, attack, generate, colorize).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--all", "show_all", is_flag=True, help="Also list plugins that failed to load.")
def list_command(pattern: str | None, task: str | None, as_json: bool, show_all: bool) -> None:
    """List plugins, optionally filtered by a glob PATTERN such as '*gan*'."""
    if task is not None:
        check_task(task, "--task")
    entries = api.list_plugins(pattern, task=task, include_broken=show_all)
    rows = [
        {
            "name": e.name,
            "task": e.info.task if e.info else "broken",
            "summary": e.info.summary if e.info else e.error,
            "source": e.source if not e.distribution else f"{e.distribution} {e.version}",
            "origin": e.origin,
            "status": "broken" if e.broken else "ok",
        }
        for e in entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    columns = ("name", "task", "source", "summary")
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns[:-1]}
    click.echo("  ".join(c.upper().ljust(widths.get(c, 0)) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row[c]).ljust(widths.get(c, 0)) for c in columns).rstrip())


@cli.command()
@click.argument("name")
def info(name: str) -> None:
    """Show a plugin's metadata, paper and every hyperparameter."""
    entry = api.default_registry().entry(name)
    plugin = entry.plugin
    lines = [
        f"{plugin.info.name}  ({plugin.info.task}, version {plugin.info.version})",
        plugin.info.summary,
        f"paper:   {plugin.info.paper or '-'}",
        f"source:  {entry.source} {entry.origin}"
        + (f" ({entry.distribution} {entry.version})" if entry.distribution else ""),
        f"metrics: {', '.join(plugin.metrics) or '-'}",
        "",
        "hyperparameters:",
    ]
    for spec in field_specs(plugin.Config):
        lines.append(_describe(spec, spec.default))
    lines += ["", "run settings:"]
    for spec in field_specs(RunSettings):
        lines.append(_describe(spec, plugin.defaults.get(spec.name, spec.default)))
    click.echo("\n".join(lines))


def _describe(spec: FieldSpec, default: Any) -> str:
    choices = f" (one of {', '.join(map(str, spec.choices))})" if spec.choices else ""
    return f"  {spec.flag:<20} {spec.type_name:<14} default {default!s:<10} {spec.help}{choices}"


@cli.group(cls=_RunGroup)
def run() -> None:
    """Train or execute a plugin: zoo run NAME [OPTIONS]; zoo run NAME --help lists them."""


class _SweepGroup(_RunGroup):
    """``zoo sweep NAME``: the plugin's own options are the values every trial shares."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command:
        from zoo.sweeps.command import sweep_command

        entry = api.default_registry().entry(name)
        return sweep_command(entry, plugin_params(entry), given_values)


@cli.group(cls=_SweepGroup)
def sweep() -> None:
    """Tune a plugin's hyperparameters with Optuna: zoo sweep NAME --trials N --param
    lr=loguniform:1e-5:1e-2 --objective accuracy --direction maximize [zoo run options]."""


@cli.command("eval")
@click.argument("run_dir", metavar="RUN")
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda", "auto"]))
@click.option("--test-size", type=click.IntRange(min=1), help="Evaluate the first N test images.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Fashion-MNIST folder.")
@click.option(
    "--classifier",
    type=click.Path(file_okay=False),
    help="Generative runs: judge the samples in this classifier run's features instead of "
    "zoo's pinned evaluator (the numbers are then labelled with that run).",
)
@click.option(
    "--samples",
    type=click.IntRange(min=4, max=100_000),
    help="Generative runs: how many samples to draw, and training images for the real-data "
    "floor (default: as many as test images, 10,000, as at the end of training).",
)
@click.option("--seed", default=0, show_default=True, help="Generative runs: sampling seed.")
def eval_command(
    run_dir: str,
    device: str,
    test_size: int | None,
    data_dir: str | None,
    classifier: str | None,
    samples: int | None,
    seed: int,
) -> None:
    """Evaluate a run folder with its plugin's metrics; writes eval.json and pictures."""
    results = api.evaluate(
        run_dir,
        device=device,
        test_size=test_size,
        data_dir=data_dir,
        classifier=classifier,
        samples=samples,
        seed=seed,
    )
    click.echo(format_results(results))
    click.echo(f"wrote {run_dir}/eval.json")


def format_results(results: dict[str, Any]) -> str:
    """One line per number; a generative metric's real-data floor (``real_<name>``)
    stands beside it rather than on a line of its own."""
    lines = []
    for key, value in results.items():
        floor = results.get(f"real_{key}")
        if key.startswith("real_") and key[5:] in results:
            continue
        if isinstance(value, float):
            beside = f"   real data: {floor:.4f}" if isinstance(floor, float) else ""
            lines.append(f"{key:<22} {value:.4f}{beside}")
        elif isinstance(value, (int, str)):
            lines.append(f"{key:<22} {value}")
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {name:<20} {_cell(item)}" for name, item in value.items()]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@cli.command()
@click.argument("run_dir", metavar="RUN")
@click.option(
    "--n",
    "count",
    default=64,
    show_default=True,
    type=click.IntRange(min=1, max=api.MAX_SAMPLES),
    help="How many images.",
)
@click.option("--label", help="Class name or index 0-9 (conditional models only).")
@click.option("--seed", type=int, help="Seed for the latent noise (default: random).")
@click.option(
    "-o",
    "--output",
    default="samples.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="PNG file for the grid.",
)
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda", "auto"]))
def sample(
    run_dir: str, count: int, label: str | None, seed: int | None, output: str, device: str
) -> None:
    """Draw samples from a generative run into one PNG grid."""
    import math
    from pathlib import Path

    from zoo.core.runs import read_run
    from zoo.reports.plots import save_grid

    if Path(output).suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif"):
        raise ConfigError(f"-o {output}: give a .png, .jpg or .gif file name")
    images = api.sample(run_dir, count, label=label, seed=seed, device=device)
    pixel_range = api.get_plugin(read_run(run_dir).plugin).pixel_range
    try:
        save_grid(images, Path(output), nrow=math.ceil(math.sqrt(count)), pixel_range=pixel_range)
    except OSError as error:
        raise RunError(f"cannot write {output}: {error.strerror or error}") from None
    click.echo(f"wrote {count} samples to {output}")


@cli.command()
@click.argument("run_dir", metavar="RUN")
@click.argument("images", metavar="IMAGE...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output-dir",
    default="colorized",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the coloured PNGs and sheet.png.",
)
@click.option("--color", help="Colour-conditioned runs: a CSS colour name or hex (#1e90ff).")
@click.option(
    "--scale",
    default=8,
    show_default=True,
    type=click.IntRange(min=1, max=64),
    help="Upscaling of the enlarged copies.",
)
@click.option("--device", default="cpu", type=click.Choice(["cpu", "cuda", "auto"]))
@click.pass_context
def colorize(
    ctx: click.Context,
    run_dir: str,
    images: tuple[str, ...],
    output_dir: str,
    color: str | None,
    scale: int,
    device: str,
) -> None:
    """Colour garment photos (PNG, JPEG; any size) with a colorizer run.

    Each image is turned into a 28x28 Fashion-MNIST-style gray garment first (see
    docs/guide.md). Files that cannot be read are reported one per line; the others
    are still coloured, and the exit status is 1."""
    result = api.colorize(run_dir, images, out=output_dir, color=color, scale=scale, device=device)
    for output in result.outputs:
        click.echo(f"wrote {output}")
    if result.sheet is not None:
        click.echo(f"wrote {result.sheet} (original | input | colourised)")
    for _, message in result.failures:
        click.echo(f"zoo: error: {message}", err=True)
    if result.failures:
        ctx.exit(1)


_POSITIVE = click.IntRange(min=1)


def _choices(option: str, text: str, allowed: dict[str, Any]) -> list[Any]:
    values = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item not in allowed:
            raise ConfigError(f"{option}: '{item}' is not one of {', '.join(allowed)}")
        values.append(allowed[item])
    return values


def _bench_axes(
    batch_size: str | None, precision: str | None, layout: str | None, compile_: str | None
) -> dict[str, list | None]:
    """The settings the command line lists (one bench row per combination; None: the
    plugin's own, as zoo run)."""
    return {
        "batch_size": batch_size and _batch_sizes(batch_size),
        "precision": precision
        and _choices("--precision", precision, {p: p for p in ("fp32", "bf16", "auto")}),
        "channels_last": layout
        and _choices("--layout", layout, {"contiguous": False, "channels-last": True}),
        "compile": compile_ and _choices("--compile", compile_, {"no": False, "yes": True}),
    }


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--batch-size: expected integers such as 64 or 64,256 (got {text!r})"
        ) from None
    if not sizes or min(sizes) < 2:
        raise ConfigError("--batch-size: each size must be >= 2 (batch norm needs 2 images)")
    return sizes


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Default: RUN/report.html.")
def report(run_dir: str, output: str | None) -> None:
    """Write one self-contained HTML page about a run: configuration, metrics, results,
    loss curves, every epoch's samples and the plugin's pictures."""
    click.echo(f"wrote {api.report(run_dir, output)}")


@cli.command()
@click.argument("run_dirs", metavar="RUN...", nargs=-1, required=True)
@click.option(
    "-o", "--out", default=".", show_default=True, type=click.Path(file_okay=False),
    help="Folder for leaderboard.html and leaderboard.md.",
)  # fmt: skip
@click.option("--sort", help="Column to sort by first; a leading '-' sorts descending.")
def compare(run_dirs: tuple[str, ...], out: str, sort: str | None) -> None:
    """Leaderboard of runs: a sortable HTML page and a Markdown table (also printed)."""
    html_path, md_path, markdown = api.compare(list(run_dirs), out, sort=sort)
    click.echo(markdown, nl=False)
    click.echo(f"wrote {html_path} and {md_path}", err=True)


@cli.command()
@click.argument("name")
@click.option("--batch-size", help="Sizes, comma-separated (default: the plugin's, as zoo run).")
@click.option("--precision", help="fp32, bf16 and/or auto (default: the plugin's).")
@click.option(
    "--layout", help="contiguous and/or channels-last, comma-separated (default: the plugin's)."
)
@click.option("--compile", "compile_", help="no and/or yes (default: the plugin's).")
@click.option(
    "--compile-mode",
    type=click.Choice(COMPILE_MODES),
    help="torch.compile's mode for the compiled rows (reduce-overhead: CUDA graphs on CUDA).",
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: one per core).")
@click.option("--device", default="auto", type=click.Choice(["cpu", "cuda", "auto"]))
@click.option("--steps", default=20, show_default=True, type=_POSITIVE, help="Steps per window.")
@click.option("--windows", default=5, show_default=True, type=_POSITIVE, help="Timed windows.")
@click.option("--warmup", default=5, show_default=True, type=_POSITIVE, help="Untimed steps first.")
@click.option(
    "--profile",
    "profile_rows",
    default=0,
    type=click.IntRange(min=0),
    help="Also list the N ops that take the most time per step (torch.profiler).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also write the JSON here.")
def bench(
    name: str,
    batch_size: str | None,
    precision: str | None,
    layout: str | None,
    compile_: str | None,
    compile_mode: str | None,
    threads: int | None,
    device: str,
    steps: int,
    windows: int,
    warmup: int,
    profile_rows: int,
    as_json: bool,
    output: str | None,
) -> None:
    """Training throughput of a plugin: median images/s over timed windows, GFLOP/s
    against this machine's matrix-product peak. By default it times what `zoo run NAME`
    trains with (the plugin's batch size, precision, layout); lists given here give one
    row per combination, and the table marks each value [plugin] or [cli]."""
    from pathlib import Path

    from zoo.core.runs import write_json
    from zoo.engine.bench import format_profile, format_table

    if output and not Path(output).resolve().parent.is_dir():
        raise ConfigError(f"-o {output}: the folder {Path(output).parent} does not exist")
    axes = _bench_axes(batch_size, precision, layout, compile_)

    def measured(result: Any) -> None:
        if not as_json:
            click.echo(f"measured: {result.images_per_s:.0f} img/s", err=True)

    mode = {"compile_mode": compile_mode} if compile_mode else {}  # one mode a bench
    results = api.bench(name, **axes, **mode, threads=threads, device=device, steps=steps,
                        windows=windows, warmup=warmup, profile_rows=profile_rows,
                        given_by="cli", label=flag, on_result=measured)  # fmt: skip
    payload = [r.to_dict() for r in results]
    click.echo(json.dumps(payload, indent=2) if as_json else format_table(results))
    if profile_rows and not as_json:
        for result in results:
            click.echo("\n" + format_profile(result))
    if output:
        try:
            write_json(Path(output), {"command": " ".join(sys.argv), "results": payload})
        except OSError as error:
            raise RunError(f"cannot write {output}: {error.strerror or error}") from None


def main() -> None:
    cli.main(prog_name="zoo")
