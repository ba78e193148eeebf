"""Robustness curves: the heavy half of the fgsm plugin, imported only when it runs."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import torch

import zoo
from zoo.core.config import build
from zoo.core.data import iterate_batches
from zoo.core.devices import resolve_device
from zoo.core.errors import ConfigError, RunError
from zoo.core.runs import read_run, write_json
from zoo.core.settings import RunSettings
from zoo.tasks.attack.perturbations import (
    eps_in_range,
    fgsm_step,
    foreground_mask,
    input_gradient,
    pgd,
)

SCALE_NOTES = {
    "paper": "epsilon in [-1, 1] pixel units (the paper's scale)",
    "unit": "epsilon in [0, 1] pixel units",
}


def _load_target(path: str, device: str) -> zoo.LoadedRun:
    record = read_run(path)
    task = zoo.get_plugin(record.plugin).info.task
    if task != "classify":
        raise RunError(
            f"target {path} is a '{record.plugin}' run (task {task}); "
            "fgsm attacks classifier runs (task classify)"
        )
    return zoo.load(path, device=device)


def _curve(loaded: zoo.LoadedRun, test, config, mode: str, generator) -> list[dict[str, float]]:
    """Accuracy at each epsilon for one target and one mode, over the whole split."""
    plugin = loaded.plugin
    settings = build(RunSettings, loaded.record.settings)
    pixel_range = plugin.pixel_range
    steps = [eps_in_range(eps, config.scale, pixel_range) for eps in config.epsilons]
    correct = [0] * len(steps)
    for batch in iterate_batches(test, settings.eval_batch_size, pixel_range, shuffle=False):
        images, labels = batch.images, batch.labels
        mask = foreground_mask(images, pixel_range) if mode == "masked" else None
        gradient = input_gradient(plugin.predict, images, labels) if mode != "pgd" else None
        for index, eps in enumerate(steps):
            if mode == "pgd":
                adversarial = pgd(
                    plugin.predict,
                    images,
                    labels,
                    eps,
                    pixel_range,
                    steps=config.pgd_steps,
                    generator=generator,
                )
            else:
                adversarial = fgsm_step(images, gradient, eps, pixel_range, mask=mask)
            with torch.no_grad():  # fp32, as every evaluation
                predictions = plugin.predict(adversarial).float().argmax(dim=1)
            correct[index] += int((predictions == labels).sum())
    return [
        {"eps": eps, "accuracy": hits / len(test)}
        for eps, hits in zip(config.epsilons, correct, strict=True)
    ]


def attack_runs(config, run) -> Mapping[str, Any]:
    if not config.target:
        raise ConfigError("--target: give at least one classifier run folder to attack")
    device = str(resolve_device(run.settings.device))
    targets = [_load_target(path, device) for path in config.target]
    test = run.data.test.to(targets[0].plugin.device)
    generator = torch.Generator().manual_seed(run.settings.seed)
    results = []
    for loaded in targets:
        name = loaded.record.plugin
        curves = {}
        for mode in config.modes:
            print(f"zoo: {mode} attack on {name} ({loaded.path.name})", file=sys.stderr)
            curves[mode] = _curve(loaded, test, config, mode, generator)
        results.append(
            {
                "run": str(loaded.path),
                "plugin": name,
                "pixel_range": list(loaded.plugin.pixel_range),
                "curves": curves,
            }
        )
    report = {
        "scale": config.scale,
        "scale_note": SCALE_NOTES[config.scale],
        "test_images": len(test),
        "targets": results,
    }
    write_json(run.path / "robustness.json", report)
    _print_table(report)
    from zoo_plugins.robustness_plots import plot_curves, plot_examples

    plot_curves(report, run.path / "robustness.png")
    plot_examples(targets[0], test, config, run.path / "examples.png")
    return _summary(report)


def _print_table(report: Mapping[str, Any]) -> None:
    print(f"accuracy under attack; {report['scale_note']}; {report['test_images']} test images")
    for target in report["targets"]:
        for mode, curve in target["curves"].items():
            cells = "  ".join(f"{p['eps']:g}:{p['accuracy']:.4f}" for p in curve)
            print(f"  {target['plugin']:<10} {mode:<9} {cells}")


def _summary(report: Mapping[str, Any]) -> dict[str, float]:
    summary = {}
    for target in report["targets"]:
        for mode, curve in target["curves"].items():
            for point in curve:
                summary[f"{target['plugin']}/{mode}@{point['eps']:g}"] = point["accuracy"]
    return summary
