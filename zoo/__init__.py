"""zoo: a plugin-based model zoo for Fashion-MNIST on PyTorch.

Importing this package does not import torch; the heavy parts load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

from zoo.api import (  # noqa: E402
    LoadedRun,
    RunResult,
    evaluate,
    get_plugin,
    list_plugins,
    load,
    run,
)
from zoo.classification import ClassifierConfig, ClassifierPlugin  # noqa: E402
from zoo.config import option  # noqa: E402
from zoo.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DataError,
    PluginLoadError,
    RunError,
    UnknownPluginError,
    ZooError,
)
from zoo.hookspecs import hookimpl  # noqa: E402
from zoo.plugin import TASKS, Plugin, PluginInfo, TrainablePlugin  # noqa: E402

__all__ = [
    "TASKS",
    "CheckpointError",
    "ClassifierConfig",
    "ClassifierPlugin",
    "ConfigError",
    "DataError",
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
    "evaluate",
    "get_plugin",
    "hookimpl",
    "list_plugins",
    "load",
    "option",
    "run",
]
