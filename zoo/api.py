"""The programmatic API, mirroring timm/torchvision: list, get, run, load, evaluate."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from zoo import config as configs
from zoo.errors import RunError, ZooError
from zoo.plugin import Plugin, TrainablePlugin
from zoo.registry import PluginEntry, default_registry
from zoo.runs import (
    CONFIG_FILE,
    STATE_FILE,
    RunContext,
    RunRecord,
    new_run_dir,
    read_run,
    write_json,
)
from zoo.settings import SETTING_NAMES, RunSettings


def list_plugins(
    pattern: str | None = None, *, task: str | None = None, include_broken: bool = False
) -> list[PluginEntry]:
    """Registered plugins, e.g. ``list_plugins("*gan*")`` or ``list_plugins(task="classify")``."""
    return default_registry().list(pattern, task=task, include_broken=include_broken)


def get_plugin(name: str) -> type[Plugin]:
    """The plugin class for ``name``; unknown names raise UnknownPluginError."""
    return default_registry().get(name)


@attrs.frozen
class Prepared:
    """A validated plugin config and run settings, ready to execute."""

    plugin: type[Plugin]
    config: Any
    settings: RunSettings

    def to_dict(self) -> dict[str, Any]:
        """What config.json will record: plugin, hyperparameters, run settings and, for a
        trainable plugin, what ``auto`` resolved to on this machine."""
        recorded = {
            "plugin": self.plugin.info.name,
            "config": configs.to_dict(self.config),
            "settings": configs.to_dict(self.settings),
        }
        if issubclass(self.plugin, TrainablePlugin):
            from zoo.devices import resolved_choices

            recorded["resolved"] = resolved_choices(self.settings.device, self.settings.precision)
        return recorded


def prepare(name: str, values: Mapping[str, Any], *, label: Callable[[str], str] = str) -> Prepared:
    """Split flat values into the plugin's Config and the run settings, validating both."""
    plugin = get_plugin(name)
    known = SETTING_NAMES | {spec.name for spec in configs.field_specs(plugin.Config)}
    unknown = [key for key in values if key not in known]
    if unknown:
        raise configs.ConfigError(configs.unknown_key_message(unknown[0], known, label))
    plugin_values = {k: v for k, v in values.items() if k not in SETTING_NAMES}
    setting_values = {**plugin.defaults, **{k: v for k, v in values.items() if k in SETTING_NAMES}}
    return Prepared(
        plugin=plugin,
        config=configs.build(plugin.Config, plugin_values, label=label),
        settings=configs.build(RunSettings, setting_values, label=label),
    )


@attrs.frozen
class RunResult:
    path: Path
    metrics: dict[str, Any]  # the last epoch's record

    @property
    def history(self) -> list[dict[str, Any]]:
        return read_run(self.path).history


def execute(prepared: Prepared) -> RunResult:
    """Create the run folder, write config.json and let the plugin do its job."""
    from zoo import distributed

    info = prepared.plugin.info
    world = distributed.current_world()
    if world.active:
        if not issubclass(prepared.plugin, TrainablePlugin):
            raise configs.ConfigError(
                f"plugin '{info.name}' trains nothing; run it without torchrun"
            )
        distributed.join(world, prepared.settings.device)
    path = None
    if world.is_main:  # under torchrun, rank 0 makes the folder and tells the others
        recorded = prepared.to_dict()  # resolves the device: fails before any folder exists
        if prepared.settings.resume:
            path = _resumable_run(prepared)
        else:
            path = new_run_dir(prepared.settings.out, info.name)
        write_json(
            path / CONFIG_FILE,
            {
                **recorded,
                "plugin_version": info.version,
                "task": info.task,
                "python": sys.version.split()[0],
            },
        )
    path = Path(distributed.broadcast_text(world, str(path) if path else None))
    plugin = prepared.plugin(prepared.config)
    try:
        metrics = plugin.execute(RunContext(path, info.name, prepared.settings))
    except ZooError:
        if world.is_main and not prepared.settings.resume:
            _remove_if_empty(path)
        raise
    finally:
        distributed.leave(world)
    if world.is_main:
        _refresh_report(path)
    return RunResult(path, dict(metrics))


