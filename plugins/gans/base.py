"""What every GAN variant shares: config, networks, optimizers and the D/G step order.

A variant is a small subclass that sets a few class attributes (conditioning, the
discriminator's outputs) and overrides :meth:`GANPlugin.discriminator_loss` and
:meth:`GANPlugin.generator_loss`. This module imports no torch at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from zoo import GeneratorPlugin, option

REFERENCE = "znxlwm/pytorch-generative-model-collections, as used by Brayton et al. (2020)"
NUM_CLASSES = 10


@attrs.frozen
class GANConfig:
    z_dim: int = option(62, help="Noise dimensions, z ~ U[0, 1).", min=1, max=4096)
    lr: float = option(2e-4, help="Adam learning rate of D and G.", min=0.0, min_exclusive=True)
    beta1: float = option(0.5, help="Adam beta1.", min=0.0, max=1.0)
    beta2: float = option(0.999, help="Adam beta2.", min=0.0, max=1.0)


class GANPlugin(GeneratorPlugin):
    Config = GANConfig
    # fp32 by default: after one epoch on an H200, bf16 autocast gave FD 0.031-0.060
    # against fp32's 0.024-0.026 over three seeds (RESULTS.md, "bf16 against fp32").
    defaults = {"epochs": 50, "batch_size": 64, "precision": "fp32"}

    label_input: ClassVar[bool] = False  # G gets the one-hot label (CGAN, ACGAN, infoGAN)
    label_channels: ClassVar[bool] = False  # D gets the label as 10 extra channels (CGAN)
    discriminator_outputs: ClassVar[int] = 1
    discriminator_batch_norm: ClassVar[bool] = True
    autoencoder: ClassVar[bool] = False  # EBGAN, BEGAN
    autoencoder_batch_norm: ClassVar[bool] = True  # BN-ReLU in the autoencoder's decoder
    code_dim: ClassVar[int] = 0  # extra latent dimensions after z (infoGAN's continuous codes)

    @property
    def n_critic(self) -> int:
        """Discriminator steps per generator step."""
        return getattr(self.config, "n_critic", 1)

    # -- networks -------------------------------------------------------------------

    def build(self):
        from zoo_plugins.gans.networks import AutoEncoderDiscriminator, Discriminator, Generator

        inputs = self.config.z_dim + self.code_dim + (NUM_CLASSES if self.label_input else 0)
        if self.autoencoder:
            discriminator = AutoEncoderDiscriminator(decoder_batch_norm=self.autoencoder_batch_norm)
        else:
            channels = 1 + (NUM_CLASSES if self.label_channels else 0)
            discriminator = Discriminator(
                channels, self.discriminator_outputs, batch_norm=self.discriminator_batch_norm
            )
        return {"generator": Generator(inputs), "discriminator": discriminator}

    def configure_optimizers(self):
        import torch

        betas = (self.config.beta1, self.config.beta2)
        # fused Adam: one kernel per step instead of a loop over parameter groups; with
        # 13M parameters it makes the GAN step about 15% faster on CPU (docs/RESULTS.md)
        return {
            name: torch.optim.Adam(
                self.modules[name].parameters(), lr=self.config.lr, betas=betas, fused=True
            )
            for name in ("generator", "discriminator")
        }

    # -- sampling ---------------------------------------------------------------------

    @property
    def conditional(self) -> bool:  # type: ignore[override]
        return self.label_input

    def latent(self, n: int, generator=None):
        import torch

        z = torch.rand(n, self.config.z_dim, generator=generator)
        if self.code_dim:
            z = torch.cat([z, torch.rand(n, self.code_dim, generator=generator) * 2 - 1], dim=1)
        return z.to(self.device)

    def generate(self, latent, labels=None):
        return self.modules["generator"](self.generator_input(latent, labels))

    def generator_input(self, latent, labels):
        import torch
        import torch.nn.functional as F

        if not self.label_input:
            return latent
        return torch.cat([latent, F.one_hot(labels, NUM_CLASSES).to(latent.dtype)], dim=1)

    def discriminate(self, images, labels=None):
        """Raw discriminator outputs; CGAN appends the label as constant channels."""
        import torch
        import torch.nn.functional as F

        if self.label_channels:
            planes = F.one_hot(labels, NUM_CLASSES).to(images.dtype)[:, :, None, None]
            images = torch.cat([images, planes.expand(-1, -1, *images.shape[2:])], dim=1)
        return self.modules["discriminator"](images)

    # -- one step ---------------------------------------------------------------------

    def train_step(self, batch) -> Mapping[str, object]:
        real, labels = batch.images, batch.labels
        latent = self.latent(len(real))
        fake = self.generate(latent, labels if self.label_input else None)

        d_loss, logs = self.discriminator_loss(real, fake.detach(), labels, latent)
        self.update("discriminator", d_loss)
        self.after_discriminator_step()
        logs = {"d_loss": d_loss.detach(), **logs}
        if (self.global_step + 1) % self.n_critic == 0:
            g_loss, g_logs = self.generator_loss(fake, labels, latent)
            self.update("generator", g_loss)
            logs.update({"g_loss": g_loss.detach(), **g_logs})
        return logs

    def discriminator_loss(self, real, fake, labels, latent):
        """(loss, extra logs) for the discriminator's update; ``fake`` is detached."""
        raise NotImplementedError

    def generator_loss(self, fake, labels, latent):
        """(loss, extra logs) for the generator's update."""
        raise NotImplementedError

    def after_discriminator_step(self) -> None:
        """Hook after each D update (WGAN clips the critic's weights here)."""
