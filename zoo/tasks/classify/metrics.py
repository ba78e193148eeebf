"""Classification metrics: one pass of logits over the test split serves accuracy,
per-class accuracy and the confusion matrix (and its picture)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.core.data import CLASSES, iterate_batches
from zoo.core.errors import ConfigError
from zoo.engine.devices import exact_fp32
from zoo.engine.evaluator import Evidence, metric
from zoo.reports.plots import plot_confusion_matrix


class ClassificationEvidence(Evidence):
    """The plugin's class scores for every test image (fp32), computed once."""

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
def _accuracy(evidence: ClassificationEvidence) -> dict[str, float]:
    correct = int((evidence.predictions == evidence.labels).sum())
    return {"accuracy": correct / len(evidence.split)}


@metric("per_class_accuracy", "accuracy among the images of each true class")
def _per_class_accuracy(evidence: ClassificationEvidence) -> dict[str, dict[str, float]]:
    confusion = evidence.confusion
    totals = confusion.sum(dim=1)
    return {
        "per_class_accuracy": {
            name: (int(confusion[i, i]) / int(totals[i])) if int(totals[i]) else float("nan")
            for i, name in enumerate(CLASSES)
        }
    }


def _draw_confusion(results: Mapping[str, Any], path: Path, title: str) -> None:
    accuracy = results.get("accuracy", float("nan"))
    plot_confusion_matrix(
        results["confusion_matrix"], CLASSES, path, f"{title}: test accuracy {accuracy:.4f}"
    )


@metric(
    "confusion_matrix",
    "counts of (true class, predicted class)",
    picture="confusion_matrix.png",
    draw=_draw_confusion,
)
def _confusion_matrix(evidence: ClassificationEvidence) -> dict[str, list[list[int]]]:
    return {"confusion_matrix": evidence.confusion.tolist()}
