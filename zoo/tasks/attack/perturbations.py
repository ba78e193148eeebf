"""Adversarial perturbations (FGSM, PGD) against any classifier's ``predict``.

They live in the core so that the ``fgsm`` attack plugin, adversarial training in
:class:`zoo.ClassifierPlugin` and third-party plugins share one implementation.

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
) -> torch.Tensor:
    """Projected gradient descent (Madry et al.): a random start in the eps-ball, then
    ``steps`` FGSM steps, each projected back into the ball and the valid range."""
    if eps == 0:
        return images.detach()
    step_size = 2.5 * eps / steps if step_size is None else step_size
    original = images.detach()
    noise = torch.rand(original.shape, generator=generator, device="cpu").to(original.device)
    start = (noise * 2 - 1) * eps
    if mask is not None:
        start = start * mask
    adversarial = (original + start).clamp(*pixel_range)
    for _ in range(steps):
        adversarial = fgsm(predict, adversarial, labels, step_size, pixel_range, mask=mask)
        adversarial = torch.min(torch.max(adversarial, original - eps), original + eps)
    return adversarial.clamp(*pixel_range)
