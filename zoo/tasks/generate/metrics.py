"""Generative metrics, measured the way the field measures them, in pinned features.

A generator's samples and real images are compared in the features of one judge: by
default zoo's pinned evaluator (zoo/tasks/generate/feature_network.py: fixed weights, known SHA-256,
offline), so every user's numbers are on one scale; ``--classifier RUN`` judges with a
trained classifier run instead, and such numbers are labelled with that run.

- ``frechet_distance``: Fréchet distance between Gaussians fitted to the features;
- ``kid``: the unbiased kernel distance (Binkowski et al. 2018; torchmetrics), mean and
  spread over 100 random subsets, which unlike FD has no bias at small sample counts;
- ``precision_recall``: Kynkäänniemi et al. 2019 with k = 3: the share of samples inside
  the real data's k-NN manifold (fidelity) and of real images inside the samples'
  (coverage), so mode collapse shows as high precision and low recall;
- ``classifier_score``: exp(E_x KL(p(y|x) || p(y))) with the judge's head (at most 10);
- ``conditional_accuracy``: how often the judge sees the class that was asked for.

Beside each distance stands the real-data floor (``real_...``): the same number for as
many training images as there are samples, against the same test images, which is what
"as good as real data" means at this sample count. Real features are cached in the
user cache (``$ZOO_CACHE_DIR`` overrides it), keyed by split, image count, the images'
digest, the judge's digest and the device type.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from zoo.core.data import CLASSES, Split, iterate_batches, user_cache_dir
from zoo.core.errors import ConfigError, StorageError
from zoo.core.runs import write_atomic
from zoo.engine.devices import exact_fp32
from zoo.engine.evaluator import metric

NEAREST_K = 3  # Kynkäänniemi et al.'s choice
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # the usual KID protocol


@attrs.frozen
class Judge:
    """Whose features judge the samples: a name, the digest of its weights, and a
    function from images in ``pixel_range`` to (features, logits)."""

    name: str
    kind: str  # "pinned" or "classifier run"
    sha256: str
    pixel_range: tuple[float, float]
    look: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    device: torch.device
    run: str | None = None  # the classifier run's folder, for kind "classifier run"

    @property
    def label(self) -> str:
        if self.kind == "pinned":
            return f"{self.name} (zoo's pinned evaluator)"
        return f"classifier run {self.run} (not the pinned evaluator: not comparable)"

    def describe(self) -> dict[str, Any]:
        about = {"name": self.name, "kind": self.kind, "sha256": self.sha256}
        return {**about, "run": self.run} if self.run else about


def pinned_judge(device: torch.device) -> Judge:
    from zoo.tasks.generate import feature_network

    pinned = feature_network.PINNED
    network = feature_network.load_pinned(device, pinned)

    def look(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = network.features(images)
        return features, network.head(features)

    return Judge(pinned.name, "pinned", pinned.sha256, pinned.pixel_range, look, device)


def classifier_judge(loaded: Any) -> Judge:
    """A trained classifier run (a zoo.LoadedRun with features() and predict())."""
    plugin = loaded.plugin

    def look(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return plugin.features(images), plugin.predict(images)

    name = f"{loaded.record.plugin} run"
    return Judge(name, "classifier run", weights_digest(plugin.modules), plugin.pixel_range,
                 look, plugin.device, run=str(loaded.path))  # fmt: skip


def weights_digest(modules: torch.nn.Module) -> str:
    """SHA-256 of the weights as loaded (model.safetensors, or the state file's copy when
    a crash left no model file), so a cache key follows the weights, not a file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(modules.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy())
    return digest.hexdigest()


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


def features_frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(*gaussian(a), *gaussian(b))


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, seed: int) -> tuple[float, float]:
    """Unbiased KID (cubic polynomial kernel) as mean and standard deviation over
    KID_SUBSETS random subsets, drawn from ``seed`` (the global RNG is left as it was)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(KID_SUBSET_SIZE, len(real), len(fake))
    with warnings.catch_warnings():  # "saves all features": they are already in memory
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(  # the features are already extracted: identity module;
            feature=torch.nn.Identity(),  # one process computes it, even under torchrun
            subsets=KID_SUBSETS,
            subset_size=size,
            sync_on_compute=False,
        )
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, spread = kid.compute()
    return float(mean), float(spread)


def _kth_neighbour_distances(points: torch.Tensor, k: int, chunk: int = 1000) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point."""
    points = points.double()
    return torch.cat(
        [
            torch.cdist(part, points).kthvalue(k + 1, dim=1).values  # +1: itself, at 0
            for part in points.split(chunk)
        ]
    )


