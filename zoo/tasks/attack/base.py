"""The attack contract: a plugin that perturbs test images to fool a trained classifier.

An attack plugin writes one method, :meth:`AttackPlugin.perturb`. The core
(:mod:`zoo.tasks.attack.runner`) does everything around it, so that every attack,
built-in or third-party, is measured the same way: it loads and checks the target
classifier runs, batches the test split, converts epsilon into each target's pixel
range, runs the masked and standard modes, checks every batch the attack returns, and
writes ``robustness.json``, the curves and the example sheet.

This module imports no torch, so ``zoo list`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from zoo.core.config import option
from zoo.core.contract import Plugin, ResultTable

if TYPE_CHECKING:
    import torch

    from zoo.core.runs import RunContext

DEFAULT_EPSILONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
MODES = ("masked", "standard")
SCALES = ("paper", "unit")
SCALE_RANGES = {"paper": "[-1, 1]", "unit": "[0, 1]"}
RESULTS_STEM = "robustness"  # robustness.json, written by the runner


@attrs.frozen
class AttackConfig:
    """What every attack run takes; an attack's own Config subclasses it."""

    target: tuple[str, ...] = option(
        (), help="Classifier run folder(s) to attack; repeat --target or separate with commas."
    )
    epsilons: tuple[float, ...] = option(
        DEFAULT_EPSILONS, help="Perturbation sizes, in the scale chosen by --scale.", min=0.0
    )
    scale: str = option(
        "paper",
        help="Scale of epsilon: paper = images in [-1, 1] as in the paper, unit = [0, 1].",
        choices=SCALES,
    )
    modes: tuple[str, ...] = option(
        MODES,
        help="masked = the paper's noise on pixels above the background only; "
        "standard = noise anywhere in the image. (PGD is an attack of its own: zoo run pgd.)",
        choices=MODES,
    )
    examples: int = option(8, help="Test images shown in examples.png.", min=1, max=32)


