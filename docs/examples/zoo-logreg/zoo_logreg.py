"""A third-party zoo plugin in one module: multinomial logistic regression.

It uses only zoo's public API. Installing this package (``pip install .``) registers
it through the ``zoo`` entry-point group; ``zoo list`` then shows ``logreg``.
"""

from __future__ import annotations

import attrs

from zoo import ClassifierConfig, ClassifierPlugin, PluginInfo, hookimpl, option


@attrs.frozen
class LogRegConfig(ClassifierConfig):
    weight_decay: float = option(0.0, help="L2 penalty added by Adam.", min=0.0)


class LogisticRegression(ClassifierPlugin):
    info = PluginInfo(
        name="logreg",
        task="classify",
        summary="Multinomial logistic regression: 784 -> 10, a linear baseline",
        paper="a linear baseline, as in the Fashion-MNIST benchmark table",
    )
    Config = LogRegConfig
    pixel_range = (0.0, 1.0)

    def build_network(self):
        from torch import nn  # imported here so `zoo list` stays fast

        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

    def configure_optimizers(self):
        import torch

        params = self.modules["net"].parameters()
        return {
            "net": torch.optim.Adam(
                params, lr=self.config.lr, weight_decay=self.config.weight_decay
            )
        }


@hookimpl
def register_plugins(register):
    register(LogisticRegression)
