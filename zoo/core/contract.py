"""The plugin contract: metadata, a typed Config, and what the trainer calls.

A plugin is a class. Its frozen :class:`PluginInfo` says what it is, its attrs
``Config`` holds its hyperparameters, and the methods below are the only things the
core calls. Built-ins and third-party plugins use exactly this API.

This module imports no torch, so listing plugins stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

if TYPE_CHECKING:
    import torch
    from torch import nn

    from zoo.core.data import Batch, Split
    from zoo.core.runs import RunContext

TASKS = ("classify", "attack", "generate", "colorize")
_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(
            f"plugin name {value!r} must be lowercase letters, digits, '_' or '-', "
            "starting with a letter"
        )


@attrs.frozen
class PluginInfo:
    """What a plugin is; shown by ``zoo list`` and ``zoo info``."""

    name: str = attrs.field(validator=_check_name)
    task: str = attrs.field(validator=attrs.validators.in_(TASKS))
    summary: str
    paper: str = ""
    version: str = "1.0"


@attrs.frozen
class NoConfig:
    """Config of a plugin without hyperparameters."""


# task -> how the evidence of its core metrics is made, registered by the task's package
TASK_EVIDENCE: dict[str, Callable[..., Any]] = {}


def register_evidence(task: str, make: Callable[..., Any]) -> None:
    """Make ``make(plugin, split, device=..., batch_size=...)`` the evidence of every
    plugin of ``task`` that does not make its own: the tasks above the core plug in here,
    so the contract never imports them."""
    TASK_EVIDENCE[task] = make


@attrs.frozen
class ResultTable:
    """A table a plugin makes of its results files, for its run's report: the numbers
    as the field reads them (an attack's accuracy per target and epsilon), above the
    raw JSON. ``note`` says the protocol (scale, images, settings) in one line."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""


class Plugin:
    """Base of every plugin. Subclasses set ``info`` and usually ``Config``.

    ``defaults`` overrides run settings for this plugin (e.g. the paper's batch size),
    ``metrics`` names the core evaluator metrics that apply to it, and
    ``pixel_range`` is the range the trainer scales images to before a batch is handed
    over.
    """

    info: ClassVar[PluginInfo]
    Config: ClassVar[type] = NoConfig
    defaults: ClassVar[Mapping[str, Any]] = {}
    metrics: ClassVar[tuple[str, ...]] = ()
    pixel_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    evaluate_after_training: ClassVar[bool] = True  # False where metrics need more inputs
    # keyword options of evidence() beyond the split ("samples", "seed", "judge"), which
    # `zoo eval` passes on where a plugin takes them
    evaluation_options: ClassVar[frozenset[str]] = frozenset()
    # captions of the pictures the plugin writes into its run folder, by glob relative to
    # it ("{n}": the last number in the file name), for `zoo report`
    report_captions: ClassVar[Mapping[str, str]] = {}
    # the picture (relative to the run folder) a leaderboard shows for a run of it, if any
    preview: ClassVar[str | None] = None

    def __init__(self, config: Any = None) -> None:
        self.config = self.Config() if config is None else config

    @classmethod
    def report_tables(
        cls, results: Mapping[str, Any], config: Mapping[str, Any]
    ) -> Sequence[ResultTable]:
        """Called by ``zoo report`` (without torch) with the run's results files (stem ->
        JSON; a damaged one is a string) and its saved config; tables shown before them."""
        return ()

    @classmethod
    def scores_of_other_runs(cls, results: Mapping[str, Any]) -> Mapping[str, Mapping[str, float]]:
        """Called by ``zoo compare`` for each compared run of this plugin: numbers it
        measured of other runs (their folder -> column -> value), shown on those runs'
        rows, as an attack's accuracies on its targets sit beside their clean accuracy."""
        return {}

    def execute(self, run: RunContext) -> Mapping[str, Any]:
        """Do the plugin's job inside a prepared run folder; return its final metrics."""
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    def evidence(
        self, split: Split, *, device: Any, batch_size: int, train: Split | None = None
    ) -> Any:
        """What the core metrics of this plugin are computed from (one pass over ``split``,
        the test images, in fp32); ``train`` is the run's training split, for metrics that
        set a result against real training data. By default, the evidence its task
        registered (:func:`register_evidence`: classification logits for task classify),
        so a plugin of that task gets the task's metrics without a task base class."""
        from zoo.core.errors import ConfigError

        make = TASK_EVIDENCE.get(self.info.task)
        if make is not None:
            return make(self, split, device=device, batch_size=batch_size)
        raise ConfigError(
            f"plugin '{self.info.name}' names metrics ({', '.join(self.metrics)}) but makes no "
            "evidence for them: implement evidence() or subclass a task base such as "
            "zoo.ClassifierPlugin"
        )


@attrs.frozen
class TrainPlan:
    """How long training will be, for schedules that depend on it (e.g. cosine decay):
    the whole run as the call that started it planned it. ``--max-steps`` and resumes
    asking for fewer epochs only stop early; asking for more re-plans."""

    epochs: int
    steps_per_epoch: int
    total_steps: int


@attrs.define
class TrainingContext:
    """What the trainer hands a plugin before ``configure_optimizers()`` and keeps up to
    date: the plan, the optimizers, and the counters the trainer owns. The plugin reads
    it (``self.plan``, ``self.global_step``) and steps through :meth:`update`."""

    plan: TrainPlan
    skip_nonfinite: bool = False  # --on-nonfinite skip
    global_step: int = 0  # optimizer steps done before the current train_step
    skipped_updates: int = 0  # updates dropped for a non-finite loss or gradient
    applied_updates: int = 0  # optimizer steps taken through update()
    optimizers: dict[str, torch.optim.Optimizer] = attrs.field(factory=dict)

    def update(self, name: str, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` into fresh gradients and step the optimizer ``name``;
        under ``skip_nonfinite`` an update whose loss or gradients are not finite is
        dropped (and counted) instead of poisoning the weights."""
        import torch

        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        if self.skip_nonfinite and not bool(torch.isfinite(loss.detach()).all()):
            self.skipped_updates += 1
            return
        loss.backward()
        if self.skip_nonfinite and not _gradients_finite(optimizer):
            optimizer.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            return
        optimizer.step()
        self.applied_updates += 1


@attrs.frozen
class EpochContext:
    """What ``end_of_epoch`` and ``end_of_training`` get: where the run is, and the core
    evaluator (which runs in fp32; ``precision`` is what the steps train in)."""

    epoch: int
    step: int
    run: RunContext
    plugin: TrainablePlugin
    device: torch.device
    precision: str
    evaluator: Callable[[Iterable[str]], dict[str, Any]]  # handed over by the trainer

    def evaluate(self, names: Iterable[str], *, prefix: str = "test_") -> dict[str, Any]:
        """Core metrics on the test split, keys prefixed (``test_accuracy``)."""
        return {prefix + k: v for k, v in self.evaluator(names).items()}


class TrainablePlugin(Plugin):
    """A plugin the generic trainer trains: it builds modules and does one step.

    The trainer drives it and owns everything around the step: device, precision,
    seeding, batches, epochs and max-steps, progress, metrics, checkpoints. It hands over
    a :class:`TrainingContext` (``self.context``) before ``configure_optimizers()``. A
    GAN owns its D/G update order inside :meth:`train_step`.
    """

    modules: nn.ModuleDict  # set by the core from build(), on the run's device
    device: torch.device
    context: TrainingContext  # handed over by the trainer before configure_optimizers()
    # the devices on which --precision auto may pick bf16 (where the hardware is fast at
    # it): a plugin whose quality was measured to hold in bf16 on only some of them
    # names those; together with --fp32-modules defaults for the layers that need fp32
    auto_bf16_devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    # why --compile cannot train this plugin, said to the user before any work (None: it
    # can); e.g. a gradient penalty's double backward, which torch.compile lacks
    cannot_compile: ClassVar[str | None] = None

    @property
    def plan(self) -> TrainPlan:
        """The run's plan (epochs, steps per epoch, total steps)."""
        return self.context.plan

    @property
    def global_step(self) -> int:
        """Optimizer steps done before the current ``train_step``."""
        return self.context.global_step

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """What ``configure_optimizers()`` returned, by name."""
        return self.context.optimizers

    def build(self) -> Mapping[str, nn.Module]:
        """Create the networks (on the CPU). Their weights are what a checkpoint holds."""
        raise NotImplementedError

    def configure_optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        """Create optimizers over ``self.modules``, after they were moved to the device."""
        raise NotImplementedError

    def train_step(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        """Forward, backward and optimizer updates for one batch; return detached losses."""
        raise NotImplementedError

    def update(self, name: str, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` and step the optimizer ``name``: the building block of
        multi-network steps such as a GAN's D and G updates (see
        :meth:`TrainingContext.update` for ``--on-nonfinite skip``)."""
        self.context.update(name, loss)

    def end_of_epoch(self, epoch: EpochContext) -> Mapping[str, float]:
        """Hook after each epoch (evaluate, write sample grids); returns extra metrics."""
        return {}

    def end_of_training(self, epoch: EpochContext) -> None:
        """Hook after the last epoch (e.g. assemble an animation of the epoch grids)."""

    def execute(self, run: RunContext) -> Mapping[str, Any]:
        """Not called: zoo's trainer drives a trainable plugin (``zoo.run(name)``)."""
        raise NotImplementedError(
            f"{type(self).__name__} is trained by zoo's trainer, not executed: "
            f"use zoo.run({self.info.name!r}) or `zoo run {self.info.name}`"
        )


def _gradients_finite(optimizer: torch.optim.Optimizer) -> bool:
    import torch

    grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
    checks = [torch.isfinite(g).all() for g in grads if g is not None]
    return bool(torch.stack(checks).all()) if checks else True
