"""The generic evaluator: metrics live in a registry, plugins only name the ones that
apply.

Metrics share one lazily computed evidence object (e.g. the logits of one pass over the
test set), so asking for accuracy, per-class accuracy and the confusion matrix costs a
single forward pass. Each task registers its metrics with :func:`metric` beside its
evidence class; a metric with a picture says which file it draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from zoo.core.data import Split
from zoo.core.errors import ConfigError, StorageError
from zoo.core.runs import write_json

Draw = Callable[[Mapping[str, Any], Path, str], None]  # (results, path, title)


@attrs.frozen
class Metric:
    name: str
    summary: str
    compute: Callable[[Any], Mapping[str, Any]]
    picture: str | None = None  # the file it draws into the run folder, if any
    draw: Draw | None = None


METRICS: dict[str, Metric] = {}


def metric(
    name: str, summary: str, *, picture: str | None = None, draw: Draw | None = None
) -> Callable:
    """Register ``fn(evidence) -> {name: value, ...}`` as a metric plugins can name;
    ``draw(results, path, title)`` writes its ``picture`` after an evaluation."""

    def register(fn: Callable[[Any], Mapping[str, Any]]) -> Callable:
        if name in METRICS:
            raise ValueError(f"metric '{name}' is already registered")
        METRICS[name] = Metric(name, summary, fn, picture, draw)
        return fn

    return register


class Evidence:
    """What metrics are computed from: a plugin in eval mode and one data split.

    Evaluation always runs in fp32, whatever precision the run trained in: the trainer's
    per-epoch numbers, ``zoo eval`` and ``zoo.load(run).predict`` then agree exactly, and
    a checkpoint's number does not depend on whether the evaluating machine takes bf16
    (``--precision auto`` resolves per machine). Tasks subclass it."""

    def __init__(
        self, plugin: Any, split: Split, *, device: torch.device, batch_size: int = 1000
    ) -> None:
        self.plugin = plugin
        self.split = split.to(device)
        self.device = device
        self.batch_size = batch_size

    def describe(self) -> dict[str, Any]:
        """What the numbers were measured on, for eval.json."""
        return {"test_images": len(self.split)}


def evaluate(evidence: Any, names: Iterable[str]) -> dict[str, Any]:
    """Compute the named metrics from one shared evidence object."""
    results: dict[str, Any] = {}
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"unknown metric '{name}' (known: {', '.join(sorted(METRICS))})")
        results.update(METRICS[name].compute(evidence))
    return results


def evaluate_with_inputs(evidence: Any, names: Iterable[str]) -> dict[str, Any]:
    """The named metrics, after the evidence's own account of its inputs (judge, sample
    count, seed...): what eval.json holds."""
    return {**evidence.describe(), **evaluate(evidence, names)}


def save_results(run_dir: Path, results: Mapping[str, Any], names: Iterable[str], title: str):
    """Write eval.json and the pictures of the named metrics that have one. Every target
    is checked first, so a folder in the way refuses the command with nothing rewritten
    (a read-only folder fails at the first write, eval.json, the same way)."""
    drawn = [METRICS[n] for n in names if n in METRICS and METRICS[n].draw and n in results]
    _check_targets([run_dir / "eval.json", *(run_dir / m.picture for m in drawn)])
    write_json(run_dir / "eval.json", dict(results))
    for known in drawn:
        known.draw(results, run_dir / known.picture, title)


def check_result_targets(run_dir: Path, names: Iterable[str]) -> None:
    """Before an evaluation starts: a folder where eval.json or a picture goes would
    refuse it only after all the work."""
    pictures = [METRICS[n].picture for n in names if n in METRICS and METRICS[n].picture]
    _check_targets([run_dir / "eval.json", *(run_dir / p for p in pictures)])


def _check_targets(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.exists() and not path.is_file():
            raise StorageError(
                f"cannot write {path}: a folder (or something else that is not a file) is "
                "in the way; move it away and evaluate again"
            )
