"""Observers: what watches a training run from outside it, such as an experiment
tracker or a sweep's pruner, without the plugin knowing.

The trainer and ``zoo.api.execute`` call the hooks below, on the main process only
(rank 0 under torchrun), in the order they are listed. A plugin never calls them: the
trainer drives, observers watch. An observer that wants the run to end early (a pruned
sweep trial) raises :class:`StopRun` from ``epoch_ended``; anything else it raises
fails the run like any other fault, so a tracker that can live with its own failures
catches them itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from zoo.core.errors import Interrupted


class StopRun(Interrupted):
    """Raised by an observer's ``epoch_ended``: the epoch's checkpoint is written, so
    the run stops as after Ctrl-C, resumable and not failed."""


@attrs.frozen
class RunStart:
    """What a run is, for an observer's first call."""

    path: Path
    plugin: str
    task: str
    plugin_version: str
    config: Mapping[str, Any]  # the plugin's hyperparameters, as config.json records them
    settings: Mapping[str, Any]  # the run settings, likewise
    step: int  # where training starts: 0 for a new run, the checkpoint's step on resume
    epoch: int  # whole epochs already done


class RunObserver:
    """Base class with every hook a no-op; override the ones you need."""

    def run_started(self, start: RunStart) -> None:
        """Once the run folder is checked (and, resuming, restored), before the first step."""

    def losses_logged(self, step: int, losses: Mapping[str, float]) -> None:
        """After each losses.jsonl line (every 25 steps): the window's mean losses."""

    def epoch_ended(self, epoch: Any, record: Mapping[str, Any]) -> None:
        """After each whole epoch's metrics.jsonl line and checkpoint. ``epoch`` is the
        zoo.core.contract.EpochContext the plugin's own hook saw (its ``evaluate`` and
        ``run`` included); ``record`` is the line. Not called for a partial epoch that
        --max-steps cut short: a resume redoes it."""

    def run_finished(self, path: Path, results: Mapping[str, Any]) -> None:
        """After a successful run's final evaluation (``results``: eval.json's content,
        {} when the plugin has none) and report.html."""

    def run_closed(self, status: str) -> None:
        """Always last, even after a failure: ``status`` is "finished", "stopped"
        (Ctrl-C or StopRun, resumable) or "failed"."""


@attrs.frozen
class Observers(RunObserver):
    """Several observers as one, called in order."""

    members: tuple[RunObserver, ...] = ()

    @classmethod
    def of(cls, observers: Iterable[RunObserver]) -> Observers:
        return cls(tuple(observers))

    def __bool__(self) -> bool:
        return bool(self.members)

    def run_started(self, start: RunStart) -> None:
        for member in self.members:
            member.run_started(start)

    def losses_logged(self, step: int, losses: Mapping[str, float]) -> None:
        for member in self.members:
            member.losses_logged(step, losses)

    def epoch_ended(self, epoch: Any, record: Mapping[str, Any]) -> None:
        for member in self.members:
            member.epoch_ended(epoch, record)

    def run_finished(self, path: Path, results: Mapping[str, Any]) -> None:
        for member in self.members:
            member.run_finished(path, results)

    def run_closed(self, status: str) -> None:
        """Every member is closed, even when an earlier one raises; the first error
        is raised after."""
        first: BaseException | None = None
        for member in self.members:
            try:
                member.run_closed(status)
            except BaseException as error:
                first = first or error
        if first is not None:
            raise first
