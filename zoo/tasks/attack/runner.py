"""What the core does for every attack run, whatever the attack: the targets, the data,
the modes, the checks, the numbers and the pictures.

The attack plugin only perturbs a batch (:meth:`AttackPlugin.perturb`); everything
measured is measured here, in fp32 on the run's device, so the numbers of two attacks
(or of a built-in and a third-party one) are comparable. At epsilon 0 the attack is
not asked: the accuracy is the clean accuracy, equal to ``zoo eval`` of the target on
the same test images.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import torch

from zoo.core.config import build
from zoo.core.data import Split, iterate_batches, to_float
from zoo.core.errors import ConfigError, RunError
from zoo.core.registry import default_registry
from zoo.core.runs import read_run, write_json
from zoo.core.settings import RunSettings
from zoo.engine.devices import exact_fp32, resolve_device
from zoo.engine.loading import load
from zoo.engine.progress import BatchProgress
from zoo.tasks.attack.checks import perturbed
from zoo.tasks.attack.perturbations import eps_in_range
from zoo.tasks.attack.plots import Examples, plot_curves, plot_examples

if TYPE_CHECKING:
    from zoo.core.runs import RunContext
    from zoo.tasks.attack.base import AttackPlugin

ROBUSTNESS_FILE = "robustness.json"
CURVES_FILE = "robustness.png"
EXAMPLES_FILE = "examples.png"
SHOWN_EPS = 0.1  # the epsilon of examples.png, where the run has it
SCALE_NOTES = {
    "paper": "epsilon in [-1, 1] pixel units (the paper's scale)",
    "unit": "epsilon in [0, 1] pixel units",
}


@attrs.frozen
class Target:
    """A classifier run under attack: its plugin, loaded, and its eval batch size."""

    path: Path
    plugin_name: str
    model: Any  # the classifier plugin: predict(images) -> logits, pixel_range
    batch_size: int

    @property
    def where(self) -> str:
        return f"{self.plugin_name} ({self.path.name})"


def attack_runs(attack: AttackPlugin, run: RunContext) -> dict[str, float]:
    """Curves of every target in every mode: robustness.json, the table on stdout,
    robustness.png and examples.png; returns the accuracies by target/mode@eps."""
    config = attack.config
    _check_config(config)
    device = resolve_device(run.settings.device)
    targets = [load_target(path, str(device), attack.info.name) for path in config.target]
    test = run.data.test.to(device)
    with exact_fp32():
        results = [_attack_target(attack, target, test, run.settings) for target in targets]
        examples = _examples(attack, targets[0], test, run.settings.seed)
    report = {
        "attack": attack.info.name,
        "scale": config.scale,
        "scale_note": SCALE_NOTES[config.scale],
        "test_images": len(test),
        "targets": results,
    }
    write_json(run.path / ROBUSTNESS_FILE, report)
    print_table(report)
    plot_curves(report, run.path / CURVES_FILE)
    plot_examples(examples, run.path / EXAMPLES_FILE)
    return summary(report)


def _check_config(config: Any) -> None:
    if not config.target:
        raise ConfigError("--target: give at least one classifier run folder to attack")
    if not config.epsilons:
        raise ConfigError("--epsilons: give at least one epsilon")
    if not config.modes:
        raise ConfigError("--modes: give at least one mode (masked, standard)")


def load_target(path: str, device: str, attack: str) -> Target:
    """A classifier run, loaded for attacking; any other run is a one-line RunError.
    Any classifier plugin will do, built-in or third-party: it is found by name."""
    record = read_run(path)
    plugin = default_registry().get(record.plugin)
    task = plugin.info.task
    if task != "classify":
        raise RunError(
            f"target {path} is a '{record.plugin}' run (task {task}); attack '{attack}' "
            "takes classifier runs (task classify)"
        )
    if not callable(getattr(plugin, "predict", None)):
        raise RunError(
            f"target {path} is a run of '{record.plugin}', a classifier without predict(); "
            f"attack '{attack}' needs its logits"
        )
    loaded = load(path, device=device)
    settings = build(RunSettings, loaded.record.settings)
    return Target(loaded.path, record.plugin, loaded.plugin, settings.eval_batch_size)


def _attack_target(
    attack: AttackPlugin, target: Target, test: Split, settings: RunSettings
) -> dict[str, Any]:
    curves = {}
    for mode in dict.fromkeys(attack.config.modes):
        if settings.progress:
            print(f"zoo: {attack.info.name} on {target.where}, {mode} mode", file=sys.stderr)
        batches = -(-len(test) // target.batch_size)
        what = f"{attack.info.name} on {target.where}, {mode} mode"
        with BatchProgress(batches, what, enabled=settings.progress) as bar:
            curves[mode] = _curve(attack, target, test, mode, settings.seed, bar)
    return {
        "run": str(target.path.resolve()),  # zoo compare finds the run from anywhere
        "plugin": target.plugin_name,
        "pixel_range": list(target.model.pixel_range),
        "curves": curves,
    }


def _curve(
    attack: AttackPlugin, target: Target, test: Split, mode: str, seed: int, bar: BatchProgress
) -> list[dict[str, float]]:
    """Accuracy at each epsilon for one target and one mode, over the whole split."""
    model, config = target.model, attack.config
    steps = [eps_in_range(eps, config.scale, model.pixel_range) for eps in config.epsilons]
    asked = [eps for eps in steps if eps > 0]
    generator = torch.Generator().manual_seed(seed)  # per curve: the same whatever ran before
    correct = [0] * len(steps)
    where = f"{target.where}, {mode} mode"
    for batch in iterate_batches(test, target.batch_size, model.pixel_range, shuffle=False):
        images, labels = batch.images, batch.labels
        attacked = iter(
            perturbed(attack, model, images, labels, asked,
                      masked=mode == "masked", generator=generator, where=where)
        )  # fmt: skip
        for index, eps in enumerate(steps):
            shown = next(attacked) if eps > 0 else images
            correct[index] += int((_predicted(model, shown) == labels).sum())
        bar.update(1)
    return [
        {"eps": eps, "accuracy": hits / len(test)}
        for eps, hits in zip(config.epsilons, correct, strict=True)
    ]


def _predicted(model: Any, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.predict(images).float().argmax(dim=1)


def _examples(attack: AttackPlugin, target: Target, test: Split, seed: int) -> Examples:
    """The first test images, clean and attacked in each mode at one epsilon."""
    config, model = attack.config, target.model
    shown = SHOWN_EPS if SHOWN_EPS in config.epsilons else max(config.epsilons)
    eps = eps_in_range(shown, config.scale, model.pixel_range)
    images = to_float(test.images[: config.examples], model.pixel_range)
    labels = test.labels[: config.examples]
    rows = {"clean": images}
    for mode in dict.fromkeys(config.modes):
        generator = torch.Generator().manual_seed(seed)
        where = f"{target.where}, {mode} mode, examples"
        attacked = perturbed(attack, model, images, labels, [eps] if eps > 0 else [],
                             masked=mode == "masked", generator=generator, where=where)  # fmt: skip
        rows[f"{mode}\neps {shown:g}"] = attacked[0] if attacked else images
    return Examples(
        rows=rows,
        predictions={name: _predicted(model, batch) for name, batch in rows.items()},
        labels=labels,
        pixel_range=model.pixel_range,
        title=f"{attack.info.name} on {target.plugin_name}: predictions (green right, red wrong)",
    )


def print_table(report: Mapping[str, Any]) -> None:
    """Accuracy against epsilon, one line per target and mode, on stdout."""
    print(
        f"accuracy under {report['attack']}; {report['scale_note']}; "
        f"{report['test_images']} test images"
    )
    for target in report["targets"]:
        for mode, curve in target["curves"].items():
            cells = "  ".join(f"{p['eps']:g}:{p['accuracy']:.4f}" for p in curve)
            print(f"  {target['plugin']:<10} {mode:<9} {cells}")


def summary(report: Mapping[str, Any]) -> dict[str, float]:
    """The run's metrics: ``{"dense/masked@0.05": accuracy, ...}``."""
    return {
        f"{target['plugin']}/{mode}@{point['eps']:g}": point["accuracy"]
        for target in report["targets"]
        for mode, curve in target["curves"].items()
        for point in curve
    }
