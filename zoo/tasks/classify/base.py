"""Base class for classifier plugins: a network, cross-entropy, Adam, accuracy metrics.

A classifier plugin only builds its network; training, prediction and evaluation are
shared, so attacks and generative metrics can use any classifier through ``predict``.
torch is imported inside methods so that listing plugins stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from zoo.core.config import option
from zoo.core.contract import TrainablePlugin

if TYPE_CHECKING:
    import torch
    from torch import nn

    from zoo.core.contract import EpochContext
    from zoo.core.data import Batch


@attrs.frozen
class ClassifierConfig:
    lr: float = option(1e-3, help="Adam learning rate.", min=0.0, min_exclusive=True)
    adam_eps: float = option(
        1e-7, help="Adam epsilon (1e-7 as in Keras, which the paper used).", min=0.0
    )
    lr_schedule: str = option(
        "cosine",
        help="cosine: decay the learning rate to 0 over the run's steps; constant: the "
        "paper's Keras recipe.",
        choices=("constant", "cosine"),
    )
    adversarial_eps: float = option(
        0.0,
        help="Adversarial training: each step also trains on whole-image FGSM copies of the "
        "batch made with this epsilon (in [-1, 1] pixel units, the paper's scale); 0 = off.",
        min=0.0,
    )


class ClassifierPlugin(TrainablePlugin):
    """Subclasses set ``info`` and implement :meth:`build_network` (logits over 10 classes)."""

    Config = ClassifierConfig
    metrics = ("accuracy", "per_class_accuracy", "confusion_matrix")
    defaults = {"epochs": 10, "batch_size": 32}
    preview = "confusion_matrix.png"

    def build_network(self) -> nn.Module:
        raise NotImplementedError

    def build(self) -> Mapping[str, nn.Module]:
        return {"net": self.build_network()}

    def configure_optimizers(self) -> Mapping[str, torch.optim.Optimizer]:
        import torch

        params = self.modules["net"].parameters()
        return {"net": torch.optim.Adam(params, lr=self.config.lr, eps=self.config.adam_eps)}

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images already scaled to ``pixel_range``."""
        return self.modules["net"](images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, D): what generative metrics compare real and fake in.

        The default runs every layer of a ``Sequential`` network but the last; override
        it where that is too wide for a covariance (the cnn pools its feature maps).
        """
        return self.modules["net"][:-1](images).flatten(1)

    def train_step(self, batch: Batch) -> Mapping[str, torch.Tensor]:
        import torch.nn.functional as F

        optimizer = self.optimizer
        if self.config.lr_schedule == "cosine":
            progress = self.global_step / max(self.plan.total_steps, 1)
            for group in optimizer.param_groups:
                group["lr"] = self.config.lr * 0.5 * (1 + math.cos(math.pi * progress))
        logits = self.predict(batch.images)
        loss = F.cross_entropy(logits.float(), batch.labels)
        if self.config.adversarial_eps > 0:  # Goodfellow et al.: half clean, half adversarial
            from zoo.tasks.attack.perturbations import eps_in_range, fgsm

            eps = eps_in_range(self.config.adversarial_eps, "paper", self.pixel_range)
            adversarial = fgsm(self.predict, batch.images, batch.labels, eps, self.pixel_range)
            adversarial_loss = F.cross_entropy(self.predict(adversarial).float(), batch.labels)
            loss = 0.5 * (loss + adversarial_loss)
        self.update("net", loss)
        accuracy = (logits.argmax(dim=1) == batch.labels).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy}

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers["net"]

    def end_of_epoch(self, epoch: EpochContext) -> Mapping[str, float]:
        return epoch.evaluate(("accuracy",))
