"""Adversarial training for any classifier: what one batch's loss is under each defence.

- ``fgsm`` (Goodfellow et al. 2015): half the loss on the clean batch, half on its
  whole-image FGSM copy. Cheap (2 passes), and prone to catastrophic overfitting.
- ``pgd`` (Madry et al. 2018): the loss on PGD-k examples only, from a random start in
  the eps-ball with steps of 2.5 * eps / k (k + 1 forward-backward passes a step).
- ``trades`` (Zhang et al. 2019): cross-entropy on the clean batch plus ``beta`` times
  the KL divergence between the predictions on the clean batch and on the example
  that maximises it (k PGD steps on the KL, from x + 0.001 N(0, 1)).

Examples are made with the networks in eval mode (dropout off: the attack sees the
model it attacks), then the loss is taken in train mode, as the step would without a
defence. Everything stays inside the eps-ball and the plugin's pixel range.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from zoo.tasks.attack.perturbations import eps_in_range, fgsm, fgsm_step, pgd, project

DEFENCES = ("fgsm", "pgd", "trades")


def adversarial_loss(plugin: Any, images: torch.Tensor, labels: torch.Tensor, clean_loss):
    """The batch's training loss under ``plugin.config.adversarial`` (clean_loss is the
    cross-entropy of the clean batch, already computed by the step)."""
    config = plugin.config
    eps = eps_in_range(config.adversarial_eps, "paper", plugin.pixel_range)
    if config.adversarial == "fgsm":
        adversarial = fgsm(plugin.predict, images, labels, eps, plugin.pixel_range)
        return 0.5 * (clean_loss + _cross_entropy(plugin, adversarial, labels))
    if config.adversarial == "pgd":
        adversarial = _in_eval_mode(plugin, lambda: pgd_examples(plugin, images, labels, eps))
        return _cross_entropy(plugin, adversarial, labels)
    if config.trades_beta == 0:  # the KL term weighs nothing: plain cross-entropy
        return clean_loss
    adversarial = _in_eval_mode(plugin, lambda: trades_examples(plugin, images, eps))
    clean = F.softmax(plugin.predict(images).float(), dim=1)
    spread = F.kl_div(
        F.log_softmax(plugin.predict(adversarial).float(), dim=1), clean, reduction="batchmean"
    )
    return clean_loss + config.trades_beta * spread


def pgd_examples(plugin: Any, images: torch.Tensor, labels: torch.Tensor, eps: float):
    """Madry's training examples: PGD-k with a random start, step 2.5 * eps / k."""
    steps = plugin.config.adversarial_steps
    return pgd(plugin.predict, images, labels, eps, plugin.pixel_range, steps=steps)


def trades_examples(plugin: Any, images: torch.Tensor, eps: float) -> torch.Tensor:
    """The point of the eps-ball whose prediction differs most (KL) from the clean one."""
    steps = plugin.config.adversarial_steps
    step_size = 2.5 * eps / steps
    with torch.no_grad():
        clean = F.softmax(plugin.predict(images).float(), dim=1)
    original = images.detach()
    adversarial = (original + 0.001 * torch.randn_like(original)).clamp(*plugin.pixel_range)
    for _ in range(steps):
        with torch.enable_grad():
            inputs = adversarial.detach().requires_grad_(True)
            log_probs = F.log_softmax(plugin.predict(inputs).float(), dim=1)
            spread = F.kl_div(log_probs, clean, reduction="sum")
            (gradient,) = torch.autograd.grad(spread, inputs)
        adversarial = fgsm_step(adversarial, gradient, step_size, plugin.pixel_range)
        adversarial = project(adversarial, original, eps, plugin.pixel_range)
    return adversarial.detach()


def _cross_entropy(plugin: Any, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(plugin.predict(images).float(), labels)


def _in_eval_mode(plugin: Any, make):
    """``make()`` with the networks in eval mode, then back in train mode."""
    plugin.modules.eval()
    try:
        return make().detach()
    finally:
        plugin.modules.train()
