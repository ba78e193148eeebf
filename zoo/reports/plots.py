"""Pictures people would rather look at than read: loss curves, confusion matrices.

matplotlib is imported here only, and only when a picture is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

from zoo.core.runs import write_atomic


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Save a figure as PNG atomically, so a crash never leaves half a picture."""
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())


def plot_losses(records: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path | None:
    """One line per logged loss against the step; nothing is drawn without records."""
    if not records:
        return None
    plt = pyplot()
    keys = [k for k in records[0] if k != "step"]
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in records]
    for key in keys:
        ax.plot(steps, [r.get(key) for r in records], label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str
) -> Path:
    """Row-normalised colours with the raw counts written in each cell."""
    import torch

    plt = pyplot()
    counts = torch.tensor(matrix, dtype=torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(8, 7))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", color=color, fontsize=8)
    save_figure(fig, path)
    plt.close(fig)
    return path


def save_grid(images, path: Path, *, nrow: int, pixel_range: tuple[float, float]) -> Path:
    """Save a batch (N, C, H, W) in ``pixel_range`` as one PNG grid, ``nrow`` per row."""
    from torchvision.utils import make_grid

    low, high = pixel_range
    grid = make_grid(
        ((images.detach().float().cpu() - low) / (high - low)).clamp(0, 1),
        nrow=nrow,
        padding=2,
        pad_value=1.0,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(to_pil(grid), path)
    return path


def to_pil(grid):
    """A (C, H, W) tensor in [0, 1] as a PIL image (gray for one channel)."""
    from PIL import Image

    array = (grid.mul(255).round().byte().permute(1, 2, 0)).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def save_image(image, path: Path, **options) -> None:
    """Save a PIL image atomically, its format taken from the file suffix."""
    buffer = BytesIO()
    image.save(buffer, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"), **options)
    write_atomic(path, buffer.getvalue())


def save_gif(frames: Sequence[Path], path: Path, *, milliseconds: int = 400) -> Path | None:
    """Animate PNG frames (e.g. one sample grid per epoch) into a looping GIF."""
    from PIL import Image

    if not frames:
        return None
    images = [Image.open(frame).copy() for frame in frames]
    save_image(
        images[0], path, save_all=True, append_images=images[1:], duration=milliseconds, loop=0
    )
    return path


EPOCH_PICTURES = "samples"  # the folder of the per-epoch grids and sheets of a run
EPOCH_PATTERN = f"{EPOCH_PICTURES}/epoch_*.png"


def epoch_picture(run_dir: Path, epoch: int) -> Path:
    """Where epoch ``epoch``'s grid or sheet goes: the report and leaderboard find the
    pictures of every task (generators' grids, colorizers' sheets) by this one name."""
    return run_dir / EPOCH_PICTURES / f"epoch_{epoch:03d}.png"


def animate_epochs(run_dir: Path) -> Path | None:
    """animation.gif from the per-epoch pictures, in epoch order."""
    return save_gif(sorted(run_dir.glob(EPOCH_PATTERN)), run_dir / "animation.gif")
