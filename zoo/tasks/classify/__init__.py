"""The classify task: the classifier plugin base, and its metrics (accuracy, per-class
accuracy, the confusion matrix and its picture) in :mod:`.metrics`."""

from zoo.tasks.classify.base import ClassifierConfig, ClassifierPlugin

__all__ = ["ClassifierConfig", "ClassifierPlugin"]
