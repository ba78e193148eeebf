"""The generic evaluator: metrics live here, plugins only name the ones that apply.

Metrics share one lazily computed :class:`Evidence` (e.g. the logits of one pass over
the test set), so asking for accuracy, per-class accuracy and the confusion matrix
costs a single forward pass. Third-party code adds metrics with :func:`metric`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import torch

from zoo.core.data import CLASSES, Split, iterate_batches
from zoo.core.devices import exact_fp32
from zoo.core.errors import ConfigError


@attrs.frozen
class Metric:
    name: str
    summary: str
    compute: Callable[[Evidence], Mapping[str, Any]]


METRICS: dict[str, Metric] = {}


def metric(name: str, summary: str) -> Callable:
    """Register ``fn(evidence) -> {name: value, ...}`` as a metric plugins can name."""

    def register(fn: Callable[[Evidence], Mapping[str, Any]]) -> Callable:
        if name in METRICS:
            raise ValueError(f"metric '{name}' is already registered")
        METRICS[name] = Metric(name, summary, fn)
        return fn

    return register


class Evidence:
    """What metrics are computed from: a plugin in eval mode and one data split.

    Evaluation always runs in fp32, whatever precision the run trained in: the trainer's
    per-epoch numbers, ``zoo eval`` and ``zoo.load(run).predict`` then agree exactly, and
    a checkpoint's number does not depend on whether the evaluating machine takes bf16
    (``--precision auto`` resolves per machine)."""

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

    @functools.cached_property
    def logits(self) -> torch.Tensor:
        """Class scores for every image of the split, in order, as float32."""
        predict = getattr(self.plugin, "predict", None)
        if predict is None:
            raise ConfigError(
                f"plugin '{self.plugin.info.name}' has no predict(); "
                "classification metrics need one"
            )
        outputs = []
        with torch.no_grad(), exact_fp32():
            for batch in iterate_batches(
                self.split, self.batch_size, self.plugin.pixel_range, shuffle=False
            ):
                outputs.append(predict(batch.images).float())
        return torch.cat(outputs)

    @functools.cached_property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)

    @property
    def labels(self) -> torch.Tensor:
        return self.split.labels

    @functools.cached_property
    def confusion(self) -> torch.Tensor:
        """(true class, predicted class) counts."""
        n = len(CLASSES)
        flat = self.labels * n + self.predictions
        return torch.bincount(flat, minlength=n * n).reshape(n, n).cpu()


@metric("accuracy", "share of images whose top class is the true class")
def _accuracy(evidence: Evidence) -> dict[str, float]:
    correct = int((evidence.predictions == evidence.labels).sum())
    return {"accuracy": correct / len(evidence.split)}


@metric("per_class_accuracy", "accuracy among the images of each true class")
def _per_class_accuracy(evidence: Evidence) -> dict[str, dict[str, float]]:
    confusion = evidence.confusion
    totals = confusion.sum(dim=1)
    return {
        "per_class_accuracy": {
            name: (int(confusion[i, i]) / int(totals[i])) if int(totals[i]) else float("nan")
            for i, name in enumerate(CLASSES)
        }
    }


@metric("confusion_matrix", "counts of (true class, predicted class)")
def _confusion_matrix(evidence: Evidence) -> dict[str, list[list[int]]]:
    return {"confusion_matrix": evidence.confusion.tolist()}


def evaluate(evidence: Evidence, names: Iterable[str]) -> dict[str, Any]:
    """Compute the named metrics from one shared Evidence."""
    results: dict[str, Any] = {}
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"unknown metric '{name}' (known: {', '.join(sorted(METRICS))})")
        results.update(METRICS[name].compute(evidence))
    return results


def evaluate_with_inputs(evidence: Evidence, names: Iterable[str]) -> dict[str, Any]:
    """The named metrics, after the evidence's own account of its inputs (judge, sample
    count, seed...): what eval.json holds."""
    return {**evidence.describe(), **evaluate(evidence, names)}


def save_results(run_dir, results: Mapping[str, Any], title: str) -> None:
    """Write eval.json and the pictures of the metrics that have one. Every target is
    checked first, so a folder in the way refuses the command with nothing rewritten
    (a read-only folder fails at the first write, eval.json, the same way)."""
    from zoo.core.runs import write_json
    from zoo.reports.plots import plot_confusion_matrix

    targets = [run_dir / "eval.json"]
    if "confusion_matrix" in results:
        targets.append(run_dir / "confusion_matrix.png")
    _check_targets(targets)
    write_json(targets[0], dict(results))
    if "confusion_matrix" in results:
        accuracy = results.get("accuracy", float("nan"))
        plot_confusion_matrix(
            results["confusion_matrix"],
            CLASSES,
            targets[1],
            f"{title}: test accuracy {accuracy:.4f}",
        )


def check_result_targets(run_dir) -> None:
    """Before an evaluation starts: a folder where eval.json or its picture goes would
    refuse it only after all the work."""
    _check_targets([run_dir / "eval.json", run_dir / "confusion_matrix.png"])


def _check_targets(paths: Iterable) -> None:
    from zoo.core.errors import StorageError

    for path in paths:
        if path.exists() and not path.is_file():
            raise StorageError(
                f"cannot write {path}: a folder (or something else that is not a file) is "
                "in the way; move it away and evaluate again"
            )
