"""Pictures of an attack run: accuracy-vs-epsilon curves and clean/attacked examples.

Drawing only: the runner computes what is shown, so a picture never runs the attack
past the checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from zoo.core.data import CLASSES
from zoo.reports.plots import pyplot, save_figure

if TYPE_CHECKING:
    import torch

LINESTYLES = {"masked": "-", "standard": "--"}


@attrs.frozen
class Examples:
    """What examples.png shows: rows of images (the first is clean), their predictions."""

    rows: Mapping[str, torch.Tensor]  # row label -> images (N, 1, 28, 28) in pixel_range
    predictions: Mapping[str, torch.Tensor]  # row label -> predicted classes (N,)
    labels: torch.Tensor
    pixel_range: tuple[float, float]
    title: str


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
    ax.set_title(f"Accuracy under {report['attack']}")
    save_figure(fig, path)
    plt.close(fig)


def plot_examples(examples: Examples, path: Path) -> None:
    """One row per entry of ``examples.rows``; each image titled with its prediction,
    green where right and red where wrong."""
    low, high = examples.pixel_range
    columns = len(examples.labels)
    plt = pyplot()
    fig, axes = plt.subplots(
        len(examples.rows),
        columns,
        figsize=(1.3 * columns, 1.55 * len(examples.rows)),
        squeeze=False,
    )
    for row, (name, images) in enumerate(examples.rows.items()):
        predicted = examples.predictions[name]
        for col in range(columns):
            ax = axes[row][col]
            picture = ((images[col, 0] - low) / (high - low)).detach().cpu().numpy()
            ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            right = int(predicted[col]) == int(examples.labels[col])
            ax.set_title(
                CLASSES[int(predicted[col])], fontsize=7, color="green" if right else "red"
            )
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(examples.title, fontsize=9)
    save_figure(fig, path)
    plt.close(fig)
