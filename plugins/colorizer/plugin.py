"""The built-in `colorizer`: a conditional GAN from gray garments to colour.

Two modes. ``palette`` (the paper's): every class has its colour and the network must
recognise the garment to colour it. ``color``: the wanted colour is an input (three
constant planes beside the gray image); training draws a random colour per image, so
any colour can be asked for at use time (`zoo colorize RUN shirt.png --color navy`).

Loss as pix2pix (Isola et al. 2017): adversarial (a patch discriminator that sees the
gray condition) plus ``l1_weight`` times L1 to the target. ``--adversarial-weight 0``
trains the same generator on L1 alone, the baseline that shows what the GAN adds.
"""

from __future__ import annotations

import functools

import attrs

from zoo import ColorizerPlugin, PluginInfo, canonical_palette, hookimpl, option, resolve_palette

PAPER = (
    "Brayton et al. 2020 (DCGAN colorizer, batch 64, Adam 1e-4); "
    "U-Net + patch discriminator as in pix2pix (Isola et al. 2017)"
)


@attrs.frozen
class ColorizerConfig:
    mode: str = option(
        "palette",
        help="palette: each class in its palette colour (the paper); color: any colour, "
        "given at use time.",
        choices=("palette", "color"),
    )
    palette: str = option(
        "",
        help='Class colours: a TOML file of `"Dress" = "red"` lines, or inline '
        "'Dress=red; Bag=teal; ...' naming all ten classes (default: the built-in palette).",
        converter=canonical_palette,
    )
    lr: float = option(1e-4, help="Adam learning rate of G and D.", min=0.0, min_exclusive=True)
    beta1: float = option(0.5, help="Adam beta1.", min=0.0, max=1.0)
    beta2: float = option(0.999, help="Adam beta2.", min=0.0, max=1.0)
    l1_weight: float = option(100.0, help="Weight of the L1 loss to the target.", min=0.0)
    adversarial_weight: float = option(
        1.0, help="Weight of the GAN loss; 0 trains on L1 alone (no discriminator).", min=0.0
    )
    width: int = option(32, help="Channels of the U-Net's first layer.", min=4, max=1024)
    bn_momentum: float = option(
        0.1,
        help="Batch-norm momentum, PyTorch convention (the paper's Keras 0.9 is 0.1 here).",
        min=0.0,
        max=1.0,
    )


class Colorizer(ColorizerPlugin):
    info = PluginInfo(
        name="colorizer",
        task="colorize",
        summary="Conditional GAN: gray garment -> colour, by class palette or requested colour",
        paper=PAPER,
    )
    Config = ColorizerConfig
    # ~20,000 iterations, as the paper; fp32 because bf16 hurt the GANs' FD (RESULTS.md)
    # and has not been checked for the colorizer.
    defaults = {"epochs": 20, "batch_size": 64, "precision": "fp32"}

    @property
    def color_conditioned(self) -> bool:
        return self.config.mode == "color"

    @functools.cached_property
    def palette(self):
        return resolve_palette(self.config.palette)

    @property
    def adversarial(self) -> bool:
        return self.config.adversarial_weight > 0

    def build(self):
        from zoo_plugins.colorizer.networks import PatchDiscriminator, UNetGenerator

        channels = 4 if self.color_conditioned else 1
        width, momentum = self.config.width, self.config.bn_momentum
        modules = {"generator": UNetGenerator(channels, width, momentum)}
        if self.adversarial:
            modules["discriminator"] = PatchDiscriminator(channels + 3, width, momentum)
        return modules

    def configure_optimizers(self):
        import torch

        betas = (self.config.beta1, self.config.beta2)
        return {
            name: torch.optim.Adam(module.parameters(), lr=self.config.lr, betas=betas, fused=True)
            for name, module in self.modules.items()
        }

    def condition(self, gray, colors):
        """The generator's input: gray, plus the requested colour as three planes."""
        import torch

        if colors is None:
            return gray
        planes = (colors.to(gray.dtype) * 2 - 1)[:, :, None, None].expand(-1, -1, *gray.shape[2:])
        return torch.cat([gray, planes], dim=1)

    def colorize(self, gray, colors=None):
        if self.color_conditioned and colors is None:
            raise ValueError("a colour-conditioned colorizer needs the requested colours")
        return self.modules["generator"](self.condition(gray, colors))

    def train_step(self, batch):
        import torch.nn.functional as F

        from zoo import random_colors

        gray = batch.images
        colors = None
        if self.color_conditioned:
            colors = random_colors(len(gray)).to(gray.device)
        condition = self.condition(gray, colors)
        target = self.targets(gray, batch.labels, colors)
        fake = self.modules["generator"](condition)
        logs = {}
        g_loss = 0.0
        if self.adversarial:
            d = self.modules["discriminator"]
            d_loss = 0.5 * (
                bce(d(condition, target), True) + bce(d(condition, fake.detach()), False)
            )
            self.update("discriminator", d_loss)
            g_adversarial = bce(d(condition, fake), True)
            g_loss = self.config.adversarial_weight * g_adversarial
            logs = {"d_loss": d_loss.detach(), "g_adversarial": g_adversarial.detach()}
        l1 = F.l1_loss(fake.float(), target.float())
        g_loss = g_loss + self.config.l1_weight * l1
        self.update("generator", g_loss)
        return {**logs, "g_loss": g_loss.detach(), "l1": l1.detach()}


@hookimpl
def register_plugins(register) -> None:
    register(Colorizer)


def bce(logits, real: bool):
    """Binary cross-entropy against all-real or all-fake targets (logits in)."""
    import torch
    import torch.nn.functional as F

    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())
