"""``zoo sweep NAME``: the sweep's own options beside every ``zoo run NAME`` option
(the values each trial shares). Importing this module imports neither torch nor Optuna."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from zoo.sweeps.spec import DIRECTIONS, PRUNERS, SAMPLERS


def _sweep_options() -> list[click.Parameter]:
    option = click.Option
    return [
        option(["--trials"], type=int, required=True,
               help="Trials the study should hold in all (a re-run continues it)."),
        option(["--param", "param_specs"], multiple=True, required=True,
               help="A searched hyperparameter: NAME=uniform:LOW:HIGH, loguniform:LOW:HIGH, "
               "int:LOW:HIGH, intlog:LOW:HIGH or choice:A,B,C (repeat the flag)."),
        option(["--objective"], required=True, help="The metric to optimise (eval.json's)."),
        option(["--direction"], type=click.Choice(DIRECTIONS), required=True,
               help="minimize or maximize the objective."),
        option(["--storage"], help="Optuna RDB storage URL shared by all workers "
               "(default: sqlite:///OUT/STUDY/study.db; postgresql://... for many machines)."),
        option(["--study", "study_name"],
               help="Study name (default: NAME-OBJECTIVE); its trials go to OUT/STUDY."),
        option(["--pruner"], type=click.Choice(PRUNERS), default="median", show_default=True,
               help="Stop trials whose per-epoch objective trails the median of earlier ones."),
        option(["--sampler"], type=click.Choice(SAMPLERS), default="tpe", show_default=True),
        option(["--sampler-seed"], type=int, help="Seed of the sampler (default: random)."),
        option(["--epoch-samples"], type=click.IntRange(min=0), default=1000,
               show_default=True, help="Test images for a per-epoch objective the plugin "
               "does not record itself (generative metrics); 0: no pruning on it."),
        option(["--report", "write_report"], is_flag=True,
               help="Write OUT/STUDY/study.html once the trials are done."),
    ]  # fmt: skip


def sweep_command(
    entry: Any, shared: list[click.Parameter], given_values: Callable[..., dict[str, Any]]
) -> click.Command:
    def callback(config_file: str | None, **given: Any) -> None:
        from zoo.sweeps.spec import build_spec

        sweep = {key: given.pop(key) for key in (
            "trials", "param_specs", "objective", "direction", "storage", "study_name",
            "pruner", "sampler", "sampler_seed", "epoch_samples", "write_report")}  # fmt: skip
        _require_optuna()
        spec = build_spec(
            entry.name, trials=sweep["trials"], params=sweep["param_specs"],
            objective=sweep["objective"], direction=sweep["direction"],
            fixed=given_values(config_file, given), storage=sweep["storage"],
            study=sweep["study_name"], pruner=sweep["pruner"], sampler=sweep["sampler"],
            sampler_seed=sweep["sampler_seed"], epoch_samples=sweep["epoch_samples"],
        )  # fmt: skip
        from zoo.sweeps.study import run_sweep

        study = run_sweep(spec, lambda line: click.echo(line, err=True))
        summary = _summary(study, spec)
        if sweep["write_report"]:
            from zoo.sweeps.report import write_study_report

            summary["report"] = str(write_study_report(study, spec.folder, spec.objective))
        click.echo(json.dumps(summary))

    return click.Command(
        entry.name,
        params=[*_sweep_options(), *shared],
        callback=callback,
        help=f"Tune {entry.name}'s hyperparameters; every zoo run option is shared by the trials.",
        short_help=entry.plugin.info.summary,
    )


def _require_optuna() -> None:
    from zoo.core.errors import ConfigError

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("zoo sweep needs Optuna: pip install 'zoo[sweep]'") from None


def _summary(study: Any, spec: Any) -> dict[str, Any]:
    """The study in one JSON line: where it is and its best trial."""
    out: dict[str, Any] = {"study": spec.study_name, "storage": spec.storage_url,
                           "trials": len(study.get_trials(deepcopy=False))}  # fmt: skip
    if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        best = study.best_trial
        out.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                   best_run=best.user_attrs.get("run"))  # fmt: skip
    return out