class Classifier(Protocol):
    """What an attack sees of its target: the loaded classifier plugin."""

    pixel_range: tuple[float, float]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, 10) for images (N, 1, 28, 28) in ``pixel_range``."""
        ...


class AttackPlugin(Plugin):
    """Subclasses set ``info`` (task "attack") and implement :meth:`perturb`.

    The core checks what ``perturb`` returns (same shape, finite, inside the eps-ball and
    the pixel range, untouched outside the mask) and refuses the run with one line
    otherwise, so a buggy attack cannot report robustness numbers it did not earn.
    """

    Config: ClassVar[type] = AttackConfig
    report_captions: ClassVar[Mapping[str, str]] = {
        "robustness.png": "Test accuracy of each classifier run against the attack strength ε",
        "examples.png": "Test images and their adversarial versions, with the predictions",
    }
    preview: ClassVar[str | None] = "robustness.png"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, AttackConfig)):
            raise TypeError(
                f"{cls.__name__}.Config must subclass zoo.AttackConfig (it holds the "
                "targets, epsilons and modes the core reads)"
            )

    def perturb(
        self,
        model: Classifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        eps: float,
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Adversarial versions of ``images`` (N, 1, 28, 28, in ``model.pixel_range``).

        ``eps`` (> 0) is already in that range; ``mask`` (masked mode, else None) is 1
        where noise is allowed; ``generator`` is a seeded CPU generator for random
        starts (draw on the CPU, then move: the numbers then match on every device)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement perturb()")

    def written_hook(self) -> str:
        """The method the attack's author wrote (for error messages): perturb_epsilons
        where it is overridden, else perturb."""
        inherited = type(self).perturb_epsilons is AttackPlugin.perturb_epsilons
        return "perturb" if inherited else "perturb_epsilons"

    def perturb_epsilons(
        self,
        model: Classifier,
        images: torch.Tensor,
        labels: torch.Tensor,
        epsilons: Sequence[float],
        *,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """One batch for each of ``epsilons``, in order. Override it where the epsilons
        of a curve can share work (FGSM: one gradient for all of them)."""
        return [
            self.perturb(model, images, labels, eps, mask=mask, generator=generator)
            for eps in epsilons
        ]

    @classmethod
    def describe_settings(cls, config: Mapping[str, Any]) -> str:
        """The attack's own settings (a run's saved config) for the protocol line of its
        report: every option beyond AttackConfig's, as written. Override it to say them
        the field's way ("PGD-20, step 2.5ε/20")."""
        own = {k: v for k, v in config.items() if k not in attrs.fields_dict(AttackConfig)}
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in own.items())

    @classmethod
    def report_tables(
        cls, results: Mapping[str, Any], config: Mapping[str, Any]
    ) -> Sequence[ResultTable]:
        """robustness.json as the field reports it: accuracy per target, mode and epsilon,
        with the threat model, scale, images and the attack's own settings."""
        report = results.get(RESULTS_STEM)
        points = _points(report)
        if not points:
            return ()
        epsilons = list(dict.fromkeys(eps for *_, eps, _ in points))
        cells: dict[tuple[str, str, str], dict[float, float]] = {}
        for run, plugin, mode, eps, accuracy in points:
            cells.setdefault((plugin, run, mode), {})[eps] = accuracy
        shown = _run_names(list(dict.fromkeys(run for _, run, _ in cells)))
        rows = tuple((plugin, shown[run], mode, *(found.get(eps) for eps in epsilons))
                     for (plugin, run, mode), found in cells.items())  # fmt: skip
        scale = _scale_range(report)
        settings = cls.describe_settings(config)
        images = report.get("test_images", "?")
        note = f"L-inf threat model; epsilon in {scale} pixel units; {images} test images"
        note += f"; {settings}" if settings else ""
        headers = ("target", "run", "mode", *(f"ε {eps:g}" for eps in epsilons))
        title = f"Accuracy under {report.get('attack', '?')}"
        return (ResultTable(title, headers, rows, note),)

    @classmethod
    def scores_of_other_runs(cls, results: Mapping[str, Any]) -> Mapping[str, Mapping[str, float]]:
        """Each target's accuracy at each epsilon above 0 (eps 0 is its clean accuracy),
        as columns such as ``pgd ε=0.1 [0, 1]`` (``pgd masked ...`` in masked mode)."""
        report = results.get(RESULTS_STEM)
        scores: dict[str, dict[str, float]] = {}
        for run, _, mode, eps, accuracy in _points(report):
            if eps > 0:
                kind = report["attack"] + ("" if mode == "standard" else f" {mode}")
                column = f"{kind} ε={eps:g} {_scale_range(report)}"
                scores.setdefault(run, {})[column] = accuracy
        return scores

    def execute(self, run: RunContext) -> Mapping[str, Any]:
        """The attack run: curves for every target and mode (see the module docstring)."""
        from zoo.tasks.attack.runner import attack_runs

        return attack_runs(self, run)


def _points(report: Any) -> list[tuple[str, str, str, float, float]]:
    """(target run, plugin, mode, eps, accuracy) of a robustness.json, in order; a
    damaged target, curve or point (not a number, eps not finite) is left out on its own,
    so a report still shows the rest."""
    if not isinstance(report, Mapping) or not isinstance(report.get("attack"), str):
        return []
    targets = report.get("targets")
    return [point for target in _listed(targets) for point in _target_points(target)]


def _target_points(target: Any) -> list[tuple[str, str, str, float, float]]:
    if not isinstance(target, Mapping):
        return []
    run, plugin, curves = target.get("run"), target.get("plugin"), target.get("curves")
    if not (isinstance(run, str) and isinstance(plugin, str) and isinstance(curves, Mapping)):
        return []
    return [
        (run, plugin, str(mode), float(point["eps"]), float(point["accuracy"]))
        for mode, curve in curves.items()
        for point in _listed(curve)
        if isinstance(point, Mapping)
        and _number(point.get("eps")) and math.isfinite(point["eps"])
        and _number(point.get("accuracy"))
    ]  # fmt: skip


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else []


def _run_names(runs: list[str]) -> dict[str, str]:
    """Each target's folder name, or its whole path where two targets share a name."""
    names = [Path(run).name for run in runs]
    return {
        run: name if name and names.count(name) == 1 else run
        for run, name in zip(runs, names, strict=True)
    }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scale_range(report: Mapping[str, Any]) -> str:
    scale = report.get("scale")
    return SCALE_RANGES.get(scale, "?") if isinstance(scale, str) else "?"
