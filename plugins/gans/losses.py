"""Loss and penalty functions of the GAN variants (torch-heavy; imported on first use)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy against all-real or all-fake targets (logits in, not sigmoid)."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def least_squares(scores: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(scores.float(), torch.full_like(scores.float(), target))


def gradient_penalty(critic, points: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x critic(x)||_2 - 1)^2] at ``points``, differentiable for the critic's update."""
    points = points.detach().requires_grad_(True)
    scores = critic(points)[:, :1]
    (gradients,) = torch.autograd.grad(scores.sum(), points, create_graph=True)
    norms = gradients.flatten(1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


def interpolate(real: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Points on the lines between pairs of images, one uniform weight per pair."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    return real + alpha * (other - real)


def dragan_perturb(real: torch.Tensor) -> torch.Tensor:
    """DRAGAN's neighbourhood of the data: x + 0.5 * std(x) * U[0, 1)."""
    return real + 0.5 * real.std() * torch.rand_like(real)


def pulling_away(codes: torch.Tensor) -> torch.Tensor:
    """EBGAN's pulling-away term: mean squared cosine similarity between distinct codes."""
    n = codes.shape[0]
    if n < 2:
        return codes.new_zeros(())
    unit = F.normalize(codes.float().flatten(1), dim=1)
    similarity = unit @ unit.t()
    return (similarity.pow(2).sum() - n) / (n * (n - 1))


def reconstruction_l1(autoencoder, images: torch.Tensor) -> torch.Tensor:
    return (autoencoder(images)[0] - images).abs().mean()


def reconstruction_mse(
    autoencoder, images: torch.Tensor, target: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """EBGAN's energy, MSE(AE(images), target or images), and the autoencoder's code."""
    reconstruction, code = autoencoder(images)
    target = images if target is None else target
    return F.mse_loss(reconstruction.float(), target.float()), code
