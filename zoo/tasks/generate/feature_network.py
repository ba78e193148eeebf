"""The pinned evaluator: one frozen Fashion-MNIST network that judges every generative run.

FID is comparable between papers because everyone measures in the features of one fixed
Inception checkpoint with a known digest. This is the same idea for Fashion-MNIST: a
small VGG-style network (3x3 convolutions with batch norm in three stages of 32, 64
and 128 channels, global average pooling, 128 features, a 10-way head), trained once by
``benchmarks/evaluator.py`` (fixed seed, fp32, all 60,000 training images), shipped
inside the package as safetensors and checked against its SHA-256 before use. Why this
shape: batch-norm conv nets reach 93-94% on Fashion-MNIST where the paper's cnn stops
near 91%, and pooled 128-d features give a well-conditioned 128x128 covariance from
10,000 images, while the file stays near 1 MB.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import attrs
import torch
from torch import nn

from zoo.core.errors import CheckpointError


@attrs.frozen
class PinnedWeights:
    """A released set of evaluator weights: its name, file and the file's digest."""

    name: str
    path: Path
    sha256: str
    pixel_range: tuple[float, float] = (-1.0, 1.0)


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PINNED = PinnedWeights(
    name="fmnist-features-v1",
    path=WEIGHTS_DIR / "fmnist-features-v1.safetensors",
    sha256="9a9b2135a52aff7077439bd765970d55698cbf4b94bad55ef1053c585bb3f4e3",
)


def _stage(channels_in: int, channels_out: int, convolutions: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for index in range(convolutions):
        width_in = channels_in if index == 0 else channels_out
        layers += [
            nn.Conv2d(width_in, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(inplace=True),
        ]
    return layers


class FeatureNetwork(nn.Module):
    """28x28 images in [-1, 1] -> 128 pooled features -> 10 class logits."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        first, second, third = widths
        self.body = nn.Sequential(
            *_stage(1, first, 1),  # one convolution at 28x28, where they cost the most
            nn.MaxPool2d(2),  # 14x14
            *_stage(first, second, 2),
            nn.MaxPool2d(2),  # 7x7
            *_stage(second, third, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(third, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def _verified_state(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    fix = "reinstall zoo, or restore the file with `git checkout -- zoo/tasks/generate/weights`"
    try:
        payload = path.read_bytes()
    except OSError as error:
        raise CheckpointError(
            f"the pinned evaluator's weights {path} cannot be read ({error.strerror}); {fix}"
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != sha256:
        raise CheckpointError(
            f"the pinned evaluator's weights {path} have SHA-256 {digest[:16]}..., not the "
            f"released {sha256[:16]}... (corrupt or altered); {fix}"
        )
    try:
        return load(payload)
    except SafetensorError as error:  # pragma: no cover - the digest matched
        raise CheckpointError(f"{path} is not a safetensors file ({error}); {fix}") from None


def load_pinned(device: torch.device, weights: PinnedWeights | None = None) -> FeatureNetwork:
    """The released evaluator (or ``weights``) on ``device``, in eval mode, after the
    file's digest was checked."""
    weights = PINNED if weights is None else weights
    network = FeatureNetwork()
    network.load_state_dict(_verified_state(weights.path, weights.sha256))
    return network.to(device).eval().requires_grad_(False)
