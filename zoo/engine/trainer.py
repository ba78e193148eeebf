"""The generic trainer: everything around a plugin's ``train_step``.

It owns the device, precision, seeding, batching, epochs and max-steps, progress,
metrics, per-epoch hooks and checkpoints, so a plugin only says how one step goes.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
import torch
from tqdm import tqdm

from zoo.core import __version__
from zoo.core.config import to_dict
from zoo.core.contract import EpochContext, TrainablePlugin, TrainingContext, TrainPlan
from zoo.core.data import Batch, iterate_batches
from zoo.core.errors import (
    CheckpointError,
    ConfigError,
    Interrupted,
    RunError,
    ZooError,
    one_line,
    plugin_code,
)
from zoo.core.observers import Observers, RunStart, StopRun
from zoo.core.runs import (
    LOSSES_FILE,
    METRICS_FILE,
    STATE_FILE,
    RunContext,
    append_jsonl,
    read_jsonl,
    remove_stale_temp_files,
    truncate_jsonl,
    write_json,
)
from zoo.core.settings import CUDA_GRAPH_MODES, steps_per_epoch, zero_steps_message
from zoo.engine import checkpoints, distributed
from zoo.engine.devices import autocast, keep_fp32, resolve_device, resolve_precision
from zoo.engine.evaluator import evaluate, evaluate_with_inputs, save_results
from zoo.engine.loss_window import LossWindow
from zoo.engine.progress import StopRequest, duration, format_record, resume_command
from zoo.reports.plots import plot_losses

LOG_EVERY = 25  # steps per smoothed loss record (losses.jsonl, progress bar)


def checkpoint_meta(
    plugin: TrainablePlugin,
    run: RunContext,
    epoch: int,
    step: int,
    *,
    windows: Mapping[str, Any] | None = None,
) -> dict:
    """The checkpoint's JSON header: where the run is, its plan (fixed by the call that
    started it) and, inside an epoch, the open loss windows."""
    meta = {
        "plugin": plugin.info.name,
        "plugin_version": plugin.info.version,
        "zoo_version": __version__,
        "torch_version": torch.__version__,
        "epoch": epoch,
        "step": step,
        "seed": run.settings.seed,
        "config": to_dict(plugin.config),
        "plan": attrs.asdict(plugin.plan),
    }
    if windows is not None:
        meta["windows"] = dict(windows)
    return meta


def setup_modules(
    plugin: TrainablePlugin, device: torch.device, settings: Any = None
) -> torch.nn.ModuleDict:
    """Build the plugin's networks and move them to ``device`` (training and loading);
    ``settings`` (RunSettings) may ask for the channels-last layout and torch.compile."""
    try:
        modules = torch.nn.ModuleDict(dict(plugin.build())).to(device)
    except (MemoryError, RuntimeError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not isinstance(error, (MemoryError, _OUT_OF_MEMORY)) and ("alloc" not in str(error)):
            raise
        raise ConfigError(
            f"plugin '{plugin.info.name}': its networks need more memory than {device} has "
            "with these hyperparameters; choose smaller sizes"
        ) from None
    if settings is not None and settings.channels_last:
        modules = modules.to(memory_format=torch.channels_last)
    if settings is not None and settings.fp32_modules:
        _keep_fp32(plugin, modules, device, settings)
    if settings is not None and settings.compile:
        mode = None if settings.compile_mode == "default" else settings.compile_mode
        # CUDA graphs: one static graph per batch size (the last batch, the grid, FD)
        dynamic = False if mode in CUDA_GRAPH_MODES else None
        for module in modules.values():
            module.compile(mode=mode, dynamic=dynamic)  # in place: state_dict keys unchanged
    plugin.modules = modules
    plugin.device = device
    return modules


def step_marker(device: torch.device, settings: Any) -> Callable[[], None] | None:
    """What to call before each training step where compiled networks replay CUDA graphs:
    it starts a new graph iteration there. Without it, torch starts one at any compiled
    call made while no backward is pending (G's loss calls D after D's backward), and
    frees the activations G's backward still needs. None elsewhere."""
    if device.type == "cuda" and settings.compile and settings.compile_mode in CUDA_GRAPH_MODES:
        return torch.compiler.cudagraph_mark_step_begin
    return None


