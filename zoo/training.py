"""The generic trainer: everything around a plugin's ``train_step``.

It owns the device, precision, seeding, batching, epochs and max-steps, progress,
metrics, per-epoch hooks and checkpoints, so a plugin only says how one step goes.
"""

from __future__ import annotations

import math
import sys
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
from zoo.errors import ConfigError, RunError
from zoo.evaluation import evaluate, save_results
from zoo.plugin import TrainablePlugin, TrainPlan
from zoo.runs import (
    LOSSES_FILE,
    METRICS_FILE,
    RunContext,
    append_jsonl,
    read_jsonl,
    write_json,
)

LOG_EVERY = 25  # steps per smoothed loss record (losses.jsonl, progress bar)


@attrs.frozen
class EpochContext:
    """What ``end_of_epoch`` gets: where the run is, and the core evaluator."""

    epoch: int
    step: int
    run: RunContext
    plugin: TrainablePlugin
    device: torch.device
    precision: str

    def evaluate(self, names: Iterable[str], *, prefix: str = "test_") -> dict[str, Any]:
        """Core metrics on the test split, keys prefixed (``test_accuracy``)."""
        evidence = self.plugin.evidence(
            self.run.data.test,
            device=self.device,
            precision=self.precision,
            batch_size=self.run.settings.eval_batch_size,
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
    the generator is updated (every n_critic steps for WGAN).
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, int] = {}

    def add(self, losses: Mapping[str, torch.Tensor], weight: int) -> None:
        for key, value in losses.items():
            value = torch.as_tensor(value).detach().float() * weight
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.weights[key] = self.weights.get(key, 0) + weight

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.weights[k] for k, v in self.sums.items()}


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


class Trainer:
    def __init__(self, plugin: TrainablePlugin, run: RunContext) -> None:
        self.plugin = plugin
        self.run = run
        self.settings = run.settings

    def fit(self) -> dict[str, Any]:
        settings, plugin, run = self.settings, self.plugin, self.run
        world = self.world = distributed.current_world()
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
        shuffle = torch.Generator().manual_seed(settings.seed)  # the same order on every rank
        replicas = modules
        if world.active:
            replicas = distributed.replicate(modules, device)
            torch.manual_seed(settings.seed + world.rank)  # own noise and dropout per replica

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
        step, record, started = 0, {}, time.perf_counter()
        for epoch in range(1, settings.epochs + 1):
            if step >= total_steps:
                break
            modules.train()
            epoch_window, log_window = _Window(), _Window()
            epoch_start, epoch_images = time.perf_counter(), 0
            for batch in iterate_batches(
                train,
                settings.batch_size,
                plugin.pixel_range,
                generator=shuffle,
                drop_singleton=True,
                shard=(world.rank, world.size),
            ):
                plugin.global_step = step
                plugin.modules = replicas
                if settings.channels_last:
                    batch = channels_last_batch(batch)
                with autocast(device, precision):
                    losses = plugin.train_step(batch)
                plugin.modules = modules
                step += 1
                epoch_images += len(batch) * world.size
                epoch_window.add(losses, len(batch))
                log_window.add(losses, len(batch))
                bar.update(1)
                if step % LOG_EVERY == 0 or step == total_steps:
                    means = log_window.means()
                    self._check_finite(means, step)
                    if world.is_main:
                        append_jsonl(run.path / LOSSES_FILE, {"step": step, **means})
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
                    log_window = _Window()
                if step >= total_steps:
                    break
            seconds = time.perf_counter() - epoch_start
            train_means = epoch_window.means()
            self._check_finite(train_means, step)
            modules.eval()
            distributed.sync_buffers(world, modules)
            extra = {}
            if world.is_main:  # the other ranks wait at the barrier below
                with torch.no_grad():
                    extra = plugin.end_of_epoch(
                        EpochContext(epoch, step, run, plugin, device, precision)
                    )
            record = {
                "epoch": epoch,
                "step": step,
                "seconds": round(seconds, 3),
                "images_per_s": round(epoch_images / seconds, 1),
                **train_means,
                **extra,
            }
            if world.is_main:
                append_jsonl(run.path / METRICS_FILE, record)
                self._save(modules, optimizers, shuffle, device, epoch, step)
                remaining = (time.perf_counter() - started) / step * (total_steps - step)
                message = f"epoch {epoch}/{settings.epochs}  {_format(record)}"
                tqdm.write(f"{message}  ETA {_duration(remaining)}", file=sys.stderr)
            distributed.barrier(world)
        bar.close()
        if world.active:
            self._check_replicas(modules)
        if world.is_main:
            with torch.no_grad():
                plugin.end_of_training(EpochContext(epoch, step, run, plugin, device, precision))
            self._final_evaluation(device, precision, epoch, step)
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

    def _final_evaluation(self, device, precision: str, epoch: int, step: int) -> None:
        """Full evaluation with every metric the plugin declares -> eval.json + pictures."""
        if not self.plugin.metrics or not self.plugin.evaluate_after_training:
            return
        context = EpochContext(epoch, step, self.run, self.plugin, device, precision)
        with torch.no_grad():
            results = context.evaluate(self.plugin.metrics, prefix="")
        results = {"test_images": len(self.run.data.test), **results}
        save_results(self.run.path, results, self.plugin.info.name)

    def _check_finite(self, means: Mapping[str, float], step: int) -> None:
        bad = {k: v for k, v in means.items() if not math.isfinite(v)}
        if bad:
            key, value = next(iter(bad.items()))
            raise RunError(
                f"{key} became {value} by step {step}; training stopped, the last good "
                f"checkpoint in {self.run.path} is kept (try a lower learning rate)"
            )

    def _save(self, modules, optimizers, shuffle, device, epoch: int, step: int) -> None:
        rng = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        meta = checkpoint_meta(self.plugin, self.run, epoch, step)
        checkpoints.save(self.run.path, modules, optimizers, rng, meta)
