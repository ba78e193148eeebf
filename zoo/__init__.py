"""zoo: a plugin-based model zoo for Fashion-MNIST on PyTorch.

This module is the public API: the verbs (``run``, ``load``, ``evaluate``...) and every
name a plugin needs. Built-in plugins import only these names, as a third-party package
would; everything under ``zoo.core``, ``zoo.engine``, ``zoo.tasks`` and ``zoo.reports``
is internal and may move.

Importing this package does not import torch; the names that need it (the
perturbations) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from zoo.api import (
    LoadedRun,
    RunResult,
    bench,
    colorize,
    compare,
    evaluate,
    get_plugin,
    list_plugins,
    load,
    report,
    run,
    sample,
)
from zoo.core import __version__
from zoo.core.config import option
from zoo.core.contract import (
    TASKS,
    EpochContext,
    Plugin,
    PluginInfo,
    ResultTable,
    TrainablePlugin,
    TrainingContext,
    TrainPlan,
)
from zoo.core.data import CLASSES, Batch, Split, iterate_batches, to_float
from zoo.core.data import load as load_data
from zoo.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PluginLoadError,
    RunError,
    UnknownPluginError,
    ZooError,
)
from zoo.core.hookspecs import hookimpl
from zoo.core.observers import RunObserver, RunStart, StopRun
from zoo.core.registry import PluginEntry, Registry, default_registry, use_registry
from zoo.reports.plots import pyplot, save_figure, save_grid
from zoo.sweeps.run import sweep
from zoo.tasks.attack.base import AttackConfig, AttackPlugin
from zoo.tasks.classify import ClassifierConfig, ClassifierPlugin
from zoo.tasks.colorize.base import ColorizerPlugin
from zoo.tasks.colorize.color_data import build_color_dataset, random_colors
from zoo.tasks.colorize.palette import canonical_palette, resolve_palette
from zoo.tasks.generate.base import FIXED_NOISE_SEED, GeneratorPlugin, dcgan_init

# public names whose module imports torch: loaded on first use
_LAZY = {
    name: "zoo.tasks.attack.perturbations"
    for name in ("eps_in_range", "fgsm", "fgsm_step", "foreground_mask", "input_gradient", "pgd")
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute '{name}'")


__all__ = [
    "CLASSES",
    "FIXED_NOISE_SEED",
    "TASKS",
    "AttackConfig",
    "AttackPlugin",
    "Batch",
    "CheckpointError",
    "ClassifierConfig",
    "ClassifierPlugin",
    "ColorizerPlugin",
    "ConfigError",
    "DataError",
    "EpochContext",
    "GeneratorPlugin",
    "LoadedRun",
    "Plugin",
    "PluginEntry",
    "PluginInfo",
    "PluginLoadError",
    "Registry",
    "ResultTable",
    "RunError",
    "RunObserver",
    "RunResult",
    "RunStart",
    "Split",
    "StopRun",
    "TrainPlan",
    "TrainablePlugin",
    "TrainingContext",
    "UnknownPluginError",
    "ZooError",
    "__version__",
    "bench",
    "build_color_dataset",
    "canonical_palette",
    "colorize",
    "compare",
    "dcgan_init",
    "default_registry",
    "eps_in_range",
    "evaluate",
    "fgsm",
    "fgsm_step",
    "foreground_mask",
    "get_plugin",
    "hookimpl",
    "input_gradient",
    "iterate_batches",
    "list_plugins",
    "load",
    "load_data",
    "option",
    "pgd",
    "pyplot",
    "random_colors",
    "report",
    "resolve_palette",
    "run",
    "sample",
    "save_figure",
    "save_grid",
    "sweep",
    "to_float",
    "use_registry",
]