def _keep_fp32(plugin, modules: torch.nn.ModuleDict, device: torch.device, settings) -> None:
    """--fp32-modules: those networks (or layers of them, ``discriminator.fc.3``) run in
    fp32 when the run trains in bf16."""
    kept = []
    for name in settings.fp32_modules:
        try:
            kept.append(modules.get_submodule(name))
        except AttributeError:
            raise ConfigError(
                f"--fp32-modules {name}: plugin '{plugin.info.name}' has no such network or "
                f"layer (its networks: {', '.join(modules)}; a layer: NETWORK.PATH as in "
                "its checkpoint's keys)"
            ) from None
    if resolve_precision(settings.precision, device, plugin.auto_bf16_devices) == "bf16":
        for module in kept:
            keep_fp32(module, device)


def hand_over(
    plugin: TrainablePlugin, plan: TrainPlan, *, skip_nonfinite: bool = False
) -> TrainingContext:
    """Give the plugin the trainer's context (plan and counters), then let it build its
    optimizers over its modules: the setup the trainer, the step benchmark and tests
    share, after :func:`setup_modules`."""
    context = plugin.context = TrainingContext(plan, skip_nonfinite)
    context.optimizers = dict(plugin.configure_optimizers())
    return context


_OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5


def channels_last_batch(batch: Batch) -> Batch:
    """The batch with its images in the channels-last layout (for --channels-last)."""
    images = batch.images
    if images.dim() != 4:
        return batch
    return attrs.evolve(batch, images=images.contiguous(memory_format=torch.channels_last))


def apply_threads(threads: int | None) -> None:
    """Set torch's CPU thread count when asked (it is process-wide)."""
    if threads is not None:
        torch.set_num_threads(threads)


def _check_batch_norm(modules: torch.nn.Module, batch_size: int, images: int) -> None:
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    if min(batch_size, images) < 2 and any(isinstance(m, norms) for m in modules.modules()):
        raise ConfigError(
            "--batch-size: this plugin's networks use batch norm, which needs at least 2 "
            "images per batch (and --train-size >= 2)"
        )


def plan_run(epochs: int, per_epoch: int, planned: int | None) -> tuple[TrainPlan, str | None]:
    """The run's plan, fixed by the call that started it (``planned`` epochs; None for a
    new run): a resume asking for fewer epochs (or --max-steps) only stops early, one
    asking for more re-plans and says so."""
    if planned is not None:
        if planned >= epochs:
            return TrainPlan(planned, per_epoch, planned * per_epoch), None
        note = (
            f"zoo: re-planning the run over {epochs} epochs (it was planned over {planned}): "
            f"schedules that follow its length, such as cosine decay, now span "
            f"{epochs * per_epoch} steps, so it will differ from a run started with "
            f"--epochs {epochs}"
        )
        return TrainPlan(epochs, per_epoch, epochs * per_epoch), note
    return TrainPlan(epochs, per_epoch, epochs * per_epoch), None


@attrs.define
class Position:
    """Where training is: whole epochs done, steps done, batches into the next epoch."""

    epoch: int = 0
    step: int = 0
    skip: int = 0


@attrs.define
class _LossWindows:
    """The open loss windows of an epoch: the next losses.jsonl line, and the epoch."""

    log: LossWindow
    epoch: LossWindow
    images: int = 0
    started: float = attrs.field(factory=time.perf_counter)

    def state(self) -> dict[str, Any]:
        return {"log": self.log.state(), "epoch": self.epoch.state()}


