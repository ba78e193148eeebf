"""zoo: a plugin-based model zoo for Fashion-MNIST on PyTorch.

Importing this package does not import torch; the heavy parts load on first use.
"""

from __future__ import annotations

from zoo.api import (
    LoadedRun,
    RunResult,
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
from zoo.core.contract import TASKS, Plugin, PluginInfo, TrainablePlugin
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
from zoo.tasks.classify import ClassifierConfig, ClassifierPlugin
from zoo.tasks.colorize.base import ColorizerPlugin
from zoo.tasks.generate.base import GeneratorPlugin

__all__ = [
    "TASKS",
    "CheckpointError",
    "ClassifierConfig",
    "ClassifierPlugin",
    "ColorizerPlugin",
    "ConfigError",
    "DataError",
    "GeneratorPlugin",
    "LoadedRun",
    "Plugin",
    "PluginInfo",
    "PluginLoadError",
    "RunError",
    "RunResult",
    "TrainablePlugin",
    "UnknownPluginError",
    "ZooError",
    "__version__",
    "colorize",
    "compare",
    "evaluate",
    "get_plugin",
    "hookimpl",
    "list_plugins",
    "load",
    "option",
    "report",
    "run",
    "sample",
]
