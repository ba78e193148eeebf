"""Pictures of an attack: accuracy-vs-epsilon curves and clean/perturbed examples."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.core.data import CLASSES, to_float
from zoo.reports.plots import pyplot, save_figure
from zoo.tasks.attack.perturbations import eps_in_range, fgsm, foreground_mask, pgd

LINESTYLES = {"masked": "-", "standard": "--", "pgd": ":"}


def plot_curves(report: Mapping[str, Any], path: Path) -> None:
    """One colour per classifier, one line style per mode."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, target in enumerate(report["targets"]):
        label = f"{target['plugin']} ({Path(target['run']).name})"
        for mode, curve in target["curves"].items():
            ax.plot(
                [p["eps"] for p in curve],
                [p["accuracy"] for p in curve],
                LINESTYLES.get(mode, "-"),
                marker="o",
                markersize=3,
                color=colors[index % len(colors)],
                label=f"{label}, {mode}",
            )
    ax.set_xlabel(report["scale_note"])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Accuracy under adversarial noise")
    save_figure(fig, path)
    plt.close(fig)


def plot_examples(loaded, test, config, path: Path) -> None:
    """Row 1: clean test images; one row per mode at a mid-size epsilon; predicted labels."""
    plugin = loaded.plugin
    low, high = plugin.pixel_range
    shown_eps = 0.1 if 0.1 in config.epsilons else max(config.epsilons)
    eps = eps_in_range(shown_eps, config.scale, plugin.pixel_range)
    images = to_float(test.images[: config.examples], plugin.pixel_range)
    labels = test.labels[: config.examples]
    rows = {"clean": images}
    for mode in config.modes:
        if mode == "pgd":
            rows[mode] = pgd(
                plugin.predict, images, labels, eps, plugin.pixel_range, steps=config.pgd_steps
            )
        else:
            mask = foreground_mask(images, plugin.pixel_range) if mode == "masked" else None
            rows[mode] = fgsm(plugin.predict, images, labels, eps, plugin.pixel_range, mask=mask)
    plt = pyplot()
    fig, axes = plt.subplots(
        len(rows), len(labels), figsize=(1.3 * len(labels), 1.55 * len(rows)), squeeze=False
    )
    for row, (name, batch) in enumerate(rows.items()):
        with torch.no_grad():
            predicted = plugin.predict(batch).argmax(dim=1)
        for col in range(len(labels)):
            ax = axes[row][col]
            ax.imshow(
                ((batch[col, 0] - low) / (high - low)).cpu().numpy(), cmap="gray", vmin=0, vmax=1
            )
            ax.set_xticks([])
            ax.set_yticks([])
            right = int(predicted[col]) == int(labels[col])
            ax.set_title(
                CLASSES[int(predicted[col])], fontsize=7, color="green" if right else "red"
            )
            if col == 0:
                ax.set_ylabel(name if name == "clean" else f"{name}\neps {shown_eps:g}", fontsize=8)
    fig.suptitle(f"{loaded.record.plugin}: predictions (green right, red wrong)", fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
