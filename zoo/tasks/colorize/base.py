"""Base class and evaluation for colorizers: gray garment in, RGB garment out.

A colorizer plugin implements :meth:`ColorizerPlugin.colorize`. Targets come from the
colour Fashion-MNIST builder (zoo.tasks.colorize.color_data): the class palette, or, for
colour-conditioned plugins, a requested colour per image. Per-epoch sheets, ``zoo eval``
metrics (L1, PSNR, SSIM, colour accuracy, in zoo.tasks.colorize.metrics) and
``zoo colorize`` (zoo.tasks.colorize.files) come from here, so a
third-party colorizer gets them without extra code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo.core.contract import TrainablePlugin
from zoo.core.data import CLASSES, Split
from zoo.tasks.colorize.color_data import paint
from zoo.tasks.colorize.palette import Palette, default_palette, test_color_table

if TYPE_CHECKING:
    import torch

    from zoo.core.contract import EpochContext

SHEET_EXAMPLES = 2  # test images per class on each epoch's sheet


class ColorizerPlugin(TrainablePlugin):
    """Subclasses implement :meth:`colorize`; colour-conditioned ones set
    ``color_conditioned`` and read the requested colours it is given."""

    pixel_range = (-1.0, 1.0)
    metrics = ("colorization_error", "color_accuracy")
    report_captions = {
        "samples/epoch_*.png": "Epoch {n}: per class, the gray input, the colourised output "
        "and the target"
    }

    @property
    def color_conditioned(self) -> bool:
        return False

    @property
    def palette(self) -> Palette:
        return default_palette()

    def colorize(self, gray: torch.Tensor, colors: torch.Tensor | None = None) -> torch.Tensor:
        """Gray (N, 1, 28, 28) in [-1, 1] -> RGB (N, 3, 28, 28) in [-1, 1]. ``colors``
        (N, 3) in [0, 1] are the requested colours of a colour-conditioned plugin."""
        raise NotImplementedError

    def targets(
        self, gray: torch.Tensor, labels: torch.Tensor, colors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What ``colorize`` should return (in [-1, 1]): the palette colour of each
        label, or the requested colours."""
        if colors is None:
            colors = self.palette.tensor(gray.device)[labels]
        return paint((gray + 1) / 2, colors) * 2 - 1

    def evaluation_colors(self, n: int, device=None) -> torch.Tensor | None:
        """Requested colours for test image i: TEST_COLORS in turn (conditioned only)."""
        if not self.color_conditioned:
            return None
        import torch

        table = test_color_table(device)
        return table[torch.arange(n, device=table.device) % len(table)]

    def evidence(self, split: Split, *, device, batch_size: int, train: Split | None = None):
        from zoo.tasks.colorize.metrics import ColorizationEvidence

        return ColorizationEvidence(self, split, device=device, batch_size=batch_size)

    def end_of_epoch(self, epoch: EpochContext) -> dict[str, float]:
        from zoo.reports.plots import epoch_picture

        self.save_sheet(epoch.run.data.test, epoch_picture(epoch.run.path, epoch.epoch))
        results = epoch.evaluate(["colorization_error"])
        return {k: v for k, v in results.items() if isinstance(v, float)}

    def end_of_training(self, epoch: EpochContext) -> None:
        from zoo.reports.plots import animate_epochs

        animate_epochs(epoch.run.path)

    def save_sheet(self, test: Split, path) -> None:
        """Columns: one class each; rows: gray input, colourised, target, for the first
        SHEET_EXAMPLES test images of each class (blank where a small split has fewer)."""
        import torch

        from zoo.core.data import to_float
        from zoo.reports.plots import save_grid

        rows = []
        picks = [torch.nonzero(test.labels == k).flatten() for k in range(len(CLASSES))]
        requested = self.evaluation_colors(len(CLASSES), self.device)
        for example in range(SHEET_EXAMPLES):
            present = [k for k, found in enumerate(picks) if len(found) > example]
            if not present:
                break
            index = torch.stack([picks[k][example] for k in present])
            gray = to_float(test.images[index].to(self.device), self.pixel_range)
            colors = None if requested is None else requested[present]
            with torch.no_grad():
                output = self.colorize(gray, colors).float()
            target = self.targets(gray, test.labels[index].to(self.device), colors)
            for images in (gray.expand(-1, 3, -1, -1), output, target):
                row = torch.full((len(CLASSES), 3, 28, 28), self.pixel_range[0])
                row[present] = images.cpu()
                rows.append(row)
        save_grid(torch.cat(rows), path, nrow=len(CLASSES), pixel_range=self.pixel_range)
