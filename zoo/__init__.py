"""zoo: a plugin-based model zoo for Fashion-MNIST on PyTorch.

Importing this package does not import torch; the heavy parts load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

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
from zoo.classification import ClassifierConfig, ClassifierPlugin
from zoo.colorization import ColorizerPlugin
from zoo.config import option
from zoo.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PluginLoadError,
    RunError,
    UnknownPluginError,
    ZooError,
)
from zoo.generation import GeneratorPlugin
from zoo.hookspecs import hookimpl
from zoo.plugin import TASKS, Plugin, PluginInfo, TrainablePlugin

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
