"""`zoo bench NAME`: training throughput of any plugin, against this machine's peak.

Throughput is the median of several timed windows after a warm-up (first steps allocate
memory, pick kernels and, with ``--compile``, compile). The work per step is counted by
torch's FlopCounterMode on one real step, so achieved GFLOP/s can be set against the
measured matrix-product peak of the same device and precision: a plugin far below the
peak is bound by something other than arithmetic (Python, memory, small kernels).
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from zoo.core.contract import TrainablePlugin, TrainPlan
from zoo.core.data import iterate_batches
from zoo.core.errors import ConfigError
from zoo.engine.devices import autocast, resolve_device, resolve_precision


@attrs.frozen
class BenchResult:
    plugin: str
    device: str
    precision: str
    batch_size: int
    channels_last: bool
    compiled: bool
    threads: int
    steps_per_window: int
    window_images_per_s: list[float]
    images_per_s: float  # median over windows
    ms_per_step: float
    flops_per_step: int  # forward and backward, as FlopCounterMode counts them
    gflop_per_step: float
    achieved_gflops: float
    peak_gflops: float  # matrix-product peak, same device and precision
    fraction_of_peak: float
    top_ops: list[dict[str, Any]] = attrs.field(factory=list)  # with --profile
    compile_mode: str | None = None  # torch.compile's mode where compiled
    # where batch_size, precision, channels_last and compile came from: "plugin" (the
    # plugin's run settings, what `zoo run` uses), "cli" or "call" (zoo.bench)
    sources: dict[str, str] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.cache  # one measurement per device and precision, however many rows a bench has
def matmul_peak_gflops(device: torch.device, precision: str) -> float:
    """Best GFLOP/s of ten n x n matrix products in ``precision`` (fp32 or bf16): a peak
    is what the machine can do, so the fastest product counts, not a typical one. n
    grows from 256 until one product takes 20 ms (at most 4096), so slow paths such as
    bf16 without hardware support are still measured in seconds."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    size = 256
    while True:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        _synchronize(device)
        started = time.perf_counter()
        a @ b
        _synchronize(device)
        if time.perf_counter() - started > 0.02 or size >= 4096:
            break
        size *= 2
    timings = []
    for repeat in range(12):
        _synchronize(device)
        started = time.perf_counter()
        a @ b
        _synchronize(device)
        if repeat >= 2:  # the first products warm caches and thread pools
            timings.append(time.perf_counter() - started)
    return 2 * size**3 / min(timings) / 1e9


