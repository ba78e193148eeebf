"""The classify task: the classifier plugin base, and its metrics (accuracy, per-class
accuracy, the confusion matrix and its picture) in :mod:`.metrics`."""

from typing import Any

from zoo.core.contract import register_evidence
from zoo.tasks.classify.base import ClassifierConfig, ClassifierPlugin


def _classification_evidence(plugin: Any, split: Any, *, device: Any, batch_size: int) -> Any:
    """The logits of one pass over ``split``; its module imports torch, so on first use."""
    from zoo.tasks.classify.metrics import ClassificationEvidence

    return ClassificationEvidence(plugin, split, device=device, batch_size=batch_size)


register_evidence("classify", _classification_evidence)

__all__ = ["ClassifierConfig", "ClassifierPlugin"]
