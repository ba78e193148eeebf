"""The generic trainer: everything around a plugin's ``train_step``.

It owns the device, precision, seeding, batching, epochs and max-steps, progress,
metrics, per-epoch hooks and checkpoints, so a plugin only says how one step goes.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import torch
from tqdm import tqdm

from zoo import __version__, checkpoints, distributed
from zoo.artifacts import plot_losses
from zoo.config import to_dict
from zoo.data import Batch, iterate_batches
from zoo.devices import autocast, resolve_device, resolve_precision
from zoo.errors import ConfigError, Interrupted, RunError
from zoo.evaluation import evaluate, evaluate_with_inputs, save_results
from zoo.plugin import TrainablePlugin, TrainPlan
from zoo.runs import (
    LOSSES_FILE,
    METRICS_FILE,
    RunContext,
    append_jsonl,
    read_jsonl,
    remove_stale_temp_files,
    truncate_jsonl,
    write_json,
)

LOG_EVERY = 25  # steps per smoothed loss record (losses.jsonl, progress bar)


@attrs.frozen
class EpochContext:
    """What ``end_of_epoch`` gets: where the run is, and the core evaluator (which runs in
    fp32; ``precision`` is what the steps train in)."""

    epoch: int
    step: int
    run: RunContext
    plugin: TrainablePlugin
    device: torch.device
    precision: str

    def evaluate(self, names: Iterable[str], *, prefix: str = "test_") -> dict[str, Any]:
        """Core metrics on the test split, keys prefixed (``test_accuracy``)."""
        evidence = self.plugin.evidence(
            self.run.data.test, device=self.device, batch_size=self.run.settings.eval_batch_size
        )
        return {prefix + k: v for k, v in evaluate(evidence, names).items()}


def checkpoint_meta(plugin: TrainablePlugin, run: RunContext, epoch: int, step: int) -> dict:
    return {
        "plugin": plugin.info.name,
        "plugin_version": plugin.info.version,
        "zoo_version": __version__,
        "torch_version": torch.__version__,
        "epoch": epoch,
        "step": step,
        "seed": run.settings.seed,
        "config": to_dict(plugin.config),
    }


def setup_modules(
    plugin: TrainablePlugin, device: torch.device, settings: Any = None
) -> torch.nn.ModuleDict:
    """Build the plugin's networks and move them to ``device`` (training and loading);
    ``settings`` (RunSettings) may ask for the channels-last layout and torch.compile."""
    modules = torch.nn.ModuleDict(dict(plugin.build())).to(device)
    if settings is not None and settings.channels_last:
        modules = modules.to(memory_format=torch.channels_last)
    if settings is not None and settings.compile:
        for module in modules.values():
            module.compile()  # in place: state_dict keys stay as they were
    plugin.modules = modules
    plugin.device = device
    return modules


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


class _Window:
    """Running sums of step losses, turned into floats only when logged (no sync per step).

    Each key has its own weight: a GAN's generator loss exists only on the steps where
    the generator is updated (every n_critic steps for WGAN). The step of the first
    non-finite loss is tracked on the device too, so a stop names the exact step.
    Under ``--on-nonfinite skip`` non-finite losses weigh nothing, and the plugin's
    update counters at the window's start tell whether any update in it was usable.
    Steps go into a log window; each log window is absorbed into its epoch's window.
    """

    def __init__(self, plugin: TrainablePlugin) -> None:
        self.drop_nonfinite = plugin.skip_nonfinite
        self.skipped_before, self.applied_before = plugin.skipped_updates, plugin.applied_updates
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, torch.Tensor | int] = {}
        self.first_bad: torch.Tensor | None = None
        self.first_step: int | None = None

    def add(self, losses: Mapping[str, torch.Tensor], weight: int, step: int) -> None:
        if self.first_step is None:
            self.first_step = step
        for key, value in losses.items():
            value = torch.as_tensor(value).detach().float()
            finite = torch.isfinite(value)
            if self.drop_nonfinite:
                self._accumulate(key, torch.where(finite, value * weight, 0.0), finite * weight)
            else:
                self._mark_bad(torch.where(finite, _NEVER, step))
                self._accumulate(key, value * weight, weight)

    def absorb(self, other: _Window) -> None:
        """Add a finished log window's sums into this (epoch) window."""
        if self.first_step is None:
            self.first_step = other.first_step
        for key, total in other.sums.items():
            self._accumulate(key, total, other.weights[key])
        if other.first_bad is not None:
            self._mark_bad(other.first_bad)

    def _accumulate(self, key: str, total: torch.Tensor, weight: torch.Tensor | int) -> None:
        self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.weights[key] = self.weights[key] + weight if key in self.weights else weight

    def _mark_bad(self, steps: torch.Tensor) -> None:
        self.first_bad = steps if self.first_bad is None else self.first_bad.minimum(steps)

    def means(self) -> dict[str, float]:
        weights = {k: float(w) for k, w in self.weights.items()}
        return {k: float(v) / weights[k] for k, v in self.sums.items() if weights[k] > 0}

    def first_bad_step(self) -> int | None:
        if self.first_bad is None or int(self.first_bad) == _NEVER:
            return None
        return int(self.first_bad)


