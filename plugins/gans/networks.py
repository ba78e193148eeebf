"""The networks every GAN variant shares, written once (infoGAN paper, appendix C.1).

G: FC 1024-BN-ReLU, FC 128x7x7-BN-ReLU, deconv 64 (4, s2)-BN-ReLU, deconv 1 (4, s2)-Tanh.
D: conv 64 (4, s2)-LReLU(0.2), conv 128 (4, s2)-BN-LReLU, FC 1024-BN-LReLU, FC out.
EBGAN and BEGAN use an autoencoder discriminator of similar capacity instead.
Weights start from N(0, 0.02) as in the reference collection.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo import dcgan_init


class Generator(nn.Module):
    """Noise (plus an optional condition vector) -> a 1x28x28 image in [-1, 1]."""

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.fc = nn.Sequential(
            nn.Linear(input_dim, 1024),
            nn.BatchNorm1d(1024),
            nn.ReLU(),
            nn.Linear(1024, 128 * 7 * 7),
            nn.BatchNorm1d(128 * 7 * 7),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1),
            nn.Tanh(),
        )
        self.apply(dcgan_init)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(inputs).view(-1, 128, 7, 7))


class Discriminator(nn.Module):
    """Image (plus optional condition channels) -> ``output_dim`` raw scores (logits)."""

    def __init__(self, input_channels: int = 1, output_dim: int = 1, batch_norm: bool = True):
        super().__init__()

        def norm(features: int, two_d: bool) -> nn.Module:
            if not batch_norm:  # WGAN-GP and DRAGAN penalise per-sample gradients
                return nn.Identity()
            return nn.BatchNorm2d(features) if two_d else nn.BatchNorm1d(features)

        self.conv = nn.Sequential(
            nn.Conv2d(input_channels, 64, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1),
            norm(128, True),
            nn.LeakyReLU(0.2),
        )
        self.fc = nn.Sequential(
            nn.Linear(128 * 7 * 7, 1024),
            norm(1024, False),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, output_dim),
        )
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(images).flatten(1))


class AutoEncoderDiscriminator(nn.Module):
    """EBGAN/BEGAN's discriminator: encode to a small code and reconstruct the image.

    As in the reference: conv 64 (4, s2)-ReLU, FC 32 (the code, returned raw because
    EBGAN's pulling-away term reads it), FC 64x14x14, deconv 1 (4, s2). BEGAN's decoder
    is linear, as the reference's (``decoder_batch_norm=False``). EBGAN's decoder has
    BN-ReLU after the second FC, as the reference, and also on the code before it: with
    the reference's raw code, EBGAN collapsed to one stripe pattern within 300 steps in
    every run here (docs/RESULTS.md).
    Returns the reconstruction and the code.
    """

    def __init__(self, code_dim: int = 32, decoder_batch_norm: bool = True) -> None:
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 14 * 14, code_dim),
        )
        decoder: list[nn.Module] = [nn.Linear(code_dim, 64 * 14 * 14)]
        if decoder_batch_norm:
            decoder = [nn.BatchNorm1d(code_dim), nn.ReLU(), *decoder]
            decoder += [nn.BatchNorm1d(64 * 14 * 14), nn.ReLU()]
        self.decode_fc = nn.Sequential(*decoder)
        self.decode_conv = nn.ConvTranspose2d(64, 1, 4, 2, 1)
        self.apply(dcgan_init)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encode(images)
        reconstruction = self.decode_conv(self.decode_fc(code).view(-1, 64, 14, 14))
        return reconstruction, code