class Trainer:
    def __init__(self, plugin: TrainablePlugin, run: RunContext) -> None:
        self.plugin = plugin
        self.run = run
        self.settings = run.settings
        self.position = Position()
        self._stop: StopRequest | None = None
        self._header: Mapping[str, Any] = {}  # the resumed checkpoint's, set by _setup
        self.observers = run.observers or Observers()

    def fit(self) -> dict[str, Any]:
        """Train the plugin; Ctrl-C saves a checkpoint at the next step and stops."""
        try:
            return self._fit()
        finally:
            if self._stop is not None:
                self._stop.restore()

    def _plugin_code(self, hook: str) -> contextlib.AbstractContextManager[None]:
        """An exception from the plugin's own code becomes one line naming the plugin,
        its hook and the step."""
        return plugin_code(lambda: f"plugin '{self.plugin.info.name}' failed in {hook} "
                                   f"after step {self.position.step}")  # fmt: skip

    def _fit(self) -> dict[str, Any]:
        note = self._setup()
        windows = self._begin() if self.settings.resume else None
        self._announce(note)
        if self.world.is_main:
            self.observers.run_started(self._start())
        record = self._train(windows)
        self._finish(record)
        return record

    def _setup(self) -> str | None:
        """Device, data, plan, networks, optimizers and the final evaluation's inputs:
        everything a run needs, checked before anything is written."""
        settings, plugin, run = self.settings, self.plugin, self.run
        world = self.world = distributed.current_world()
        if settings.on_nonfinite == "skip" and world.active:
            raise ConfigError(
                "--on-nonfinite skip works in one process only (every process would have to "
                "skip the same update); use the default, stop, under torchrun"
            )
        apply_threads(settings.threads)
        torch.manual_seed(settings.seed)
        device = self.device = distributed.device_for(world, resolve_device(settings.device))
        self.precision = resolve_precision(settings.precision, device, plugin.auto_bf16_devices)
        self.train = run.data.train.to(device)
        per_epoch = steps_per_epoch(len(self.train), settings.batch_size, world.size)
        if per_epoch == 0:
            raise ConfigError(zero_steps_message(len(self.train), settings.batch_size))
        # the checkpoint a resume continues: read once, for its plan and its loss windows
        self._header = checkpoints.read_meta(run.path, STATE_FILE) if settings.resume else {}
        plan, note = plan_run(settings.epochs, per_epoch, self._recorded_plan(per_epoch))
        self.stop_at = settings.epochs * per_epoch
        if settings.max_steps is not None:
            self.stop_at = min(self.stop_at, settings.max_steps)
        with self._plugin_code("build"):
            modules = self.modules = setup_modules(plugin, device, settings)
        self._mark_step = step_marker(device, settings)
        _check_batch_norm(modules, settings.batch_size, len(self.train))
        with self._plugin_code("configure_optimizers"):
            skip = settings.on_nonfinite == "skip"
            self.context = hand_over(plugin, plan, skip_nonfinite=skip)
        self.optimizers = self.context.optimizers
        with self._plugin_code("evidence"):
            self.evaluation = self._evaluation_inputs(device)  # checked now, used at the end
        self.shuffle = torch.Generator().manual_seed(settings.seed)  # same order on every rank
        self.replicas = modules  # what train_step sees: under torchrun, the DDP wrappers
        if world.active:
            self.replicas = distributed.replicate(modules, device)
            torch.manual_seed(settings.seed + world.rank)  # own noise and dropout per replica
        return note

    def _start(self) -> RunStart:
        info = self.plugin.info
        return RunStart(self.run.path, info.name, info.task, info.version,
                        to_dict(self.plugin.config), to_dict(self.settings),
                        self.position.step, self.position.epoch)  # fmt: skip

    def _recorded_plan(self, per_epoch: int) -> int | None:
        """The planned epochs in the checkpoint a resume continues (None: a new run, or
        one from before zoo recorded plans); its epochs must have this call's steps."""
        plan = self._header.get("plan")
        if not isinstance(plan, Mapping):
            return None
        try:
            recorded = int(plan["epochs"]), int(plan["steps_per_epoch"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                f"{self.run.path / STATE_FILE}: its plan is damaged ({plan!r:.80}); the run "
                "cannot be resumed exactly"
            ) from None
        if recorded[1] != per_epoch:
            raise ConfigError(
                f"--resume {self.run.path}: its epochs have {recorded[1]} steps, this call's "
                f"would have {per_epoch} (batch size, training images or processes differ); "
                "resume with the run's own"
            )
        return recorded[0]

    def _begin(self) -> _LossWindows | None:
        """Restore a checkpoint into the networks, optimizers and RNGs. Only once all of
        it is checked is the run folder touched: config.json records the call, stale temp
        files go, and the logs are cut back to the checkpoint."""
        fresh = _hyperparameters(self.optimizers)
        windows = self._restored_windows(self._header)
        rng, header = checkpoints.resume(
            self.run.path, self.modules, self.optimizers, self.plugin.info.name, publish=False
        )
        epoch, step = _position(header, self.run.path)
        if self.settings.force:
            self._apply_forced(fresh)
        self._restore_rng(rng, epoch)
        per_epoch = self.plugin.plan.steps_per_epoch
        if not 0 <= step - epoch * per_epoch < per_epoch:  # zoo < 0.2 ended epochs early
            epoch = step // per_epoch
        self.position = Position(epoch, step, step - epoch * per_epoch)
        if self.world.is_main:
            if self.run.before_first_write is not None:
                self.run.before_first_write(step)
            checkpoints.publish(self.run.path, self.modules, header)
            remove_stale_temp_files(self.run.path)
            truncate_jsonl(self.run.path / METRICS_FILE, lambda r: _covered(r, "epoch", epoch))
            truncate_jsonl(self.run.path / LOSSES_FILE, lambda r: _covered(r, "step", step))
        return windows

    def _restored_windows(self, header: Mapping[str, Any]) -> _LossWindows | None:
        saved = header.get("windows")
        if saved is None:
            return None
        try:
            return _LossWindows(
                LossWindow.restore(self.context, saved["log"], self.device),
                LossWindow.restore(self.context, saved["epoch"], self.device),
            )
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError):
            raise CheckpointError(
                f"{self.run.path / STATE_FILE}: its loss windows are damaged; the run "
                "cannot be resumed exactly"
            ) from None

    def _restore_rng(self, rng: Mapping[str, torch.Tensor], epoch: int) -> None:
        try:
            torch.set_rng_state(rng["torch"])
            self.shuffle.set_state(rng["shuffle"])
            if self.device.type == "cuda" and "cuda" in rng:
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{self.run.path / STATE_FILE} holds no usable RNG state ({one_line(error)}); "
                "the run cannot be resumed exactly"
            ) from None
        if self.world.active:
            torch.manual_seed(self.settings.seed + self.world.rank + 7919 * epoch)

    def _apply_forced(self, fresh: Mapping[str, list[dict[str, Any]]]) -> None:
        """--force: optimizer hyperparameters that this call's config sets differently
        from the run's recorded one replace the restored ones (the rest, such as a
        learning rate a schedule lowered, stay as restored)."""
        before = self._recorded_hyperparameters()
        for name, optimizer in self.optimizers.items():
            for index, group in enumerate(optimizer.param_groups):
                old = before.get(name, [])[index] if index < len(before.get(name, [])) else {}
                for key, value in fresh[name][index].items():
                    if old.get(key, object()) == value or group.get(key) == value:
                        continue
                    self._say(f"zoo: --force: optimizer '{name}' now uses {key} {value!r} "
                              f"(the checkpoint had {group.get(key)!r})")  # fmt: skip
                    group[key] = value

    def _recorded_hyperparameters(self) -> dict[str, list[dict[str, Any]]]:
        """The optimizers' settings under the config the run recorded ({} when that
        config no longer builds: every differing value is then taken from this call)."""
        from zoo.core.config import build
        from zoo.core.runs import read_run

        kind = type(self.plugin)
        try:
            recorded = kind(build(kind.Config, read_run(self.run.path).config))
        except (ZooError, TypeError, ValueError):
            return {}
        recorded.modules, recorded.device = self.modules, self.device
        return _hyperparameters(hand_over(recorded, self.plugin.plan).optimizers)

    def _announce(self, note: str | None) -> None:
        settings, plugin, world = self.settings, self.plugin, self.world
        processes = f" x {world.size} processes" if world.active else ""
        self._say(
            f"zoo: training {plugin.info.name} on {self.device}{processes} ({self.precision}), "
            f"{len(self.train)} images, batch {settings.batch_size}, {self.stop_at} steps "
            f"-> {self.run.path}"
        )
        if note:
            self._say(note)
        if settings.resume:
            self._say(
                f"zoo: resuming {self.run.path} at step {self.position.step} "
                f"(epoch {self.position.epoch + 1})"
            )

    def _train(self, windows: _LossWindows | None) -> dict[str, Any]:
        interactive = self.settings.progress and sys.stderr.isatty() and self.world.is_main
        self._bar = tqdm(total=self.stop_at, unit="step", dynamic_ncols=True,
                         disable=not interactive, file=sys.stderr)  # fmt: skip
        self._bar.update(self.position.step)
        self._stop = StopRequest(enabled=not self.world.active)
        self._started, self._started_step = time.perf_counter(), self.position.step
        record: dict[str, Any] = {}
        for epoch in range(self.position.epoch + 1, self.settings.epochs + 1):
            if self.position.step >= self.stop_at:
                break
            record = self._epoch(epoch, windows)
            windows = None
            if record.get("partial"):
                break
        self._stop.restore()
        self._bar.close()
        return record

    def _epoch(self, epoch: int, windows: _LossWindows | None) -> dict[str, Any]:
        plugin, position = self.plugin, self.position
        self.modules.train()
        windows = windows or _LossWindows(LossWindow(self.context), LossWindow(self.context))
        windows.started = time.perf_counter()
        order_state = self.shuffle.get_state()  # a stop inside the epoch redraws this order
        batches = iterate_batches(
            self.train, self.settings.batch_size, plugin.pixel_range, generator=self.shuffle,
            drop_singleton=True, shard=(self.world.rank, self.world.size), skip=position.skip,
        )  # fmt: skip
        position.skip = 0
        with self._replicas_in_training():
            for batch in batches:
                if self._stop.requested:  # Ctrl-C: checkpoint here, at a step boundary
                    self._stop.restore()
                    self._checkpoint_inside(epoch, order_state, windows)
                    self._interrupted(epoch)
                self._step(batch, windows)
                if position.step >= self.stop_at:
                    break
        if position.step < epoch * plugin.plan.steps_per_epoch:  # --max-steps, mid-epoch
            self._check_finite(windows.log, windows.log.means(), position.step, whole=False)
            self._checkpoint_inside(epoch, order_state, windows)
            if windows.log.first_step is not None:
                self._log(windows, partial=True)
            return self._end_epoch(epoch, windows, partial=True)
        return self._end_epoch(epoch, windows)

    @contextlib.contextmanager
    def _replicas_in_training(self) -> Iterator[None]:
        """The steps of an epoch see the DDP replicas under torchrun (gradients are
        averaged); hooks, checkpoints and evaluation see the plugin's own networks."""
        self.plugin.modules = self.replicas
        try:
            yield
        finally:
            self.plugin.modules = self.modules

    def _step(self, batch: Batch, windows: _LossWindows) -> None:
        plugin, position = self.plugin, self.position
        self.context.global_step = position.step
        if self.settings.channels_last:
            batch = channels_last_batch(batch)
        self._begin_graph_iteration()
        try:  # no context manager per step: this is the hot path
            with autocast(self.device, self.precision):
                losses = plugin.train_step(batch)
        except Exception:
            with self._plugin_code("train_step"):  # turns it into one line, names the step
                raise
        position.step += 1
        windows.images += len(batch) * self.world.size
        windows.log.add(losses, len(batch), position.step)
        self._bar.update(1)
        if position.step % LOG_EVERY == 0 or position.step == plugin.plan.total_steps:
            self._log(windows)

    def _begin_graph_iteration(self) -> None:
        """Under CUDA graphs: before each step, and before the sampling and evaluation
        after the steps, so their graphs do not hang off the last training step's."""
        if self._mark_step is not None:
            self._mark_step()

    def _log(self, windows: _LossWindows, *, partial: bool = False) -> None:
        """One losses.jsonl line; a partial one (a --max-steps stop between two lines) is
        dropped when the run resumes, whose next line then covers those steps too."""
        step, means = self.position.step, windows.log.means()
        self._check_finite(windows.log, means, step, whole=not partial)
        if self.world.is_main:
            line = {"step": step, **means, **({"partial": True} if partial else {})}
            append_jsonl(self.run.path / LOSSES_FILE, line)
            if not partial:  # a resume rewrites a partial line: observers see it once
                self.observers.losses_logged(step, means)
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
        windows.epoch.absorb(windows.log)
        windows.log = LossWindow(self.context)

    def _end_epoch(self, epoch: int, windows: _LossWindows, *, partial: bool = False) -> dict:
        """Epoch means, the plugin's end-of-epoch hook, metrics.jsonl and (for a whole
        epoch) the checkpoint. A partial epoch's record is dropped on resume."""
        plugin, step = self.plugin, self.position.step
        seconds = time.perf_counter() - windows.started
        windows.epoch.absorb(windows.log)  # the steps since the last log line
        train_means = windows.epoch.means()
        self._check_finite(windows.epoch, train_means, step)
        if self.context.skip_nonfinite:
            train_means["skipped_updates"] = windows.epoch.skipped
            if windows.epoch.skipped:
                self._say(f"zoo: warning: epoch {epoch} skipped {windows.epoch.skipped} "
                          "update(s) with a non-finite loss or gradient")  # fmt: skip
        self._begin_graph_iteration()
        self.modules.eval()
        extra = {}
        if self.world.is_main:  # the other ranks take its state just below
            with torch.no_grad(), self._plugin_code("end_of_epoch"):
                extra = plugin.end_of_epoch(self._context(epoch))
        distributed.sync_state(self.world, self.modules, self.optimizers)
        record = {"epoch": epoch, "step": step, "seconds": round(seconds, 3),
                  "images_per_s": round(windows.images / max(seconds, 1e-9), 1),
                  **train_means, **extra, **({"partial": True} if partial else {})}  # fmt: skip
        if not partial:
            self._check_weights(step)
        if self.world.is_main:
            append_jsonl(self.run.path / METRICS_FILE, record)
            if not partial:
                self._save(self.shuffle.get_state(), epoch, step)
            self._print_epoch(epoch, record)
        if not partial:  # after the checkpoint: an observer's StopRun loses nothing
            self._observe_epoch(epoch, record)
        distributed.barrier(self.world)
        return record

    def _observe_epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        """Observers see the epoch on the main process; a StopRun stops every process."""
        stop: StopRun | None = None
        if self.world.is_main:
            try:
                self.observers.epoch_ended(self._context(epoch), record)
            except StopRun as error:
                stop = error
        if not distributed.all_ranks_agree(self.world, stop is None):
            raise stop or StopRun(f"an observer stopped the run after epoch {epoch}")

    def _context(self, epoch: int) -> EpochContext:
        return EpochContext(epoch, self.position.step, self.run, self.plugin, self.device,
                            self.precision, self._evaluate_test)  # fmt: skip

    def _evaluate_test(self, names: Iterable[str]) -> dict[str, Any]:
        """The core metrics ``names`` on the run's test split (an epoch hook's evaluate)."""
        evidence = self.plugin.evidence(
            self.run.data.test, device=self.device, batch_size=self.settings.eval_batch_size
        )
        return evaluate(evidence, names)

    def _print_epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        step = self.position.step
        done = max(step - self._started_step, 1)
        remaining = (time.perf_counter() - self._started) / done * (self.stop_at - step)
        stopped = f" (stopped by --max-steps {self.stop_at})" if record.get("partial") else ""
        message = f"epoch {epoch}/{self.settings.epochs}{stopped}  {format_record(record)}"
        tqdm.write(f"{message}  ETA {duration(remaining)}", file=sys.stderr)

    def _finish(self, record: Mapping[str, Any]) -> None:
        plugin, run, world = self.plugin, self.run, self.world
        if world.active:
            self._check_replicas(self.modules)
        self._begin_graph_iteration()
        if world.is_main:
            with torch.no_grad(), self._plugin_code("end_of_training"):
                plugin.end_of_training(self._context(int(record.get("epoch", 0))))
            with self._plugin_code("the final evaluation"):
                self._final_evaluation(self.evaluation)
            plot_losses(read_jsonl(run.path / LOSSES_FILE), run.path / "loss.png", plugin.info.name)
        distributed.barrier(world)
        if self.position.step < plugin.plan.total_steps:
            why = "--max-steps" if record.get("partial") else f"--epochs {self.settings.epochs}"
            self._say(
                f"zoo: stopped at step {self.position.step} of {plugin.plan.total_steps} "
                f"({why}); continue with `{self._resume_command()}`"
            )
        self._say(
            f"zoo: done in {duration(time.perf_counter() - self._started)}; "
            f"`zoo eval {run.path}` re-evaluates it"
        )

    def _say(self, message: str) -> None:
        if self.world.is_main:
            print(message, file=sys.stderr)

    def _check_replicas(self, modules: torch.nn.ModuleDict) -> None:
        """Every process must end with the same weights; rank 0 records the digests."""
        digests = distributed.gather_text(self.world, distributed.weights_digest(modules))
        if self.world.is_main:
            write_json(
                self.run.path / "distributed.json",
                {
                    "world_size": self.world.size,
                    "backend": torch.distributed.get_backend(),
                    "weights_sha256_by_rank": digests,
                    "replicas_identical": len(set(digests)) == 1,
                },
            )
            if len(set(digests)) != 1:
                print("zoo: warning: the replicas' weights differ at the end", file=sys.stderr)

    def _evaluation_inputs(self, device: torch.device) -> Any:
        """The final evaluation's evidence, made before the first step, so that what it
        needs (enough test images, the pinned evaluator's intact weights) fails a run
        before it trains, not after; its numbers are computed only at the end. The same
        inputs as ``zoo eval RUN``: the run's test images, all training images."""
        plugin = self.plugin
        if not (self.world.is_main and plugin.metrics and plugin.evaluate_after_training):
            return None
        from zoo.core import data

        return plugin.evidence(
            self.run.data.test,
            device=device,
            batch_size=self.settings.eval_batch_size,
            train=data.load(self.settings.data_dir).train,
        )

    def _final_evaluation(self, evidence: Any) -> None:
        """Every metric the plugin declares -> eval.json + pictures."""
        if evidence is None:
            return
        with torch.no_grad():
            results = evaluate_with_inputs(evidence, self.plugin.metrics)
        save_results(self.run.path, results, self.plugin.metrics, self.plugin.info.name)

    def _check_finite(
        self, window: LossWindow, means: Mapping[str, float], step: int, *, whole: bool = True
    ) -> None:
        """Stop on a non-finite loss, naming its step; the last checkpoint stays as it is.
        Under --on-nonfinite skip, stop only when a whole window had no usable update (a
        --max-steps stop cuts the last one short: it is not judged)."""
        bad = {k: v for k, v in means.items() if not math.isfinite(v)}
        if whole and window.skipped and not window.applied:
            raise RunError(
                f"every update of steps {window.first_step}-{step} had a non-finite loss and "
                "was skipped; "
                "training stopped (try a lower learning rate)"
            )
        if not distributed.all_ranks_agree(self.world, not bad):
            if not bad:
                raise RunError(f"another process's loss became non-finite by step {step}")
            key, value = next(iter(bad.items()))
            first = window.first_bad_step()
            raise RunError(
                f"{key} became {value} at step {first if first is not None else step}; "
                "training stopped (try a lower learning rate, or --on-nonfinite skip)"
            )

    def _check_weights(self, step: int) -> None:
        """Never checkpoint broken weights: a non-finite gradient on an epoch's last update,
        or a batch-norm statistic poisoned by a skipped update, leaves finite losses."""
        tensors = [t for t in self.modules.state_dict().values() if t.is_floating_point()]
        finite = bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
        if not distributed.all_ranks_agree(self.world, finite):
            raise RunError(
                f"the weights became non-finite by step {step}; training stopped and no "
                "checkpoint of them was written (try a lower learning rate)"
            )

    def _checkpoint_inside(
        self, epoch: int, order_state: torch.Tensor, windows: _LossWindows
    ) -> None:
        """A checkpoint inside ``epoch`` (Ctrl-C, --max-steps): ``epoch - 1`` whole epochs,
        the epoch's data order and its open loss windows, so a resume continues it."""
        self._check_weights(self.position.step)
        if self.world.is_main:
            self._save(order_state, epoch - 1, self.position.step, windows.state())

    def _resume_command(self) -> str:
        """Continue to the end of the plan (the recorded --epochs may stop short)."""
        planned = self.plugin.plan.epochs
        epochs = planned if planned != self.settings.epochs else None
        return resume_command(self.plugin.info.name, self.run.path, epochs)

    def _interrupted(self, epoch: int) -> None:
        command = self._resume_command()
        raise Interrupted(
            f"interrupted in epoch {epoch} after step {self.position.step}; checkpoint saved, "
            f"continue with `{command}`"
        )

    def _save(self, order_state, epoch: int, step: int, windows=None) -> None:
        """Checkpoint after ``epoch`` whole epochs and ``step`` steps. ``order_state`` is
        the data-order generator's state from which the next batches are drawn: at an
        epoch's start, so a run stopped inside an epoch redraws the same order."""
        rng = {"torch": torch.get_rng_state(), "shuffle": order_state}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        meta = checkpoint_meta(self.plugin, self.run, epoch, step, windows=windows)
        checkpoints.save(self.run.path, self.modules, self.optimizers, rng, meta)


def _hyperparameters(optimizers: Mapping[str, torch.optim.Optimizer]) -> dict[str, list[dict]]:
    """Each optimizer's groups without their parameters: lr, betas, eps..."""
    return {
        name: [{k: v for k, v in group.items() if k != "params"} for group in o.param_groups]
        for name, o in optimizers.items()
    }


def _position(header: Mapping[str, Any], path) -> tuple[int, int]:
    try:
        epoch, step = int(header["epoch"]), int(header["step"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{path / STATE_FILE}: its epoch and step are damaged; the run cannot be resumed"
        ) from None
    if epoch < 0 or step < 0:
        raise CheckpointError(f"{path / STATE_FILE}: negative epoch or step; it is damaged")
    return epoch, step


def _covered(record: Mapping[str, Any], key: str, limit: int) -> bool:
    """A log record the checkpoint covers: numbered up to it, and not a partial record
    of a --max-steps stop (the resumed run writes the whole one)."""
    value = record.get(key)
    return isinstance(value, int) and value <= limit and not record.get("partial")
