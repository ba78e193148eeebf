"""The paper's two Fashion-MNIST classifiers: a dense network and a small CNN.

Both follow the paper's Keras notebook: Glorot-uniform weights and zero biases (Keras'
defaults), Adam 1e-3, batch 32, 10 epochs; by default the learning rate decays along a
cosine (``--lr-schedule constant`` is the notebook's recipe exactly; see
docs/RESULTS.md). The CNN is the TF DCGAN-tutorial
discriminator with a 10-way head, including Keras' ``same`` padding (one pixel before,
two after, for stride 2) and LeakyReLU's default slope of 0.3.
"""

from __future__ import annotations

import attrs

from zoo import ClassifierConfig, ClassifierPlugin, PluginInfo, hookimpl, option

PAPER = "Brayton et al., Clothing Item Generation using GANs (SJSU, 2020), section III-A"


def _keras_init(module) -> None:
    from torch import nn

    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


@attrs.frozen
class DenseConfig(ClassifierConfig):
    hidden: int = option(128, help="Units in the hidden layer.", min=1, max=65_536)


class Dense(ClassifierPlugin):
    info = PluginInfo(
        name="dense",
        task="classify",
        summary="Dense classifier: 784 -> 128 ReLU -> 10 (paper: 88% test accuracy)",
        paper=PAPER,
    )
    Config = DenseConfig
    pixel_range = (0.0, 1.0)  # the notebook divides by 255

    def build_network(self):
        from torch import nn

        net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, self.config.hidden),
            nn.ReLU(),
            nn.Linear(self.config.hidden, 10),
        )
        return net.apply(_keras_init)


@attrs.frozen
class CNNConfig(ClassifierConfig):
    dropout: float = option(0.3, help="Dropout after each convolution.", min=0.0, max=0.95)
    negative_slope: float = option(0.3, help="LeakyReLU slope (Keras' default 0.3).", min=0.0)


class CNN(ClassifierPlugin):
    info = PluginInfo(
        name="cnn",
        task="classify",
        summary="CNN classifier: conv5x5/64/s2 -> conv5x5/128/s2 -> 10 (paper: 90% test)",
        paper=PAPER,
    )
    Config = CNNConfig
    pixel_range = (-1.0, 1.0)
    # channels-last: 952 against 845 images/s on the AVX2 CPU, the same results (RESULTS.md)
    defaults = {**ClassifierPlugin.defaults, "channels_last": True}

    def build_network(self):
        from torch import nn

        def block(channels_in: int, channels_out: int) -> list:
            return [
                nn.ZeroPad2d((1, 2, 1, 2)),  # Keras 'same' for kernel 5, stride 2
                nn.Conv2d(channels_in, channels_out, kernel_size=5, stride=2),
                nn.LeakyReLU(self.config.negative_slope),
                nn.Dropout(self.config.dropout),
            ]

        net = nn.Sequential(
            *block(1, 64), *block(64, 128), nn.Flatten(), nn.Linear(128 * 7 * 7, 10)
        )
        return net.apply(_keras_init)

    def features(self, images):
        """The second block's 128 feature maps averaged over space: 128 features instead of
        the head's 6,272, so a Fréchet distance needs only a 128x128 covariance."""
        return self.modules["net"][:7](images).mean(dim=(2, 3))  # up to the 2nd LeakyReLU


class MadryCNN(ClassifierPlugin):
    """The network of Madry et al.'s MNIST challenge, the usual reference for L-inf
    robustness on 28x28 images: wider than the paper's cnn where it is cheap (3.3M
    parameters, most in the 1024-unit layer) for about 1.3x its multiply-adds, since
    adversarial training needs capacity (Madry et al., section 4)."""

    info = PluginInfo(
        name="madry_cnn",
        task="classify",
        summary="Madry et al.'s MNIST-challenge CNN: conv5x5/32+pool -> conv5x5/64+pool -> "
        "1024 -> 10",
        paper="Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks "
        "(ICLR 2018), MNIST challenge model",
    )
    pixel_range = (0.0, 1.0)  # as in the challenge; epsilons convert by the scale
    defaults = {**ClassifierPlugin.defaults, "channels_last": True}

    def build_network(self):
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 1024),
            nn.ReLU(),
            nn.Linear(1024, 10),
        )


@hookimpl
def register_plugins(register) -> None:
    register(Dense)
    register(CNN)
    register(MadryCNN)