def count_flops(step) -> int:
    """Floating-point operations of one call of ``step`` (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def bench(
    plugin: TrainablePlugin,
    settings: Any,
    *,
    steps: int = 20,
    windows: int = 5,
    warmup: int = 5,
    profile_rows: int = 0,
    sources: Mapping[str, str] | None = None,
) -> BenchResult:
    """Time ``plugin``'s train_step on real training images with ``settings`` (RunSettings);
    with ``profile_rows``, also profile one window and keep that many of the costliest ops."""
    from zoo.core import data
    from zoo.engine.trainer import apply_threads

    if not isinstance(plugin, TrainablePlugin):
        raise ConfigError(f"plugin '{plugin.info.name}' trains nothing; zoo bench times training")
    apply_threads(settings.threads)
    torch.manual_seed(settings.seed)
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device, plugin.auto_bf16_devices)
    needed = settings.batch_size * min(steps, 50)
    train = data.load(settings.data_dir).train.head(needed).to(device)
    if len(train) < settings.batch_size:
        raise ConfigError(
            f"--batch-size {settings.batch_size} is larger than the training set ({len(train)})"
        )
    step = _training_step(plugin, settings, train, precision, steps * windows + warmup)
    for _ in range(warmup):
        step()
    flops = count_flops(step)
    rates = _window_rates(step, steps, windows, settings.batch_size, device)
    median = statistics.median(rates)
    seconds_per_step = settings.batch_size / median
    achieved = flops / seconds_per_step / 1e9
    peak = matmul_peak_gflops(device, precision)
    top_ops = profile_ops(step, steps, device, profile_rows) if profile_rows else []
    return BenchResult(
        plugin=plugin.info.name,
        device=str(device),
        precision=precision,
        batch_size=settings.batch_size,
        channels_last=settings.channels_last,
        compiled=settings.compile,
        compile_mode=settings.compile_mode if settings.compile else None,
        threads=torch.get_num_threads(),
        steps_per_window=steps,
        window_images_per_s=[round(r, 1) for r in rates],
        images_per_s=round(median, 1),
        ms_per_step=round(seconds_per_step * 1000, 2),
        flops_per_step=flops,
        gflop_per_step=round(flops / 1e9, 3),
        achieved_gflops=round(achieved, 1),
        peak_gflops=round(peak, 1),
        fraction_of_peak=round(achieved / peak, 3),
        top_ops=top_ops,
        sources=dict(sources or {}),
    )


def _training_step(plugin: TrainablePlugin, settings: Any, train, precision: str, total: int):
    """One training step of ``plugin`` as the trainer takes it (modules, optimizers,
    layout, autocast), as a function that draws the next batch of ``train`` each call."""
    from zoo.engine.trainer import channels_last_batch, hand_over, setup_modules, step_marker

    device = train.images.device
    setup_modules(plugin, device, settings)
    mark_step = step_marker(device, settings)
    context = hand_over(plugin, TrainPlan(1, total, total))
    plugin.modules.train()
    batches = _endless_batches(train, settings.batch_size, plugin.pixel_range)

    def step() -> Mapping[str, Any]:
        batch = next(batches)
        if settings.channels_last:
            batch = channels_last_batch(batch)
        if mark_step is not None:
            mark_step()
        with autocast(device, precision):
            losses = plugin.train_step(batch)
        context.global_step += 1
        return losses

    return step


def _window_rates(step, steps: int, windows: int, batch_size: int, device) -> list[float]:
    """Images per second of each timed window of ``steps`` calls of ``step``."""
    rates = []
    for _ in range(windows):
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            losses = step()
        for value in losses.values():  # wait for the last step's work to finish
            float(value)
        _synchronize(device)
        rates.append(steps * batch_size / (time.perf_counter() - started))
    return rates


def profile_ops(step, steps: int, device: torch.device, rows: int) -> list[dict[str, Any]]:
    """The ``rows`` ops with the most self time over ``steps`` calls of ``step``: where a
    step's time goes when achieved GFLOP/s is far below the peak."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _quiet_stderr(), profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        _synchronize(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in profiler.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events)
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [
        {
            "op": e.key,
            "calls_per_step": round(e.count / steps, 1),
            "ms_per_step": round(getattr(e, key) / 1000 / steps, 3),
            "share": round(getattr(e, key) / total, 3),
        }
        for e in events[:rows]
    ]


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side prints start/stop lines to fd 2; keep them off the screen."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _endless_batches(split, batch_size: int, pixel_range):
    generator = torch.Generator().manual_seed(0)
    while True:
        for batch in iterate_batches(split, batch_size, pixel_range, generator=generator):
            if len(batch) == batch_size:
                yield batch


def format_profile(result: BenchResult) -> str:
    lines = [
        f"where {result.plugin}'s step goes ({result.precision}, batch {result.batch_size}, "
        f"{'channels-last' if result.channels_last else 'contiguous'}"
        f"{_compiled_note(result)}): self time per step",
        f"  {'SHARE':>6}  {'MS/STEP':>8}  {'CALLS':>6}  OP",
    ]
    for op in result.top_ops:
        share, ms, calls = op["share"], op["ms_per_step"], op["calls_per_step"]
        lines.append(f"  {share:6.1%}  {ms:8.2f}  {calls:6.1f}  {op['op']}")
    return "\n".join(lines)


def _compile_text(result: BenchResult) -> str:
    """no, yes (torch.compile's default mode) or the mode: reduce-overhead..."""
    if not result.compiled:
        return "no"
    return "yes" if result.compile_mode == "default" else result.compile_mode


def _compiled_note(result: BenchResult) -> str:
    """``, compiled`` or ``, compiled (reduce-overhead)`` for the profile's title."""
    text = _compile_text(result)
    return {"no": "", "yes": ", compiled"}.get(text, f", compiled ({text})")


def _marked(result: BenchResult, setting: str, text: str) -> str:
    """``fp32 [plugin]``: the value, and whether the plugin's run settings or the command
    line chose it."""
    source = result.sources.get(setting)
    return f"{text} [{source}]" if source else text


def format_table(results: list[BenchResult]) -> str:
    header = (
        "PLUGIN", "PRECISION", "BATCH", "LAYOUT", "COMPILE", "THREADS",
        "IMG/S", "MS/STEP", "GFLOP/STEP", "GFLOP/S", "PEAK", "OF PEAK",
    )  # fmt: skip
    rows = [
        (
            r.plugin,
            _marked(r, "precision", r.precision),
            _marked(r, "batch_size", str(r.batch_size)),
            _marked(r, "channels_last", "channels-last" if r.channels_last else "contiguous"),
            _marked(r, "compile", _compile_text(r)),
            str(r.threads),
            f"{r.images_per_s:.0f}",
            f"{r.ms_per_step:.1f}",
            f"{r.gflop_per_step:.2f}",
            f"{r.achieved_gflops:.1f}",
            f"{r.peak_gflops:.1f}",
            f"{100 * r.fraction_of_peak:.0f}%",
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