def _refresh_report(path: Path) -> None:
    """Write the run's report.html; a run that trained for hours is never failed by it."""
    from zoo.run_report import write_report

    try:
        write_report(path)
    except Exception as error:  # a picture or a caption nobody foresaw: warn, never fail
        print(f"zoo: warning: report.html not written ({error}); try `zoo report {path}`",
              file=sys.stderr)  # fmt: skip


def report(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write a run's self-contained HTML report (default RUN/report.html)."""
    from zoo.run_report import write_report

    return write_report(run_dir, output)


def compare(
    run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike = ".", *, sort: str | None = None
) -> tuple[Path, Path, str]:
    """Leaderboard of runs: leaderboard.html (sortable) and leaderboard.md in ``out``;
    returns both paths and the Markdown table."""
    from zoo.leaderboard import write_leaderboard

    return write_leaderboard(run_dirs, out, sort=sort)


def _resumable_run(prepared: Prepared) -> Path:
    """The run folder ``--resume`` names ('auto': the newest of this plugin in --out),
    after checking that it is this plugin's, has a checkpoint, and learns the same way."""
    from zoo.settings import RESUMABLE_CHANGES

    info, settings = prepared.plugin.info, prepared.settings
    if not issubclass(prepared.plugin, TrainablePlugin):
        raise configs.ConfigError(f"--resume: plugin '{info.name}' trains nothing to resume")
    if settings.resume == "auto":
        folder = Path(settings.out)
        runs = sorted(
            (p for p in folder.glob(f"{info.name}-*") if (p / STATE_FILE).is_file()),
            key=lambda p: p.name,
        )
        if not runs:
            raise RunError(f"--resume auto: no {info.name} run with a checkpoint in {folder}")
        path = runs[-1]
    else:
        path = Path(settings.resume)
    record = read_run(path)
    if record.plugin != info.name:
        raise configs.ConfigError(
            f"--resume {path}: that is a run of '{record.plugin}', not '{info.name}'"
        )
    if not (path / STATE_FILE).is_file():
        raise RunError(f"--resume {path}: the run has no checkpoint yet; start it anew")
    from zoo.checkpoints import read_meta

    done = int(read_meta(path, STATE_FILE).get("epoch", 0))
    if settings.epochs <= done:
        raise configs.ConfigError(
            f"--resume {path}: it has trained {done} epochs already and --epochs counts the "
            f"total; ask for more than {done}"
        )
    if not settings.force:
        asked = prepared.to_dict()
        now = {**asked["config"], **asked["settings"]}  # tuples already lists, as in the file
        before = {**record.config, **record.settings}
        # the precision it trained in counts, not the word: 'auto' may resolve differently
        now["precision"] = asked["resolved"]["precision"]
        if "precision" in record.resolved or before.get("precision") != "auto":
            before["precision"] = record.resolved.get("precision", before.get("precision"))
        else:  # a run from before zoo recorded what 'auto' became
            before["precision"] = now["precision"]
        for key, value in now.items():
            old = before.get(key)
            if key in RESUMABLE_CHANGES or old == value:
                continue
            raise configs.ConfigError(
                f"--resume {path}: it was trained with {configs.flag(key)} {old!r}, this call "
                f"asks for {value!r}; resume refused (repeat the run's value, or pass --force)"
            )
    return path.resolve()


def _remove_if_empty(path: Path) -> None:
    """Drop a run folder that failed before producing anything but its config."""
    if {p.name for p in path.iterdir()} <= {CONFIG_FILE}:
        shutil.rmtree(path, ignore_errors=True)


def run(name: str, **values: Any) -> RunResult:
    """Train or execute a plugin: ``zoo.run("dense", epochs=1)``."""
    return execute(prepare(name, values))


@attrs.define
class LoadedRun:
    """A run folder with its plugin rebuilt and its weights loaded, in eval mode."""

    record: RunRecord
    plugin: Any

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def model(self):
        """The plugin's networks (a ``torch.nn.ModuleDict``)."""
        return self.plugin.modules

    def predict(self, images):
        """Classifier logits for images scaled to the plugin's ``pixel_range``."""
        if not hasattr(self.plugin, "predict"):
            raise RunError(
                f"plugin '{self.record.plugin}' is not a classifier: it has no predict()"
            )
        return self.plugin.predict(images)


def load(run_dir: str | os.PathLike, *, device: str = "cpu") -> LoadedRun:
    """Rebuild a trained run's plugin from config.json and model.safetensors."""
    from zoo import checkpoints
    from zoo.devices import resolve_device
    from zoo.training import setup_modules

    record = read_run(run_dir)
    plugin_class = get_plugin(record.plugin)
    if not issubclass(plugin_class, TrainablePlugin):
        raise RunError(
            f"{record.path} is a run of '{record.plugin}' (task {plugin_class.info.task}), "
            "which trains no model to load"
        )
    label = lambda key: f"{CONFIG_FILE}: {key}"  # noqa: E731
    config = configs.build(plugin_class.Config, record.config, label=label)
    settings = configs.build(RunSettings, record.settings, label=label)
    plugin = plugin_class(config)
    # the layout the run trained and evaluated in (channels-last convolutions round
    # differently), so predictions match the trainer's; never compiled for loading
    layout = attrs.evolve(settings, compile=False)
    modules = setup_modules(plugin, resolve_device(device), layout)
    checkpoints.load_weights(record.path, modules, record.plugin)
    modules.eval()
    return LoadedRun(record, plugin)


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
    from zoo import data as datasets
    from zoo.evaluation import evaluate_with_inputs, save_results
    from zoo.generation import GeneratorPlugin

    loaded = load(run_dir, device=device)
    settings = configs.build(RunSettings, loaded.record.settings)
    test_size = settings.test_size if test_size is None else test_size
    fmnist = datasets.load(data_dir or settings.data_dir)
    test = fmnist.test.head(test_size)
    options: dict[str, Any] = {}
    if isinstance(loaded.plugin, GeneratorPlugin):
        options = _generative_options(loaded, classifier, samples, seed)
    evidence = loaded.plugin.evidence(
        test,
        device=loaded.plugin.device,
        batch_size=settings.eval_batch_size,
        train=fmnist.train,
        **options,
    )
    results = evaluate_with_inputs(evidence, loaded.plugin.metrics)
    save_results(loaded.path, results, loaded.record.plugin)
    from zoo.run_report import REPORT_FILE

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
    from zoo.colorization import ColorizerPlugin
    from zoo.colorize_files import colorize_files
    from zoo.palette import parse_color

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


def _generative_options(loaded: LoadedRun, classifier, samples: int | None, seed: int) -> dict:
    """How many samples, from which seed, and the judge: the pinned evaluator unless a
    classifier run is named."""
    from zoo.generative_metrics import classifier_judge

    options: dict[str, Any] = {"samples": samples, "seed": seed}
    if classifier is not None:
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
    from zoo.generation import GeneratorPlugin

    loaded = load(run_dir, device=device)
    if not isinstance(loaded.plugin, GeneratorPlugin):
        raise RunError(
            f"{loaded.path} is a '{loaded.record.plugin}' run (task "
            f"{loaded.plugin.info.task}); sampling needs a generative run"
        )
    if n < 1:
        raise configs.ConfigError(f"--n: must be >= 1 (got {n})")
    return loaded.plugin.sample(n, labels=label, seed=seed)