_NEVER = 2**62  # "no non-finite loss yet" for _Window.first_bad


def _format(record: Mapping[str, Any]) -> str:
    """``step 314  0.2s  29234 img/s  loss 0.5642 ...`` for the epoch line."""
    parts = [
        f"step {record['step']}",
        f"{record['seconds']:.1f}s",
        f"{record['images_per_s']:.0f} img/s",
    ]
    timing = {"epoch", "step", "seconds", "images_per_s"}
    parts += [f"{k} {v:.4g}" for k, v in record.items() if k not in timing and isinstance(v, float)]
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) into a flag the loop checks between steps; a
    second Ctrl-C interrupts at once. Only in the main thread of a single process."""

    def __init__(self, enabled: bool = True) -> None:
        self.requested = False
        self._previous = None
        if enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nzoo: stopping at the end of this step (Ctrl-C again to stop now)", file=sys.stderr)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class Trainer:
    def __init__(self, plugin: TrainablePlugin, run: RunContext) -> None:
        self.plugin = plugin
        self.run = run
        self.settings = run.settings

    def fit(self) -> dict[str, Any]:
        """Train the plugin; Ctrl-C saves a checkpoint at the next step and stops."""
        self._stop: StopRequest | None = None
        try:
            return self._fit()
        finally:
            if self._stop is not None:
                self._stop.restore()

    def _fit(self) -> dict[str, Any]:
        settings, plugin, run = self.settings, self.plugin, self.run
        world = self.world = distributed.current_world()
        if settings.on_nonfinite == "skip" and world.active:
            raise ConfigError(
                "--on-nonfinite skip works in one process only (every process would have to "
                "skip the same update); use the default, stop, under torchrun"
            )
        apply_threads(settings.threads)
        torch.manual_seed(settings.seed)
        device = distributed.device_for(world, resolve_device(settings.device))
        precision = resolve_precision(settings.precision, device)
        train = run.data.train.to(device)
        per_rank = len(train) // world.size
        steps_per_epoch = per_rank // settings.batch_size + (per_rank % settings.batch_size > 1)
        total_steps = settings.epochs * steps_per_epoch
        if settings.max_steps is not None:
            total_steps = min(total_steps, settings.max_steps)
        plugin.plan = TrainPlan(settings.epochs, steps_per_epoch, total_steps)
        modules = setup_modules(plugin, device, settings)
        _check_batch_norm(modules, settings.batch_size, len(train))
        optimizers = plugin.optimizers = dict(plugin.configure_optimizers())
        evaluation = self._evaluation_inputs(device)  # checked now, computed at the end
        plugin.skip_nonfinite, plugin.skipped_updates = settings.on_nonfinite == "skip", 0
        shuffle = torch.Generator().manual_seed(settings.seed)  # the same order on every rank
        replicas = modules
        if world.active:
            replicas = distributed.replicate(modules, device)
            torch.manual_seed(settings.seed + world.rank)  # own noise and dropout per replica

        step, first_epoch, skip = 0, 1, 0
        if settings.resume:  # before any output: a bad checkpoint is a one-line error
            first_epoch, step, skip = self._restore(modules, optimizers, shuffle, device)

        interactive = settings.progress and sys.stderr.isatty() and world.is_main
        bar = tqdm(
            total=total_steps,
            unit="step",
            dynamic_ncols=True,
            disable=not interactive,
            file=sys.stderr,
        )
        processes = f" x {world.size} processes" if world.active else ""
        self._say(
            f"zoo: training {plugin.info.name} on {device}{processes} ({precision}), "
            f"{len(train)} images, batch {settings.batch_size}, {total_steps} steps -> {run.path}"
        )
        bar.update(step)
        if settings.resume:
            self._say(f"zoo: resuming {run.path} at step {step} (epoch {first_epoch})")
        stop = self._stop = StopRequest(enabled=not world.active)
        record, started, started_step = {}, time.perf_counter(), step
        epoch = first_epoch - 1
        for epoch in range(first_epoch, settings.epochs + 1):
            if step >= total_steps:
                break
            modules.train()
            epoch_window, log_window = _Window(plugin), _Window(plugin)
            epoch_start, epoch_images = time.perf_counter(), 0
            order_state = shuffle.get_state()
            for batch in iterate_batches(
                train,
                settings.batch_size,
                plugin.pixel_range,
                generator=shuffle,
                drop_singleton=True,
                shard=(world.rank, world.size),
                skip=skip,
            ):
                if stop.requested:  # Ctrl-C: checkpoint here, at a step boundary
                    stop.restore()
                    self._check_weights(modules, step)
                    self._save(modules, optimizers, order_state, device, epoch - 1, step)
                    self._interrupted(epoch, step)
                plugin.global_step = step
                plugin.modules = replicas
                if settings.channels_last:
                    batch = channels_last_batch(batch)
                with autocast(device, precision):
                    losses = plugin.train_step(batch)
                plugin.modules = modules
                step += 1
                epoch_images += len(batch) * world.size
                log_window.add(losses, len(batch), step)
                bar.update(1)
                if step % LOG_EVERY == 0 or step == total_steps:
                    means = log_window.means()
                    self._check_finite(log_window, means, step)
                    if world.is_main:
                        append_jsonl(run.path / LOSSES_FILE, {"step": step, **means})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
                    epoch_window.absorb(log_window)
                    log_window = _Window(plugin)
                if step >= total_steps:
                    break
            skip = 0
            seconds = time.perf_counter() - epoch_start
            epoch_window.absorb(log_window)  # the steps since the last log line
            train_means = epoch_window.means()
            self._check_finite(epoch_window, train_means, step)
            if plugin.skip_nonfinite:
                train_means["skipped_updates"] = (
                    plugin.skipped_updates - epoch_window.skipped_before
                )
                if train_means["skipped_updates"]:
                    self._say(
                        f"zoo: warning: epoch {epoch} skipped {train_means['skipped_updates']} "
                        "update(s) with a non-finite loss or gradient"
                    )
            modules.eval()
            extra = {}
            if world.is_main:  # the other ranks take its state just below
                with torch.no_grad():
                    extra = plugin.end_of_epoch(
                        EpochContext(epoch, step, run, plugin, device, precision)
                    )
            distributed.sync_state(world, modules, optimizers)
            record = {
                "epoch": epoch,
                "step": step,
                "seconds": round(seconds, 3),
                "images_per_s": round(epoch_images / seconds, 1),
                **train_means,
                **extra,
            }
            self._check_weights(modules, step)
            if world.is_main:
                append_jsonl(run.path / METRICS_FILE, record)
                self._save(modules, optimizers, shuffle.get_state(), device, epoch, step)
                done = max(step - started_step, 1)
                remaining = (time.perf_counter() - started) / done * (total_steps - step)
                message = f"epoch {epoch}/{settings.epochs}  {_format(record)}"
                tqdm.write(f"{message}  ETA {_duration(remaining)}", file=sys.stderr)
            distributed.barrier(world)
        stop.restore()
        bar.close()
        if world.active:
            self._check_replicas(modules)
        if world.is_main:
            with torch.no_grad():
                plugin.end_of_training(EpochContext(epoch, step, run, plugin, device, precision))
            self._final_evaluation(evaluation)
            plot_losses(read_jsonl(run.path / LOSSES_FILE), run.path / "loss.png", plugin.info.name)
        distributed.barrier(world)
        self._say(
            f"zoo: done in {_duration(time.perf_counter() - started)}; "
            f"`zoo eval {run.path}` re-evaluates it"
        )
        return record

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
        from zoo import data

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
        save_results(self.run.path, results, self.plugin.info.name)

    def _check_finite(self, window: _Window, means: Mapping[str, float], step: int) -> None:
        """Stop on a non-finite loss, naming its step; the last checkpoint stays as it is.
        Under --on-nonfinite skip, stop only when a whole window had no usable update."""
        bad = {k: v for k, v in means.items() if not math.isfinite(v)}
        plugin = self.plugin
        skipped = plugin.skipped_updates - window.skipped_before
        if skipped and plugin.applied_updates == window.applied_before:
            raise RunError(
                f"every update of steps {window.first_step}-{step} had a non-finite loss and "
                "was skipped; "
                f"training stopped, the last good checkpoint in {self.run.path} is kept "
                "(try a lower learning rate)"
            )
        if not distributed.all_ranks_agree(self.world, not bad):
            if not bad:
                raise RunError(f"another process's loss became non-finite by step {step}")
            key, value = next(iter(bad.items()))
            first = window.first_bad_step()
            raise RunError(
                f"{key} became {value} at step {first if first is not None else step}; "
                f"training stopped, the last good checkpoint in {self.run.path} is kept "
                "(try a lower learning rate, or --on-nonfinite skip)"
            )

    def _check_weights(self, modules: torch.nn.ModuleDict, step: int) -> None:
        """Never checkpoint broken weights: a non-finite gradient on an epoch's last update,
        or a batch-norm statistic poisoned by a skipped update, leaves finite losses."""
        tensors = [t for t in modules.state_dict().values() if t.is_floating_point()]
        finite = bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())
        if not distributed.all_ranks_agree(self.world, finite):
            raise RunError(
                f"the weights became non-finite by step {step}; training stopped and no "
                f"checkpoint of them was written, the last good one in {self.run.path} is "
                "kept (try a lower learning rate)"
            )

    def _restore(self, modules, optimizers, shuffle, device) -> tuple[int, int]:
        """Weights, optimizer and RNG states from the run's checkpoint; the logs are cut
        back to it (a crash may have left records of an epoch it does not hold)."""
        rng, header = checkpoints.resume(
            self.run.path, modules, optimizers, self.plugin.info.name, publish=self.world.is_main
        )
        epoch, step = int(header["epoch"]), int(header["step"])
        skip = step - epoch * self.plugin.plan.steps_per_epoch  # batches into the next epoch
        torch.set_rng_state(rng["torch"])
        shuffle.set_state(rng["shuffle"])
        if device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], device)
        if self.world.active:
            torch.manual_seed(self.settings.seed + self.world.rank + 7919 * epoch)
        if self.world.is_main:
            remove_stale_temp_files(self.run.path)
            truncate_jsonl(self.run.path / METRICS_FILE, lambda r: r.get("epoch", 0) <= epoch)
            truncate_jsonl(self.run.path / LOSSES_FILE, lambda r: r.get("step", 0) <= step)
        return epoch + 1, step, max(skip, 0)

    def _interrupted(self, epoch: int, step: int) -> None:
        name, path = self.plugin.info.name, self.run.path
        raise Interrupted(
            f"interrupted in epoch {epoch} after step {step}; checkpoint saved, continue with "
            f"`zoo run {name} --resume {path} --epochs {self.settings.epochs}` (same options)"
        )

    def _save(self, modules, optimizers, order_state, device, epoch: int, step: int) -> None:
        """Checkpoint after ``epoch`` whole epochs and ``step`` steps. ``order_state`` is
        the data-order generator's state from which the next batches are drawn: at an
        epoch's start, so a run stopped inside an epoch redraws the same order."""
        rng = {"torch": torch.get_rng_state(), "shuffle": order_state}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        meta = checkpoint_meta(self.plugin, self.run, epoch, step)
        checkpoints.save(self.run.path, modules, optimizers, rng, meta)
