"""Adversarial perturbations (FGSM, PGD) against any classifier's ``predict``.

They live in the attack task so that the ``fgsm`` and ``pgd`` attack plugins, adversarial
training in :class:`zoo.ClassifierPlugin` and third-party plugins share one
implementation (exported as ``zoo.fgsm``, ``zoo.pgd``, ...).

Images are in the classifier's own pixel range; ``eps`` is in that range too (see
:func:`eps_in_range` to convert from the paper's [-1, 1] scale or from [0, 1]).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Predict = Callable[[torch.Tensor], torch.Tensor]

SCALES = {"paper": (-1.0, 1.0), "unit": (0.0, 1.0)}


def eps_in_range(eps: float, scale: str, pixel_range: tuple[float, float]) -> float:
    """Convert an epsilon given in ``scale`` ("paper" = [-1, 1], "unit" = [0, 1]) to a
    step in ``pixel_range``: a step of 0.05 in [-1, 1] is 0.025 in [0, 1]."""
    low, high = SCALES[scale]
    return eps * (pixel_range[1] - pixel_range[0]) / (high - low)


def foreground_mask(images: torch.Tensor, pixel_range: tuple[float, float]) -> torch.Tensor:
    """1 where a pixel is brighter than the background (the range's minimum), else 0.

    The paper adds noise only there, so the black background stays untouched.
    """
    return (images > pixel_range[0]).to(images.dtype)


def input_gradient(predict: Predict, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient of the cross-entropy loss with respect to the input images."""
    with torch.enable_grad():
        inputs = images.detach().requires_grad_(True)
        loss = F.cross_entropy(predict(inputs).float(), labels)
        (gradient,) = torch.autograd.grad(loss, inputs)
    return gradient


def fgsm_step(
    images: torch.Tensor,
    gradient: torch.Tensor,
    eps: float,
    pixel_range: tuple[float, float],
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``images + eps * sign(gradient)`` (only where ``mask`` is 1), clipped to the range.

    Split from :func:`fgsm` so one gradient serves every epsilon of a robustness curve.
    """
    if eps == 0:
        return images.detach()
    step = eps * gradient.sign()
    if mask is not None:
        step = step * mask
    return (images.detach() + step).clamp(*pixel_range)


def fgsm(
    predict: Predict,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    pixel_range: tuple[float, float],
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The fast gradient sign method (Goodfellow et al., 2015)."""
    if eps == 0:
        return images.detach()
    gradient = input_gradient(predict, images, labels)
    return fgsm_step(images, gradient, eps, pixel_range, mask=mask)


def pgd(
    predict: Predict,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    pixel_range: tuple[float, float],
    *,
    steps: int = 10,
    step_size: float | None = None,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    random_start: bool = True,
    restarts: int = 1,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al.): from a random start in the eps-ball
    (or the image itself), ``steps`` FGSM steps of ``step_size`` (default 2.5 * eps /
    steps), each projected back into the ball and the valid range.

    With ``restarts`` > 1 each image keeps its worst case over the random starts: one
    that fools the classifier, else the one with the highest loss (without a random
    start every restart would be the same, so there is one)."""
    if eps == 0:
        return images.detach()
    step_size = 2.5 * eps / steps if step_size is None else step_size
    tries = restarts if random_start else 1
    worst = None
    for _ in range(tries):
        adversarial = _pgd_once(
            predict, images, labels, eps, pixel_range, steps=steps, step_size=step_size,
            mask=mask, random_start=random_start, generator=generator,
        )  # fmt: skip
        if tries == 1:
            return adversarial
        worst = _keep_worst(predict, labels, worst, adversarial)
    return worst[0]


def _pgd_once(
    predict: Predict,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    pixel_range: tuple[float, float],
    *,
    steps: int,
    step_size: float,
    mask: torch.Tensor | None,
    random_start: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One PGD attack; the random start is drawn from ``generator`` (on the CPU, so the
    numbers match on every device), or from torch's global generator without one."""
    original = images.detach()
    adversarial = original
    if random_start:
        noise = torch.rand(original.shape, generator=generator, device="cpu").to(original.device)
        start = (noise * 2 - 1) * eps
        if mask is not None:
            start = start * mask
        adversarial = (original + start).clamp(*pixel_range)
    for _ in range(steps):
        adversarial = fgsm(predict, adversarial, labels, step_size, pixel_range, mask=mask)
        adversarial = project(adversarial, original, eps, pixel_range)
    return adversarial


def project(
    adversarial: torch.Tensor, original: torch.Tensor, eps: float, pixel_range: tuple[float, float]
) -> torch.Tensor:
    """The nearest point of the L-inf eps-ball around ``original`` inside the range: the
    projection every iterative attack takes after each step."""
    return torch.min(torch.max(adversarial, original - eps), original + eps).clamp(*pixel_range)


Worst = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images, fooled, loss


def _keep_worst(
    predict: Predict, labels: torch.Tensor, worst: Worst | None, candidate: torch.Tensor
) -> Worst:
    """Per image, the worse of the kept attack and ``candidate``: fooling the classifier
    beats not fooling it, then the higher loss wins."""
    with torch.no_grad():
        logits = predict(candidate).float()
    loss = F.cross_entropy(logits, labels, reduction="none")
    fooled = logits.argmax(dim=1) != labels
    if worst is None:
        return candidate, fooled, loss
    kept, kept_fooled, kept_loss = worst
    better = (fooled & ~kept_fooled) | ((fooled == kept_fooled) & (loss > kept_loss))
    pick = better.view(-1, *([1] * (candidate.dim() - 1)))
    return (
        torch.where(pick, candidate, kept),
        torch.where(better, fooled, kept_fooled),
        torch.where(better, loss, kept_loss),
    )
