"""Generative metrics in the feature space of the zoo's own trained classifier.

No Inception weights can be downloaded here, so (like FID, but offline) real and
generated images are compared through a trained zoo classifier run:

- ``frechet_distance``: the Fréchet distance between Gaussians fitted to the
  classifier's penultimate features (``ClassifierPlugin.features``) of the test images
  and of the samples;
- ``classifier_score``: exp(E_x KL(p(y|x) || p(y))), the Inception Score with the zoo
  classifier; 10 is its ceiling (ten classes);
- ``conditional_accuracy``: for conditional models, how often the classifier
  recognises the class that was asked for.

Real-data statistics are cached beside the classifier's checkpoint, keyed by split,
image count and the checkpoint's digest.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from zoo.data import CLASSES, Split, iterate_batches
from zoo.evaluation import metric
from zoo.runs import MODEL_FILE, write_atomic

STATS_DIR = "feature_stats"


def frechet_distance(
    mean_a: torch.Tensor, cov_a: torch.Tensor, mean_b: torch.Tensor, cov_b: torch.Tensor
) -> float:
    """||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)), in float64.

    Tr((C_a C_b)^(1/2)) is the sum of the square roots of the eigenvalues of C_a C_b,
    which are real and non-negative for covariance matrices (tiny negative rounding is
    clipped to 0).
    """
    mean_a, mean_b, cov_a, cov_b = (t.double() for t in (mean_a, mean_b, cov_a, cov_b))
    eigenvalues = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0)
    trace_sqrt = eigenvalues.sqrt().sum()
    difference = mean_a - mean_b
    value = difference @ difference + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return float(value)


def gaussian(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    features = features.double()
    return features.mean(dim=0), torch.cov(features.t())


def classifier_score(logits: torch.Tensor) -> float:
    probabilities = logits.double().softmax(dim=1)
    marginal = probabilities.mean(dim=0, keepdim=True)
    kl = (
        probabilities * (probabilities.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())
    ).sum(dim=1)
    return float(kl.mean().exp())


class GenerativeEvidence:
    """Samples of a generator plugin and the test split, seen by a classifier run."""

    def __init__(
        self,
        plugin: Any,
        real: Split,
        classifier: Any,  # zoo.LoadedRun of a classifier
        *,
        n: int = 10000,
        seed: int = 0,
        batch_size: int = 500,
    ) -> None:
        self.plugin = plugin
        self.real = real
        self.classifier = classifier
        self.n = n
        self.seed = seed
        self.batch_size = batch_size

    @functools.cached_property
    def requested_labels(self) -> torch.Tensor | None:
        if not self.plugin.conditional:
            return None
        return torch.arange(self.n) % len(CLASSES)

    def _to_classifier_range(self, images: torch.Tensor) -> torch.Tensor:
        low, high = self.plugin.pixel_range
        target_low, target_high = self.classifier.plugin.pixel_range
        unit = (images - low) / (high - low)
        return unit * (target_high - target_low) + target_low

    def _look(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clf = self.classifier.plugin
        images = images.to(clf.device)
        with torch.no_grad():
            return clf.features(images).float().cpu(), clf.predict(images).float().cpu()

    @functools.cached_property
    def fake(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of ``n`` samples (conditional: classes in turn)."""
        features, logits = [], []
        generator = torch.Generator().manual_seed(self.seed)
        labels = self.requested_labels
        for start in range(0, self.n, self.batch_size):
            count = min(self.batch_size, self.n - start)
            latent = self.plugin.latent(count, generator)
            batch_labels = (
                labels[start : start + count].to(latent.device) if labels is not None else None
            )
            with torch.no_grad():
                images = self.plugin.generate(latent, batch_labels)
            f, lg = self._look(self._to_classifier_range(images.float()))
            features.append(f)
            logits.append(lg)
        return torch.cat(features), torch.cat(logits)

    @functools.cached_property
    def real_statistics(self) -> dict[str, torch.Tensor]:
        """Mean, covariance and logits' classifier score of the real split, cached."""
        path = self._cache_path()
        if path.is_file():
            try:
                return load_bytes(path.read_bytes())
            except (SafetensorError, OSError):
                path.unlink(missing_ok=True)  # a damaged cache is recomputed, not trusted
        features, logits = [], []
        for batch in iterate_batches(
            self.real, self.batch_size, self.classifier.plugin.pixel_range, shuffle=False
        ):
            f, lg = self._look(batch.images)
            features.append(f)
            logits.append(lg)
        mean, cov = gaussian(torch.cat(features))
        stats = {
            "mean": mean,
            "cov": cov,
            "classifier_score": torch.tensor(
                classifier_score(torch.cat(logits)), dtype=torch.float64
            ),
        }
        path.parent.mkdir(exist_ok=True)
        header = {"images": str(len(self.real)), "checkpoint_sha256": self._digest()}
        write_atomic(path, save_bytes(stats, header))
        return stats

    def _digest(self) -> str:
        checkpoint = self.classifier.path / MODEL_FILE
        return hashlib.sha256(checkpoint.read_bytes()).hexdigest()

    def _cache_path(self) -> Path:
        key = f"test-{len(self.real)}-{self._digest()[:16]}"
        return self.classifier.path / STATS_DIR / f"{key}.safetensors"

    def describe(self) -> dict[str, Any]:
        return {
            "samples": self.n,
            "real_images": len(self.real),
            "feature_classifier": str(self.classifier.path),
            "feature_classifier_plugin": self.classifier.record.plugin,
            "features": f"features() of the feature classifier ({self.fake[0].shape[1]}-d)",
        }


@metric("frechet_distance", "Fréchet distance in the zoo classifier's feature space")
def _frechet(evidence: GenerativeEvidence) -> dict[str, float]:
    real = evidence.real_statistics
    mean, cov = gaussian(evidence.fake[0])
    return {"frechet_distance": frechet_distance(real["mean"], real["cov"], mean, cov)}


@metric("classifier_score", "exp(E KL(p(y|x) || p(y))) with the zoo classifier (max 10)")
def _classifier_score(evidence: GenerativeEvidence) -> dict[str, float]:
    return {
        "classifier_score": classifier_score(evidence.fake[1]),
        "real_classifier_score": float(evidence.real_statistics["classifier_score"]),
    }


@metric("conditional_accuracy", "how often the classifier sees the class that was asked for")
def _conditional_accuracy(evidence: GenerativeEvidence) -> dict[str, float]:
    if evidence.requested_labels is None:
        return {}
    predicted = evidence.fake[1].argmax(dim=1)
    return {"conditional_accuracy": float((predicted == evidence.requested_labels).double().mean())}
