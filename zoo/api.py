"""The programmatic API, mirroring timm/torchvision: list, get, run, load, evaluate."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from zoo.core import config as configs
from zoo.core.contract import Plugin, TrainablePlugin
from zoo.core.errors import ConfigError, Interrupted, RunError, ZooError
from zoo.core.observers import Observers, RunObserver
from zoo.core.registry import PluginEntry, default_registry
from zoo.core.runs import (
    FAILED_FILE,
    STATE_FILE,
    RunContext,
    RunRecord,
    new_run_dir,
    read_run,
)
from zoo.core.settings import (
    SETTING_NAMES,
    TRAIN_IMAGES,
    RunSettings,
    steps_per_epoch,
    zero_steps_message,
)
from zoo.engine.loading import LoadedRun, load

# Settings of one call that a resume does not take from the run: how it was asked for,
# and where this call stops (the run's recorded --max-steps would stop it at once).
PER_CALL = frozenset({"resume", "force", "max_steps"})
# What even --force may not change: the epochs' step count and data order depend on it.
FIXED_BY_START = frozenset({"batch_size", "train_size"})
MAX_SAMPLES = 10_000  # zoo sample: one grid of images held in memory


def list_plugins(
    pattern: str | None = None, *, task: str | None = None, include_broken: bool = False
) -> list[PluginEntry]:
    """Registered plugins, e.g. ``list_plugins("*gan*")`` or ``list_plugins(task="classify")``."""
    return default_registry().list(pattern, task=task, include_broken=include_broken)


def get_plugin(name: str) -> type[Plugin]:
    """The plugin class for ``name``; unknown names raise UnknownPluginError."""
    return default_registry().get(name)


@attrs.frozen
class PreparedRun:
    """A run before its folder exists: the plugin class, its validated config and the
    run settings (from ``prepare``); ``execute`` makes the folder and runs it."""

    plugin: type[Plugin]
    config: Any
    settings: RunSettings
    explicit: frozenset[str] = frozenset()  # the names this call gave values for

    def to_dict(self) -> dict[str, Any]:
        """What config.json will record: plugin, hyperparameters, run settings and, for a
        trainable plugin, what ``auto`` resolved to on this machine."""
        recorded = {
            "plugin": self.plugin.info.name,
            "config": configs.to_dict(self.config),
            "settings": configs.to_dict(self.settings),
        }
        if issubclass(self.plugin, TrainablePlugin):
            from zoo.engine.devices import resolved_choices

            recorded["resolved"] = resolved_choices(self.settings.device, self.settings.precision,
                                                    self.plugin.auto_bf16_devices)  # fmt: skip
        return recorded


def prepare(
    name: str, values: Mapping[str, Any], *, label: Callable[[str], str] = str
) -> PreparedRun:
    """Split flat values into the plugin's Config and the run settings, validating both.
    A resume takes the run's recorded values as its defaults: only what is given here
    changes (and is compared with the run's own)."""
    plugin = get_plugin(name)
    known = SETTING_NAMES | {spec.name for spec in configs.field_specs(plugin.Config)}
    unknown = [key for key in values if key not in known]
    if unknown:
        raise configs.ConfigError(configs.unknown_key_message(unknown[0], known, label))
    explicit = frozenset(values)
    if values.get("resume"):
        values = {**_recorded_values(plugin, values, known), **values}
    plugin_values = {k: v for k, v in values.items() if k not in SETTING_NAMES}
    setting_values = {**plugin.defaults, **{k: v for k, v in values.items() if k in SETTING_NAMES}}
    prepared = PreparedRun(
        plugin=plugin,
        config=configs.build(plugin.Config, plugin_values, label=label),
        settings=configs.build(RunSettings, setting_values, label=label),
        explicit=explicit,
    )
    if issubclass(plugin, TrainablePlugin):
        _check_steps(prepared.settings)
    _check_compile(prepared, label)
    return prepared


def _check_compile(prepared: PreparedRun, label: Callable[[str], str]) -> None:
    settings, plugin = prepared.settings, prepared.plugin
    if settings.compile and getattr(plugin, "cannot_compile", None):
        flag = label("compile")
        raise ConfigError(f"{flag}: plugin '{plugin.info.name}' cannot be compiled: "
                          f"{plugin.cannot_compile}; train it without {flag}")  # fmt: skip
    explicit_mode = "compile_mode" in prepared.explicit and settings.compile_mode != "default"
    if explicit_mode and not settings.compile:
        raise ConfigError(
            f"{label('compile_mode')} {settings.compile_mode} is how the networks are "
            f"compiled: add {label('compile')}"
        )


def _check_steps(settings: RunSettings) -> None:
    """A run that would train 0 steps is refused before any work."""
    images = min(settings.train_size or TRAIN_IMAGES, TRAIN_IMAGES)
    processes = max(int(os.environ.get("WORLD_SIZE", "1") or 1), 1)
    if steps_per_epoch(images, settings.batch_size, processes) == 0:
        raise ConfigError(zero_steps_message(images, settings.batch_size))


def _recorded_values(
    plugin: type[Plugin], values: Mapping[str, Any], known: frozenset[str]
) -> dict[str, Any]:
    """The resumed run's hyperparameters and settings ({} when it cannot be read: the
    resume checks then say why)."""
    out = values.get("out", plugin.defaults.get("out", RunSettings().out))
    try:
        record = read_run(_resume_folder(plugin, str(values["resume"]), str(out)))
    except ZooError:
        return {}
    if record.plugin != plugin.info.name:
        return {}
    recorded = {**record.config, **record.settings}
    return {k: v for k, v in recorded.items() if k in known and k not in PER_CALL}


@attrs.frozen
class RunResult:
    """What ``zoo.run`` returns once a run is done: its folder and last metrics."""

    path: Path
    metrics: dict[str, Any]  # the last epoch's record

    @property
    def history(self) -> list[dict[str, Any]]:
        return read_run(self.path).history


def execute(prepared: PreparedRun, *, observers: Sequence[RunObserver] = ()) -> RunResult:
    """Create (or, resuming, lock and check) the run folder and let the plugin do its
    job, watched by ``observers`` and the trackers --log asks for (main process only).
    A failure says what became of the folder; a success clears an earlier failure."""
    from zoo.engine import distributed

    info = prepared.plugin.info
    world = distributed.current_world()
    if world.active:
        if not issubclass(prepared.plugin, TrainablePlugin):
            raise configs.ConfigError(
                f"plugin '{info.name}' trains nothing; run it without torchrun"
            )
        distributed.join(world, prepared.settings.device)
    path, lock, recorded, watching = None, None, None, Observers()
    if world.is_main:  # under torchrun, rank 0 makes the folder and tells the others
        recorded = _recorded(prepared)  # resolves the device: fails before any folder exists
        watching = _observers(prepared, observers)  # an unreachable tracker: likewise
        path, lock = _open_run_folder(prepared, recorded)
    status = "failed"
    try:
        path = Path(distributed.broadcast_text(world, str(path) if path else None))
        metrics = _run_plugin(prepared, path, recorded, world, watching)
        if world.is_main:
            from zoo.engine.failures import clear_failure

            clear_failure(path)
            _refresh_report(path)
            watching.run_finished(path, _final_results(path))
        status = "finished"
    except Interrupted:
        status = "stopped"
        raise
    finally:
        try:
            watching.run_closed(status)
        finally:
            if lock is not None:
                lock.release()  # after the last write of this call
            distributed.leave(world)
    return RunResult(path, dict(metrics))


def _observers(prepared: PreparedRun, given: Sequence[RunObserver]) -> Observers:
    """The caller's observers, then the trackers --log asks for (trainable plugins)."""
    if not prepared.settings.log:
        return Observers.of(given)
    if not issubclass(prepared.plugin, TrainablePlugin):
        name = prepared.plugin.info.name
        print(f"zoo: warning: --log: plugin '{name}' trains nothing, so there is nothing to "
              "log; its results are in the run folder", file=sys.stderr)  # fmt: skip
        return Observers.of(given)
    from zoo.engine.tracking import open_trackers

    return Observers.of([*given, *open_trackers(prepared.settings, prepared.plugin.info.name)])


def _final_results(path: Path) -> dict[str, Any]:
    """eval.json's content ({} when the plugin wrote none)."""
    import json

    try:
        results = json.loads((path / "eval.json").read_text())
    except (OSError, ValueError):
        return {}
    return results if isinstance(results, dict) else {}


def _run_plugin(
    prepared: PreparedRun, path: Path, recorded: Any, world: Any, observers: Observers
) -> Mapping[str, Any]:
    """The plugin's job in its folder; a failure is raised as one line saying what
    became of the folder."""
    info = prepared.plugin.info
    touched = not prepared.settings.resume  # a new folder is this call's own

    def before_first_write(step: int) -> None:
        nonlocal touched
        touched = True
        from zoo.core.run_history import write_resume

        write_resume(path, recorded, step, prepared.settings.force)

    resuming = world.is_main and prepared.settings.resume
    context = RunContext(path, info.name, prepared.settings,
                         before_first_write=before_first_write if resuming else None,
                         observers=observers)  # fmt: skip
    try:
        return _drive(prepared.plugin(prepared.config), context)
    except BaseException as error:
        if not world.is_main:
            raise
        _settle(path, info.name, error, touched, prepared.settings.epochs)
        raise  # not reached: _settle raises


def _recorded(prepared: PreparedRun) -> dict[str, Any]:
    info = prepared.plugin.info
    return {**prepared.to_dict(), "plugin_version": info.version, "task": info.task,
            "python": sys.version.split()[0]}  # fmt: skip


def _settle(path: Path, name: str, error: BaseException, touched: bool, epochs: int) -> None:
    """Raise ``error`` as one line that says what became of the run folder."""
    from zoo.engine.failures import as_zoo_error, settle

    failure = as_zoo_error(error, name)
    if isinstance(error, Interrupted):  # Ctrl-C, checkpoint saved: not a failure
        raise error
    settled = settle(path, name, failure, touched=touched, epochs=epochs)
    if settled is error:
        raise settled
    raise settled from error


def _open_run_folder(prepared: PreparedRun, recorded: Mapping[str, Any]) -> tuple[Path, Any]:
    """The run folder, locked for this process: a resumed one once checked (nothing is
    written into it yet), or a new one with its config.json."""
    from zoo.core.locking import RunLock
    from zoo.core.run_history import write_start
    from zoo.engine.failures import settle

    info, settings = prepared.plugin.info, prepared.settings
    if settings.resume:
        if not issubclass(prepared.plugin, TrainablePlugin):
            raise configs.ConfigError(f"--resume: plugin '{info.name}' trains nothing to resume")
        path = _resume_folder(prepared.plugin, settings.resume, settings.out)
        record = read_run(path)  # not a run folder: say so before anything else
        lock = RunLock(path).acquire("resume")
        try:
            _check_resume(prepared, path, record)
        except BaseException:
            lock.release()
            raise
        return path.resolve(), lock
    path = new_run_dir(settings.out, info.name)
    lock = RunLock(path).acquire("train into")
    try:
        write_start(path, recorded)
    except BaseException as error:
        lock.release()
        if isinstance(error, ZooError):
            raise settle(path, info.name, error, touched=True) from None
        shutil.rmtree(path, ignore_errors=True)  # nothing of it was written
        raise
    return path, lock


def _refresh_report(path: Path) -> None:
    """Write the run's report.html; a run that trained for hours is never failed by it."""
    from zoo.reports.run_report import write_report

    try:
        write_report(path)
    except Exception as error:  # a picture or a caption nobody foresaw: warn, never fail
        print(f"zoo: warning: report.html not written ({error}); try `zoo report {path}`",
              file=sys.stderr)  # fmt: skip


def report(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write a run's self-contained HTML report (default RUN/report.html)."""
    from zoo.reports.run_report import write_report

    return write_report(run_dir, output)


def compare(
    run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike = ".", *, sort: str | None = None
) -> tuple[Path, Path, str]:
    """Leaderboard of runs: leaderboard.html (sortable) and leaderboard.md in ``out``;
    returns both paths and the Markdown table."""
    from zoo.reports.leaderboard import write_leaderboard

    return write_leaderboard(run_dirs, out, sort=sort)


def _resume_folder(plugin: type[Plugin], resume: str, out: str) -> Path:
    """The folder --resume names; 'auto': the newest run of this plugin in ``out`` with
    a checkpoint that did not fail."""
    if resume != "auto":
        return Path(resume)
    folder, name = Path(out), plugin.info.name
    runs = sorted(
        (p for p in folder.glob(f"{name}-*")
         if (p / STATE_FILE).is_file() and not (p / FAILED_FILE).exists()),
        key=lambda p: p.name,
    )  # fmt: skip
    if not runs:
        raise RunError(f"--resume auto: no {name} run with a checkpoint in {folder}")
    return runs[-1]


def _check_resume(prepared: PreparedRun, path: Path, record: RunRecord) -> None:
    """The run is this plugin's, has a checkpoint, has epochs or steps left to train,
    and learns as this call asks; reads only."""
    from zoo.engine.checkpoints import read_meta

    info, settings = prepared.plugin.info, prepared.settings
    if record.plugin != info.name:
        raise configs.ConfigError(
            f"--resume {path}: that is a run of '{record.plugin}', not '{info.name}'"
        )
    if not (path / STATE_FILE).is_file():
        raise RunError(f"--resume {path}: the run has no checkpoint yet; start it anew")
    meta = read_meta(path, STATE_FILE)
    try:
        done, step = int(meta.get("epoch", 0)), int(meta.get("step", 0))
    except (TypeError, ValueError):
        raise RunError(f"--resume {path}: its checkpoint's epoch or step is damaged") from None
    if settings.epochs <= done:
        raise configs.ConfigError(
            f"--resume {path}: it has trained {done} epochs already and --epochs counts the "
            f"total; ask for more than {done}"
        )
    if settings.max_steps is not None and settings.max_steps <= step:
        raise configs.ConfigError(
            f"--resume {path}: it is at step {step} already and --max-steps counts the "
            f"total; ask for more than {step}"
        )
    _refuse_changes(prepared, path, record)


def _refuse_changes(prepared: PreparedRun, path: Path, record: RunRecord) -> None:
    """Values this call gives that differ from the run's own are refused (unless
    --force); what fixes the epochs' steps is refused even then."""
    from zoo.core.settings import RESUMABLE_CHANGES

    asked = prepared.to_dict()
    now = {**asked["config"], **asked["settings"]}  # tuples already lists, as in the file
    before = {**record.config, **record.settings}
    for key in sorted(prepared.explicit & FIXED_BY_START):
        if before.get(key, now[key]) != now[key]:
            raise configs.ConfigError(
                f"--resume {path}: {configs.flag(key)} cannot change ({before[key]!r} -> "
                f"{now[key]!r}), even with --force: the epochs' steps and data order depend "
                "on it; start a new run"
            )
    if prepared.settings.force:
        return
    for key in sorted(prepared.explicit - RESUMABLE_CHANGES - {"precision"}):
        if key in now and key in before and before[key] != now[key]:
            raise configs.ConfigError(
                f"--resume {path}: it was trained with {configs.flag(key)} {before[key]!r}, "
                f"this call asks for {now[key]!r}; resume refused (leave it out to keep the "
                "run's value, or pass --force)"
            )
    _refuse_other_precision(prepared, path, record, asked)


def _refuse_other_precision(prepared: PreparedRun, path: Path, record: RunRecord, asked) -> None:
    """The precision a run trained in counts, not the word: 'auto' may resolve
    differently on this machine."""
    trained = record.resolved.get("precision", record.settings.get("precision"))
    if trained == "auto" or trained is None:  # a run from before zoo recorded it
        return
    wanted = asked["resolved"]["precision"]
    if trained == wanted:
        return
    word = prepared.settings.precision
    asks = f"{word} ({wanted} here)" if word == "auto" else wanted
    raise configs.ConfigError(
        f"--resume {path}: it trained in {trained}, this call's --precision {asks} differs; "
        f"resume refused (pass --precision {trained}, or --force)"
    )


def run(name: str, *, observers: Sequence[RunObserver] = (), **values: Any) -> RunResult:
    """Train or execute a plugin: ``zoo.run("dense", epochs=1)``; ``observers``
    (zoo.RunObserver) watch the training from outside, as trackers do."""
    return execute(prepare(name, values), observers=observers)


def evaluate(
    run_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    test_size: int | None = None,
    data_dir: str | None = None,
    classifier: str | os.PathLike | None = None,
    samples: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a run with the metrics its plugin declares; writes eval.json (+ pictures).

    Generative runs are judged in the features of zoo's pinned evaluator (offline, the
    same for everyone), or of the classifier run ``classifier`` when one is given;
    ``samples`` images (default: as many as the test images, as at the end of training)
    drawn from ``seed`` meet the test split, and as many training images give the
    real-data floor.
    """
    from zoo.core.locking import RunLock

    loaded = load(run_dir, device=device)
    with RunLock(loaded.path).acquire("evaluate"):
        return _evaluate_loaded(loaded, test_size, data_dir, classifier, samples, seed)


def _evaluate_loaded(loaded: LoadedRun, test_size, data_dir, classifier, samples, seed) -> dict:
    from zoo.core import data as datasets
    from zoo.engine.evaluator import check_result_targets, evaluate_with_inputs, save_results

    plugin = loaded.plugin
    check_result_targets(loaded.path, ())  # eval.json; the pictures once the task is known
    settings = configs.build(RunSettings, loaded.record.settings)
    test_size = settings.test_size if test_size is None else test_size
    fmnist = datasets.load(data_dir or settings.data_dir)
    options = _evaluation_options(loaded, classifier, samples, seed)
    evidence = plugin.evidence(
        fmnist.test.head(test_size),
        device=plugin.device,
        batch_size=settings.eval_batch_size,
        train=fmnist.train,
        **{k: v for k, v in options.items() if k in plugin.evaluation_options},
    )
    check_result_targets(loaded.path, plugin.metrics)  # before the work, not after it
    results = evaluate_with_inputs(evidence, plugin.metrics)
    save_results(loaded.path, results, plugin.metrics, loaded.record.plugin)
    from zoo.reports.run_report import REPORT_FILE

    if (loaded.path / REPORT_FILE).is_file():
        _refresh_report(loaded.path)  # the report shows the new numbers
    return results


def colorize(
    run_dir: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike = "colorized",
    color: str | None = None,
    scale: int = 8,
    device: str = "cpu",
):
    """Colourise image files with a colorizer run; a ColorizeResult lists the written
    files and, per file that could not be read, a one-line reason."""
    from zoo.tasks.colorize.base import ColorizerPlugin
    from zoo.tasks.colorize.files import colorize_files
    from zoo.tasks.colorize.palette import parse_color

    if scale < 1:
        raise configs.ConfigError(f"--scale: must be >= 1 (got {scale})")
    requested = None if color is None else parse_color(color)  # bad names fail first
    loaded = load(run_dir, device=device)
    plugin = loaded.plugin
    if not isinstance(plugin, ColorizerPlugin):
        raise RunError(
            f"{loaded.path} is a '{loaded.record.plugin}' run (task {plugin.info.task}); "
            "colourising needs a colorizer run"
        )
    if plugin.color_conditioned and requested is None:
        raise configs.ConfigError(
            f"{loaded.path} colours garments in a requested colour: pass --color NAME or #hex"
        )
    if requested is not None and not plugin.color_conditioned:
        raise configs.ConfigError(
            f"{loaded.path} was trained on a class palette and takes no --color; train a "
            "colour-conditioned run with `zoo run colorizer --mode color`"
        )
    return colorize_files(plugin, images, out, color=requested, scale=scale)


def _drive(plugin: Plugin, context: RunContext) -> Mapping[str, Any]:
    """The trainer drives a trainable plugin; any other plugin does its own job."""
    if isinstance(plugin, TrainablePlugin):
        from zoo.engine.trainer import Trainer

        return Trainer(plugin, context).fit()
    return plugin.execute(context)


def _evaluation_options(loaded: LoadedRun, classifier, samples: int | None, seed: int) -> dict:
    """What `zoo eval` can pass to a plugin's evidence() (those it takes, per its
    ``evaluation_options``): how many samples, from which seed, and the judge, which is
    the named classifier run's features where one is named."""
    options: dict[str, Any] = {"samples": samples, "seed": seed}
    if classifier is not None and "judge" in loaded.plugin.evaluation_options:
        from zoo.tasks.generate.metrics import classifier_judge

        reference = load(classifier, device=str(loaded.plugin.device))
        if not hasattr(reference.plugin, "features"):
            raise RunError(f"{reference.path} is not a classifier run with features()")
        options["judge"] = classifier_judge(reference)
    return options


def sample(
    run_dir: str | os.PathLike,
    n: int = 64,
    *,
    label: str | int | None = None,
    seed: int | None = None,
    device: str = "cpu",
):
    """Images (n, C, 28, 28) in the plugin's pixel range from a generative run."""
    from zoo.tasks.generate.base import GeneratorPlugin

    if not 1 <= n <= MAX_SAMPLES:
        raise configs.ConfigError(f"--n: must be between 1 and {MAX_SAMPLES} (got {n})")
    loaded = load(run_dir, device=device)
    if not isinstance(loaded.plugin, GeneratorPlugin):
        raise RunError(
            f"{loaded.path} is a '{loaded.record.plugin}' run (task "
            f"{loaded.plugin.info.task}); sampling needs a generative run"
        )
    return loaded.plugin.sample(n, labels=label, seed=seed)


def bench(
    name: str,
    *,
    batch_size: int | Sequence[int] | None = None,
    precision: str | Sequence[str] | None = None,
    channels_last: bool | Sequence[bool] | None = None,
    compile: bool | Sequence[bool] | None = None,
    given_by: str = "call",
    label: Callable[[str], str] = str,
    on_result: Callable[[Any], None] | None = None,
    **values: Any,
) -> list[Any]:
    """Training throughput of ``name``: one BenchResult per combination of the values
    given (a value or a list each; None: the plugin's own, as ``zoo.run`` trains), e.g.
    ``zoo.bench("cnn", batch_size=[64, 256], precision=["fp32", "bf16"])``. Other
    keywords are run settings (threads, device) or bench options (steps, windows,
    warmup, profile_rows); each result marks its values ``given_by`` or "plugin"."""
    import itertools

    from zoo.engine.bench import bench as bench_plugin

    asked = {"batch_size": batch_size, "precision": precision,
             "channels_last": channels_last, "compile": compile}  # fmt: skip
    axes = {k: _as_list(v) for k, v in asked.items() if v is not None}
    sources = {key: given_by if key in axes else "plugin" for key in asked}
    options = {k: values.pop(k) for k in ("steps", "windows", "warmup", "profile_rows")
               if k in values}  # fmt: skip
    results = []
    for combination in itertools.product(*axes.values()):
        row = {**dict(zip(axes, combination, strict=True)), **values}
        if row.get("compile") is False:  # --compile no,yes --compile-mode M: M for yes
            row.pop("compile_mode", None)
        prepared = prepare(name, row, label=label)
        result = bench_plugin(prepared.plugin(prepared.config), prepared.settings,
                              sources=sources, **options)  # fmt: skip
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]
