"""U-Net generator and patch discriminator of the colorizer (pix2pix-style, sized for 28x28).

G: gray (plus requested-colour planes) -> RGB in [-1, 1]. Skip connections carry the
garment's outline and shading straight to the output, so the network spends its
capacity on choosing colours. D sees the condition and an RGB image and scores each
7x7 patch as real or generated.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo import dcgan_init


def _down(cin: int, cout: int, kernel: int, stride: int, momentum: float, norm=True):
    """Conv (3x3 stride 1 keeps the size, 4x4 stride 2 halves it), [BN], LeakyReLU."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, 1)]
    if norm:
        layers.append(nn.BatchNorm2d(cout, momentum=momentum))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, momentum: float):
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, 2, 1),
        nn.BatchNorm2d(cout, momentum=momentum),
        nn.ReLU(),
    )


class UNetGenerator(nn.Module):
    """28 -> 14 -> 7 -> 14 -> 28 with skips; ``width`` channels at full resolution."""

    def __init__(self, in_channels: int, width: int = 32, bn_momentum: float = 0.1) -> None:
        super().__init__()
        w, m = width, bn_momentum
        self.enc1 = _down(in_channels, w, 3, 1, m, norm=False)  # 28x28
        self.enc2 = _down(w, 2 * w, 4, 2, m)  # 14x14
        self.enc3 = _down(2 * w, 4 * w, 4, 2, m)  # 7x7
        self.middle = nn.Sequential(
            nn.Conv2d(4 * w, 4 * w, 3, 1, 1), nn.BatchNorm2d(4 * w, momentum=m), nn.ReLU()
        )
        self.dec3 = _up(8 * w, 2 * w, m)  # 14x14
        self.dec2 = _up(4 * w, w, m)  # 28x28
        self.out = nn.Sequential(nn.Conv2d(2 * w, 3, 3, 1, 1), nn.Tanh())
        self.apply(dcgan_init)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(inputs)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d3 = self.dec3(torch.cat([self.middle(e3), e3], dim=1))
        d2 = self.dec2(torch.cat([d3, e2], dim=1))
        return self.out(torch.cat([d2, e1], dim=1))


class PatchDiscriminator(nn.Module):
    """(condition, RGB) -> 7x7 real/fake logits, one per overlapping patch."""

    def __init__(self, in_channels: int, width: int = 32, bn_momentum: float = 0.1) -> None:
        super().__init__()
        w = 2 * width
        self.layers = nn.Sequential(
            _down(in_channels, w, 4, 2, bn_momentum, norm=False),  # 14x14
            _down(w, 2 * w, 4, 2, bn_momentum),  # 7x7
            nn.Conv2d(2 * w, 1, 3, 1, 1),
        )
        self.apply(dcgan_init)

    def forward(self, condition: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([condition, rgb], dim=1))
