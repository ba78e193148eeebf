"""Experiment trackers: a run's losses, metrics, pictures and checkpoint also in the
tools researchers keep their experiments in (``--log tensorboard,mlflow``).

Each tracker is a zoo.core.observers.RunObserver, off by default and an optional
extra, so the core stays light; zoo.api.execute opens them on the main process only.
The run folder stays the record: a tracker that fails mid-run warns once and stops
logging, the training goes on.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
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


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a record a tracker can chart (bools and text left out)."""
    return {
        key: float(value)
        for key, value in record.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def flat_params(start: Any) -> dict[str, Any]:
    """Hyperparameters and run settings as one flat table of plain values; the
    settings prefixed, so a plugin's ``lr`` and zoo's ``epochs`` cannot clash."""
    params = {key: _plain(value) for key, value in start.config.items()}
    params.update({f"run.{key}": _plain(value) for key, value in start.settings.items()})
    return params


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


class Warner:
    """A tracker's failure, said once: the run goes on without that tracker."""

    def __init__(self, tracker: str) -> None:
        self.tracker = tracker
        self.broken = False

    def fail(self, error: BaseException) -> None:
        from zoo.core.errors import one_line

        if not self.broken:
            print(
                f"zoo: warning: {self.tracker} logging failed ({type(error).__name__}: "
                f"{one_line(error, 200)}); training goes on, the run folder has everything",
                file=sys.stderr,
            )
        self.broken = True
