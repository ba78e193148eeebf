"""The FGSM attack as a plugin: how robust is a trained classifier to adversarial noise?

The paper perturbs Fashion-MNIST images scaled to [-1, 1] by epsilon times the sign of
the loss gradient, only where a pixel is brighter than the background, and plots
accuracy against epsilon (75% at epsilon 0.05). This plugin reproduces that "masked"
mode, adds standard whole-image FGSM and the stronger iterative PGD, and works on any
classifier run, built-in or third-party, through the public API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from zoo import Plugin, PluginInfo, hookimpl, option

DEFAULT_EPSILONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
MODES = ("masked", "standard", "pgd")


@attrs.frozen
class FGSMConfig:
    target: tuple[str, ...] = option(
        (), help="Classifier run folder(s) to attack; repeat --target or separate with commas."
    )
    epsilons: tuple[float, ...] = option(
        DEFAULT_EPSILONS, help="Perturbation sizes, in the scale chosen by --scale.", min=0.0
    )
    scale: str = option(
        "paper",
        help="Scale of epsilon: paper = images in [-1, 1] as in the paper, unit = [0, 1].",
        choices=("paper", "unit"),
    )
    modes: tuple[str, ...] = option(
        ("masked", "standard"),
        help="masked = the paper's noise on pixels above the background only; standard = "
        "whole-image FGSM; pgd = iterative projected gradient descent (stronger, slower).",
        choices=MODES,
    )
    pgd_steps: int = option(10, help="Gradient steps of the pgd mode.", min=1, max=10_000)
    examples: int = option(8, help="Test images shown in examples.png.", min=1, max=32)


class FGSM(Plugin):
    info = PluginInfo(
        name="fgsm",
        task="attack",
        summary="FGSM/PGD robustness curves of classifier runs (paper: 75% at eps 0.05)",
        paper="Brayton et al. (SJSU, 2020) III-A; Goodfellow et al., arXiv:1412.6572",
    )
    Config = FGSMConfig
    report_captions = {
        "robustness.png": "Test accuracy of each classifier run against the attack strength ε",
        "examples.png": "Test images and their adversarial versions, with the predictions",
    }

    def execute(self, run) -> Mapping[str, Any]:
        from zoo_plugins.robustness import attack_runs

        return attack_runs(self.config, run)


@hookimpl
def register_plugins(register) -> None:
    register(FGSM)
