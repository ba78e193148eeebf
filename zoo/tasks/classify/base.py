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
        help="Adversarial training with this epsilon (in [-1, 1] pixel units, the paper's "
        "scale: 0.2 = 0.1 in [0, 1]); 0 = off. --adversarial chooses the defence.",
        min=0.0,
        max=2.0,
    )
    adversarial: str = option(
        "fgsm",
        help="fgsm: half clean, half whole-image FGSM (cheap; watch for catastrophic "
        "overfitting); pgd: Madry's training on PGD examples; trades: clean cross-entropy "
        "plus --trades-beta times the KL to the worst example in the ball.",
        choices=("fgsm", "pgd", "trades"),
    )
    adversarial_steps: int = option(
        7, help="PGD steps that make each training example (pgd, trades).", min=1, max=100
    )
    trades_beta: float = option(
        6.0, help="Weight of TRADES' robustness term (6 in its paper).", min=0.0, max=1000.0
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
        if self.config.adversarial_eps > 0:
            from zoo.tasks.classify.defences import adversarial_loss

            loss = adversarial_loss(self, batch.images, batch.labels, loss)
        self.update("net", loss)
        accuracy = (logits.argmax(dim=1) == batch.labels).float().mean()
        return {"loss": loss.detach(), "accuracy": accuracy}

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers["net"]

    def end_of_epoch(self, epoch: EpochContext) -> Mapping[str, float]:
        results = dict(epoch.evaluate(("accuracy",)))
        if self.config.adversarial_eps > 0:  # robust accuracy, and the collapse it can hide
            from zoo.tasks.classify.robust_check import check_robustness

            results.update(check_robustness(self, epoch))
        return results
