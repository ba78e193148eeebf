"""Metrics of colorizers: L1, PSNR and SSIM against the colour targets, colour accuracy.

PSNR and SSIM come from torchmetrics (Gaussian-window SSIM as in Wang et al. 2004),
so they match what other papers report; colour accuracy is the zoo's own.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from zoo.core.data import CLASSES, iterate_batches
from zoo.engine.devices import exact_fp32
from zoo.engine.evaluator import Evidence, metric
from zoo.tasks.colorize.color_data import estimate_colors, nearest_color
from zoo.tasks.colorize.palette import test_color_table


class ColorizationEvidence(Evidence):
    """Outputs and targets for one split, computed once (in fp32) and shared by the
    metrics (the plugin, split, device and batch size are held as the core Evidence holds
    them)."""

    @functools.cached_property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(gray, output, target) in [0, 1] as float32, and the requested colours."""
        colors = self.plugin.evaluation_colors(len(self.split), self.device)
        grays, outputs, targets = [], [], []
        start = 0
        with torch.no_grad(), exact_fp32():
            for batch in iterate_batches(
                self.split, self.batch_size, self.plugin.pixel_range, shuffle=False
            ):
                part = None if colors is None else colors[start : start + len(batch)]
                start += len(batch)
                output = self.plugin.colorize(batch.images, part)
                target = self.plugin.targets(batch.images, batch.labels, part)
                grays.append((batch.images + 1) / 2)
                outputs.append(((output.float() + 1) / 2).clamp(0, 1))
                targets.append((target + 1) / 2)
        return torch.cat(grays), torch.cat(outputs), torch.cat(targets), colors


@metric("colorization_error", "mean L1, PSNR (dB) and SSIM against the colour targets")
def _colorization_error(evidence: ColorizationEvidence) -> dict[str, float]:
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    _, output, target, _ = evidence.tensors
    psnr = peak_signal_noise_ratio(output, target, data_range=1.0, dim=(1, 2, 3), reduction="none")
    ssim = torch.cat(  # per image, in chunks: one call on 10,000 images needs gigabytes
        [
            structural_similarity_index_measure(o, t, data_range=1.0, reduction="none")
            for o, t in zip(output.split(1000), target.split(1000), strict=True)
        ]
    ).mean()
    return {
        "l1": float((output - target).abs().mean()),
        "psnr": float(psnr.clamp(max=100).mean()),  # identical images would be +inf
        "ssim": float(ssim),
    }


@metric("color_accuracy", "share of garments whose colour is nearest the wanted colour")
def _color_accuracy(evidence: ColorizationEvidence) -> dict[str, Any]:
    """Each output's garment colour (least squares over garment pixels) is matched to the
    nearest of the palette colours, or of TEST_COLORS for requested colours."""
    gray, output, _, colors = evidence.tensors
    estimated = estimate_colors(output, gray)
    labels = evidence.split.labels
    if colors is None:
        candidates = evidence.plugin.palette.tensor(gray.device)
        wanted = labels
    else:
        candidates = test_color_table(gray.device)
        wanted = torch.arange(len(labels), device=gray.device) % len(candidates)
    correct = (nearest_color(estimated, candidates) == wanted).float()
    per_class = {
        name: float(correct[labels == k].mean()) if bool((labels == k).any()) else float("nan")
        for k, name in enumerate(CLASSES)
    }
    error = (estimated - candidates[wanted]).norm(dim=1).mean()
    return {
        "color_accuracy": float(correct.mean()),
        "color_error": float(error),
        "per_class_color_accuracy": per_class,
    }
