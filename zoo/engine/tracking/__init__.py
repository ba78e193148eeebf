"""Experiment trackers: a run's losses, metrics, pictures and checkpoint also in the
tools researchers keep their experiments in (``--log tensorboard,mlflow``).

Each tracker is a zoo.core.observers.RunObserver, off by default and an optional
extra, so the core stays light; zoo.api.execute opens them on the main process only.
The run folder stays the record: a tracker that fails mid-run warns once and stops
logging, the training goes on.
"""

from __future__ import annotations

import importlib
from typing import Any

from zoo.core.errors import ConfigError
from zoo.core.observers import RunObserver

# tracker -> (the module it needs, the extra that installs it)
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}


def require(tracker: str) -> None:
    """One line naming the extra when a tracker's library is not installed."""
    module, extra = EXTRAS[tracker]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"--log {tracker}: {module} is not installed; pip install 'zoo[{extra}]'"
        ) from None


def open_trackers(settings: Any, plugin_name: str) -> list[RunObserver]:
    """The trackers ``settings.log`` asks for, connected (a tracking store that cannot
    be reached fails here, before a run folder exists)."""
    trackers: list[RunObserver] = []
    for name in dict.fromkeys(settings.log):
        require(name)
        if name == "tensorboard":
            from zoo.engine.tracking.tensorboard import TensorBoardTracker

            trackers.append(TensorBoardTracker(settings.log_dir))
        else:
            from zoo.engine.tracking.mlflow import MlflowTracker

            trackers.append(MlflowTracker.connect(settings, plugin_name))
    return trackers