def _inside_share(
    queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1000
) -> float:
    """The share of ``queries`` inside at least one ball (centre, radius)."""
    centres = centres.double()
    inside = [
        (torch.cdist(part.double(), centres) <= radii).any(dim=1) for part in queries.split(chunk)
    ]
    return float(torch.cat(inside).double().mean())


def precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K
) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019: precision is the share of samples inside the real
    k-NN manifold, recall the share of real images inside the samples' manifold."""
    precision = _inside_share(fake, real, _kth_neighbour_distances(real, k))
    recall = _inside_share(real, fake, _kth_neighbour_distances(fake, k))
    return precision, recall


def classifier_score(logits: torch.Tensor) -> float:
    probabilities = logits.double().softmax(dim=1)
    marginal = probabilities.mean(dim=0, keepdim=True)
    kl = (
        probabilities * (probabilities.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())
    ).sum(dim=1)
    return float(kl.mean().exp())


class GenerativeEvidence:
    """Samples of a generator plugin, the test split and the real-data floor's training
    images, all seen by one judge (in fp32)."""

    def __init__(
        self,
        plugin: Any,
        real: Split,
        floor: Split,
        judge: Judge,
        *,
        n: int = 10000,
        seed: int = 0,
        batch_size: int = 500,
    ) -> None:
        for what, count in (("samples", n), ("test images", len(real)),
                            ("floor images", len(floor))):  # fmt: skip
            if count <= NEAREST_K:
                raise ConfigError(
                    f"generative metrics need at least {NEAREST_K + 1} {what} (k-NN precision "
                    f"and recall use k = {NEAREST_K}); got {count}"
                )
        self.plugin = plugin
        self.real = real
        self.floor = floor
        self.judge = judge
        self.n = n
        self.seed = seed
        self.batch_size = batch_size

    @functools.cached_property
    def requested_labels(self) -> torch.Tensor | None:
        if not self.plugin.conditional:
            return None
        return torch.arange(self.n) % len(CLASSES)

    def _to_judge_range(self, images: torch.Tensor) -> torch.Tensor:
        low, high = self.plugin.pixel_range
        target_low, target_high = self.judge.pixel_range
        unit = (images - low) / (high - low)
        return unit * (target_high - target_low) + target_low

    def _look_at_all(self, batches: Iterator[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Features and logits of every batch of images (in the judge's pixel range)."""
        features, logits = [], []
        with torch.no_grad(), exact_fp32():
            for images in batches:
                f, lg = self.judge.look(images.to(self.judge.device))
                features.append(f.float().cpu())
                logits.append(lg.float().cpu())
        return {"features": torch.cat(features), "logits": torch.cat(logits)}

    def _samples(self) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        labels = self.requested_labels
        for start in range(0, self.n, self.batch_size):
            count = min(self.batch_size, self.n - start)
            latent = self.plugin.latent(count, generator)
            batch_labels = None
            if labels is not None:
                batch_labels = labels[start : start + count].to(latent.device)
            with torch.no_grad():
                images = self.plugin.generate(latent, batch_labels)
            judged = self._to_judge_range(images.float())
            del images  # our reference gone: under CUDA graphs the next batch can replay
            yield judged

    @functools.cached_property
    def fake(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of ``n`` samples (conditional: classes in turn)."""
        seen = self._look_at_all(self._samples())
        return seen["features"], seen["logits"]

    @functools.cached_property
    def real_features(self) -> dict[str, torch.Tensor]:
        """Features and logits of the test images."""
        return self._split_features("test", self.real)

    @functools.cached_property
    def floor_features(self) -> dict[str, torch.Tensor]:
        """Features and logits of the training images of the real-data floor."""
        return self._split_features("train", self.floor)

    def _split_features(self, name: str, split: Split) -> dict[str, torch.Tensor]:
        """Cached by split, count, the images' own digest, the judge's and the device
        type (CUDA and CPU kernels round differently)."""
        digest = hashlib.sha256(split.images.cpu().numpy().tobytes()).hexdigest()
        key = f"{name}-{len(split)}-{digest[:12]}-{self.judge.sha256[:16]}-{self.judge.device.type}"
        path = features_cache_dir() / f"{key}.safetensors"
        cached = _read_cache(path, len(split))
        if cached is not None:
            return cached
        batches = (b.images for b in iterate_batches(
            split, self.batch_size, self.judge.pixel_range, shuffle=False))  # fmt: skip
        computed = self._look_at_all(batches)
        about = {"split": name, "images": str(len(split)), "sha256": self.judge.sha256}
        _write_cache(path, computed, {**about, "judge": self.judge.name})
        return computed

    def describe(self) -> dict[str, Any]:
        return {
            "test_images": len(self.real),
            "judged_by": self.judge.label,
            "evaluator": self.judge.describe(),
            "samples": self.n,
            "sampling_seed": self.seed,
            "real_split": "test",
            "real_images": len(self.real),
            "floor_split": "train",
            "floor_images": len(self.floor),
            "feature_dim": int(self.real_features["features"].shape[1]),
        }


def features_cache_dir() -> Path:
    """``$ZOO_CACHE_DIR/features``, else ``features`` in the user cache."""
    base = os.environ.get("ZOO_CACHE_DIR")
    return (Path(base) if base else user_cache_dir()) / "features"


def _read_cache(path: Path, images: int) -> dict[str, torch.Tensor] | None:
    """A cached file that holds what it should, else None: a damaged or foreign file is
    recomputed and rewritten, never trusted."""
    try:
        cached = load_bytes(path.read_bytes())
    except (SafetensorError, OSError):
        return None
    shapes_fit = all(
        key in cached and cached[key].dim() == 2 and len(cached[key]) == images
        for key in ("features", "logits")
    )
    return cached if shapes_fit else None


def _write_cache(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Best effort: a read-only or full cache folder costs time next run, not this result."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, save_bytes(tensors, header))
    except (OSError, StorageError):
        pass


@metric("frechet_distance", "Fréchet distance in the judge's features (real floor beside)")
def _frechet(evidence: GenerativeEvidence) -> dict[str, float]:
    real = evidence.real_features["features"]
    return {
        "frechet_distance": features_frechet_distance(real, evidence.fake[0]),
        "real_frechet_distance": features_frechet_distance(
            real, evidence.floor_features["features"]
        ),
    }


@metric("kid", "unbiased kernel distance (KID) in the judge's features, mean and spread")
def _kid(evidence: GenerativeEvidence) -> dict[str, float]:
    real = evidence.real_features["features"]
    kid, kid_std = kernel_distance(real, evidence.fake[0], evidence.seed)
    real_kid, real_kid_std = kernel_distance(
        real, evidence.floor_features["features"], evidence.seed
    )
    return {"kid": kid, "kid_std": kid_std, "real_kid": real_kid, "real_kid_std": real_kid_std}


@metric("precision_recall", f"k-NN precision and recall (k = {NEAREST_K}) in the judge's features")
def _precision_recall(evidence: GenerativeEvidence) -> dict[str, float]:
    real = evidence.real_features["features"]
    precision, recall = precision_recall(real, evidence.fake[0])
    real_precision, real_recall = precision_recall(real, evidence.floor_features["features"])
    return {
        "precision": precision,
        "recall": recall,
        "real_precision": real_precision,
        "real_recall": real_recall,
    }


@metric("classifier_score", "exp(E KL(p(y|x) || p(y))) with the judge's classes (max 10)")
def _classifier_score(evidence: GenerativeEvidence) -> dict[str, float]:
    return {
        "classifier_score": classifier_score(evidence.fake[1]),
        "real_classifier_score": classifier_score(evidence.real_features["logits"]),
    }


@metric("conditional_accuracy", "how often the judge sees the class that was asked for")
def _conditional_accuracy(evidence: GenerativeEvidence) -> dict[str, float]:
    if evidence.requested_labels is None:
        return {}
    predicted = evidence.fake[1].argmax(dim=1)
    return {"conditional_accuracy": float((predicted == evidence.requested_labels).double().mean())}
