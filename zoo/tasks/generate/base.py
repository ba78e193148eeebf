"""Base class for generative plugins: sampling, fixed-noise grids per epoch, a GIF.

A generator plugin says how to draw latent inputs and how to turn them into images;
the grids, the animation and ``zoo sample`` come from here, so every GAN (built-in or
third-party) gets them without extra code. torch is imported inside methods so that
listing plugins stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from zoo.core.contract import TrainablePlugin
from zoo.core.data import CLASSES, parse_label
from zoo.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from zoo.core.contract import EpochContext
    from zoo.core.data import Split

GRID_ROWS = 10
FIXED_NOISE_SEED = 2_147_483_647  # the same grid noise every epoch, whatever the run seed


def dcgan_init(module: Any) -> None:
    """The DCGAN initialisation (Radford et al. 2016): N(0, 0.02) convolution and linear
    weights, N(1, 0.02) batch-norm scales, zero biases; use ``net.apply(zoo.dcgan_init)``."""
    from torch import nn

    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class GeneratorPlugin(TrainablePlugin):
    """Subclasses implement :meth:`latent` and :meth:`generate`; ``conditional`` plugins
    accept class labels."""

    conditional: ClassVar[bool] = False
    evaluation_options = frozenset({"judge", "samples", "seed"})
    pixel_range = (-1.0, 1.0)
    metrics = (
        "frechet_distance",
        "kid",
        "precision_recall",
        "classifier_score",
        "conditional_accuracy",
    )

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latent vectors, drawn with ``generator`` (on the CPU, then moved)."""
        raise NotImplementedError

    def generate(self, latent: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in ``pixel_range`` from latent vectors (and labels, if conditional)."""
        raise NotImplementedError

    def evidence(
        self,
        split: Split,
        *,
        device: Any,
        batch_size: int,
        train: Split | None = None,
        judge: Any = None,
        samples: int | None = None,
        seed: int = 0,
    ) -> Any:
        """Samples (as many as ``split`` has test images, unless ``samples``) drawn from
        ``seed``, set against ``split`` and, for the real-data floor, as many images of
        ``train``; judged by zoo's pinned evaluator unless ``judge``
        (zoo.tasks.generate.metrics.Judge) is given."""
        from zoo.tasks.generate import metrics as gm

        if train is None:
            raise ConfigError("generative metrics need the training split (real-data floor)")
        n = len(split) if samples is None else samples
        judge = gm.pinned_judge(device) if judge is None else judge
        return gm.GenerativeEvidence(
            self, split, train.head(n), judge, n=n, seed=seed, batch_size=batch_size
        )

    def sample(self, n: int, *, labels: Any = None, seed: int | None = None) -> torch.Tensor:
        """``n`` images; ``labels`` is one class (name or index) or one per image."""
        import torch

        if labels is not None and not self.conditional:
            raise ConfigError(
                f"plugin '{self.info.name}' is unconditional: it cannot sample a given class"
            )
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        latent = self.latent(n, generator)
        label_tensor = None
        if self.conditional:
            if labels is None:
                label_tensor = torch.randint(0, len(CLASSES), (n,), generator=generator)
            elif isinstance(labels, (str, int)):
                label_tensor = torch.full((n,), parse_label(labels), dtype=torch.long)
            else:
                label_tensor = torch.tensor([parse_label(x) for x in labels], dtype=torch.long)
            label_tensor = label_tensor.to(self.device)
        was_training = self.modules.training
        self.modules.eval()
        with torch.no_grad():
            images = self.generate(latent, label_tensor)
        self.modules.train(was_training)
        return images

    def grid_inputs(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fixed 10x10 grid: each row one noise vector; conditional plugins put one
        class per column."""
        import torch

        generator = torch.Generator().manual_seed(FIXED_NOISE_SEED)
        if not self.conditional:
            return self.latent(GRID_ROWS * GRID_ROWS, generator), None
        latent = self.latent(GRID_ROWS, generator).repeat_interleave(len(CLASSES), dim=0)
        labels = torch.arange(len(CLASSES), device=latent.device).repeat(GRID_ROWS)
        return latent, labels

    def end_of_epoch(self, epoch: EpochContext) -> dict[str, float]:
        from zoo.reports.plots import epoch_picture, save_grid

        latent, labels = self.grid_inputs()
        images = self.generate(latent, labels)
        path = epoch_picture(epoch.run.path, epoch.epoch)
        save_grid(images, path, nrow=GRID_ROWS, pixel_range=self.pixel_range)
        return {}

    def end_of_training(self, epoch: EpochContext) -> None:
        from zoo.reports.plots import animate_epochs

        animate_epochs(epoch.run.path)
