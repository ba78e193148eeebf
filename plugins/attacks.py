"""The built-in attacks, FGSM, PGD and AutoAttack: how robust is a trained classifier to adversarial
noise?

The paper perturbs Fashion-MNIST images scaled to [-1, 1] by epsilon times the sign of
the loss gradient, only where a pixel is brighter than the background, and plots
accuracy against epsilon (75% at epsilon 0.05). ``fgsm`` reproduces that (the masked
mode) and whole-image FGSM (the standard mode); ``pgd`` is the stronger iterative
attack that tells whether FGSM over-states robustness. Both are plain
:class:`zoo.AttackPlugin` subclasses on the public API: the core loads the targets,
runs the modes, checks each batch and writes the curves.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

import zoo
from zoo import AttackConfig, AttackPlugin, PluginInfo, hookimpl, option


class FGSM(AttackPlugin):
    info = PluginInfo(
        name="fgsm",
        task="attack",
        summary="FGSM robustness curves of classifier runs (paper: 75% at eps 0.05)",
        paper="Brayton et al. (SJSU, 2020) III-A; Goodfellow et al., arXiv:1412.6572",
    )

    def perturb(self, model, images, labels, eps, *, mask=None, generator=None):
        return zoo.fgsm(model.predict, images, labels, eps, model.pixel_range, mask=mask)

    def perturb_epsilons(
        self, model, images, labels, epsilons: Sequence[float], *, mask=None, generator=None
    ):
        """One gradient serves every epsilon of the curve: the sign does not change."""
        gradient = zoo.input_gradient(model.predict, images, labels)
        return [
            zoo.fgsm_step(images, gradient, eps, model.pixel_range, mask=mask) for eps in epsilons
        ]


@attrs.frozen
class PGDConfig(AttackConfig):
    steps: int = option(10, help="Gradient steps per attack.", min=1, max=10_000)
    step_size: float | None = option(
        None,
        help="Size of each step, in the scale of the epsilons (--scale); none = "
        "2.5 * eps / steps, as in Madry et al.",
        min=0.0,
        min_exclusive=True,
    )
    random_start: bool = option(True, help="Start from a uniform random point in the eps-ball.")
    restarts: int = option(
        1,
        help="Random starts per image; each image keeps its worst case (with --random-start).",
        min=1,
        max=100,
    )


class PGD(AttackPlugin):
    info = PluginInfo(
        name="pgd",
        task="attack",
        summary="L-inf PGD robustness curves: FGSM steps projected into the eps-ball",
        paper="Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, "
        "arXiv:1706.06083",
    )
    Config = PGDConfig

    @classmethod
    def describe_settings(cls, config):
        saved = {f.name: config.get(f.name, f.default) for f in attrs.fields(PGDConfig)}
        steps, size, restarts = saved["steps"], saved["step_size"], saved["restarts"]
        step = f"step 2.5ε/{steps}" if size is None else f"step {size}"
        start = "random start" if saved["random_start"] else "no random start"
        return f"PGD-{steps}, {step}, {start}, {restarts} restart{'s' * (restarts != 1)}"

    def perturb(self, model, images, labels, eps, *, mask=None, generator=None):
        config = self.config
        step_size = config.step_size
        if step_size is not None:  # given in the scale of the epsilons, like them
            step_size = zoo.eps_in_range(step_size, config.scale, model.pixel_range)
        return zoo.pgd(
            model.predict,
            images,
            labels,
            eps,
            model.pixel_range,
            steps=config.steps,
            step_size=step_size,
            mask=mask,
            generator=generator,
            random_start=config.random_start,
            restarts=config.restarts,
        )


@attrs.frozen
class AutoAttackConfig(AttackConfig):
    modes: tuple[str, ...] = option(
        ("standard",),
        help="standard only: AutoAttack perturbs whole images (its attacks take no mask).",
        choices=("standard",),
    )
    version: str = option(
        "standard",
        help="standard: APGD-CE, APGD-T, FAB-T and Square, the version RobustBench reports; "
        "rand: APGD-CE and APGD-DLR with expectation over randomness.",
        choices=("standard", "rand"),
    )


class AutoAttack(AttackPlugin):
    """AutoAttack (Croce & Hein 2020) as torchattacks implements it. Its attacks take
    images in [0, 1]: the target is wrapped so that it still sees its own pixel range,
    and epsilon (handed over in the target's range, like every attack's) is given in the
    same units the images are, so nothing is rescaled by hand on the way in or out."""

    info = PluginInfo(
        name="autoattack",
        task="attack",
        summary="AutoAttack (APGD-CE, APGD-T, FAB-T, Square): the field's robustness number",
        paper="Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble "
        "of diverse parameter-free attacks, ICML 2020, arXiv:2003.01690",
    )
    Config = AutoAttackConfig

    def perturb(self, model, images, labels, eps, *, mask=None, generator=None):
        import torch

        torchattacks = _torchattacks()
        low, high = model.pixel_range
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        attack = torchattacks.AutoAttack(
            _in_unit_range(model), norm="Linf", eps=eps / (high - low),
            version=self.config.version, n_classes=len(zoo.CLASSES), seed=seed,
        )  # fmt: skip
        unit = attack((images - low) / (high - low), labels)
        return (unit.detach() * (high - low) + low).clamp(low, high)


def _torchattacks():
    try:
        import torchattacks
    except ImportError:
        raise zoo.ConfigError(
            "autoattack needs the optional package torchattacks: pip install 'zoo[robust]'"
        ) from None
    return torchattacks


def _in_unit_range(model):
    """The target as an nn.Module on images in [0, 1] (what torchattacks expects)."""
    from torch import nn

    low, high = model.pixel_range

    class InUnitRange(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.networks = model.modules  # registered: torchattacks reads the device

        def forward(self, unit):
            return model.predict(unit * (high - low) + low).float()

    return InUnitRange().eval()  # eval: torchattacks puts back the mode it found


@hookimpl
def register_plugins(register) -> None:
    register(FGSM)
    register(PGD)
    register(AutoAttack)
