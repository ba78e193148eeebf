"""TensorBoard: event files in RUN/tensorboard (or --log-dir), written by
torch.utils.tensorboard.

Everything is logged at the global step, so a resume's ``purge_step`` hides whatever
a killed process logged past its checkpoint and the resumed run's steps appear once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.core.observers import RunObserver, RunStart
from zoo.engine.tracking.common import Warner, flat_params, scalars

FOLDER = "tensorboard"


class TensorBoardTracker(RunObserver):
    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder
        self.writer: Any = None
        self.step = 0
        self.params: dict[str, Any] = {}
        self.warner = Warner("TensorBoard")

    def run_started(self, start: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # under --log-dir, a sub-folder per run: TensorBoard shows them side by side, and
        # one run's purge on resume cannot hide another's steps
        folder = Path(self.folder) / start.path.name if self.folder else start.path / FOLDER
        # resuming: events a killed process logged after the checkpoint are hidden
        purge = start.step + 1 if start.step else None
        try:
            self.writer = SummaryWriter(str(folder), purge_step=purge)
        except Exception as error:  # a file where the folder goes, no permission...
            self.warner.fail(error)
            return
        self.step = start.step
        self.params = {k: _hparam(v) for k, v in flat_params(start).items()}
        if not start.step:
            self.writer.add_text("run", f"zoo run `{start.plugin}` ({start.task}) -> {start.path}")

    def losses_logged(self, step: int, losses: Mapping[str, float]) -> None:
        self.step = step
        self._guarded(self._scalars, "train/", losses, step)

    def epoch_ended(self, epoch: Any, record: Mapping[str, Any]) -> None:
        step = int(record.get("step", self.step))
        self.step = step
        self._guarded(self._scalars, "epoch/", record, step)
        from zoo.reports.plots import epoch_picture

        picture = epoch_picture(epoch.run.path, epoch.epoch)
        if picture.is_file():
            self._guarded(self._image, picture, step)

    def run_finished(self, path: Path, results: Mapping[str, Any]) -> None:
        final = {f"final/{k}": v for k, v in scalars(results).items()}
        if final:  # the hyperparameters beside the final metrics: TensorBoard's HPARAMS tab
            self._guarded(self._hparams, final)

    def run_closed(self, status: str) -> None:
        self._guarded(lambda: self.writer.close())

    def _hparams(self, final: Mapping[str, float]) -> None:
        self.writer.add_hparams(self.params, final, run_name=".", global_step=self.step)

    def _scalars(self, prefix: str, values: Mapping[str, Any], step: int) -> None:
        for key, value in scalars(values).items():
            if key != "step":
                self.writer.add_scalar(prefix + key, value, step)

    def _image(self, picture: Path, step: int) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(picture) as image:
            pixels = np.asarray(image.convert("RGB"))
        self.writer.add_image("samples", pixels, step, dataformats="HWC")

    def _guarded(self, write: Any, *args: Any, **kwargs: Any) -> None:
        if self.writer is None or self.warner.broken:
            return
        try:
            write(*args, **kwargs)
        except Exception as error:  # a full disk, a removed folder: warn, keep training
            self.warner.fail(error)


def _hparam(value: Any) -> Any:
    """A value TensorBoard's HPARAMS tab takes (bool, number or text)."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)
