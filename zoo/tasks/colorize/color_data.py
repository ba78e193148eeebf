"""Colour Fashion-MNIST: every garment keeps its shading, painted in one colour.

``rgb = gray / 255 * colour``: the intensity scales the colour, so the black background
stays black and folds, seams and prints stay visible. The same gray image and colour
always give the same bytes, so the dataset needs no files: it is rebuilt on the fly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo.tasks.colorize.palette import Palette

if TYPE_CHECKING:
    import torch

    from zoo.core.data import Split

GARMENT_THRESHOLD = 0.1  # gray level (0..1) above which a pixel counts as garment


def paint(gray, colors):
    """Gray (N, 1, H, W) in [0, 1] and colours (N, 3) in [0, 1] -> RGB (N, 3, H, W)."""
    return gray * colors[:, :, None, None].to(gray.dtype)


def build_color_dataset(split: Split, palette: Palette) -> torch.Tensor:
    """uint8 (N, 3, 28, 28): each image of ``split`` in its class's palette colour."""
    import torch

    gray = split.images.unsqueeze(1).float() / 255.0
    colors = palette.tensor(gray.device)[split.labels]
    return paint(gray, colors).mul(255).round().to(torch.uint8)


def random_colors(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` colours (n, 3) in [0, 1] drawn evenly over hue, saturation and (bright) value.

    Value stays at 0.4 or more: a near-black colour would erase the garment.
    """
    import torch
    from matplotlib.colors import hsv_to_rgb

    hsv = torch.rand(n, 3, generator=generator)
    hsv[:, 2] = 0.4 + 0.6 * hsv[:, 2]
    return torch.from_numpy(hsv_to_rgb(hsv.numpy())).float()


def estimate_colors(rgb, gray, threshold: float = GARMENT_THRESHOLD):
    """The single colour that best explains each image: least squares for rgb = gray * c
    over its garment pixels. rgb (N, 3, H, W) and gray (N, 1, H, W), both in [0, 1]."""
    mask = (gray > threshold).to(rgb.dtype)
    weight = gray * mask
    numerator = (rgb * weight).flatten(2).sum(dim=2)
    denominator = (gray * weight).flatten(2).sum(dim=2).clamp(min=1e-8)
    return (numerator / denominator).clamp(0, 1)


def nearest_color(colors, candidates):
    """Index of the nearest candidate colour (Euclidean in RGB) for each colour."""
    import torch

    return torch.cdist(colors.float(), candidates.float().to(colors.device)).argmin(dim=1)
