"""The fgsm plugin and the adversarial core on a small classifier trained on real data."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.conftest import SMALL
from tests.test_cli import assert_one_line_error, invoke
from zoo.core.data import load as load_data
from zoo.core.data import to_float
from zoo.tasks.attack.perturbations import (
    eps_in_range,
    fgsm,
    fgsm_step,
    foreground_mask,
    input_gradient,
    pgd,
)


@pytest.fixture(scope="module")
def batch(dense_run):
    loaded = zoo.load(dense_run.path)
    test = load_data().test.head(256)
    images = to_float(test.images, loaded.plugin.pixel_range)
    return loaded.plugin, images, test.labels


def _accuracy(plugin, images, labels) -> float:
    with torch.no_grad():
        return (plugin.predict(images).argmax(1) == labels).float().mean().item()


def test_eps_scales_convert():
    assert eps_in_range(0.05, "paper", (0.0, 1.0)) == pytest.approx(0.025)
    assert eps_in_range(0.05, "paper", (-1.0, 1.0)) == pytest.approx(0.05)
    assert eps_in_range(0.05, "unit", (-1.0, 1.0)) == pytest.approx(0.1)


def test_masked_noise_leaves_background_pixels_alone(batch):
    plugin, images, labels = batch
    mask = foreground_mask(images, plugin.pixel_range)
    attacked = fgsm(plugin.predict, images, labels, 0.1, plugin.pixel_range, mask=mask)
    background = images == plugin.pixel_range[0]
    assert background.any()
    assert torch.equal(attacked[background], images[background])
    assert not torch.equal(attacked[~background], images[~background])


def test_perturbation_max_norm_is_epsilon_before_clipping(batch):
    plugin, images, labels = batch
    gradient = input_gradient(plugin.predict, images, labels)
    eps = 0.07
    unclipped = fgsm_step(images, gradient, eps, (-1e9, 1e9))
    assert (unclipped - images).abs().max().item() == pytest.approx(eps, abs=1e-6)
    clipped = fgsm_step(images, gradient, eps, plugin.pixel_range)
    assert clipped.min() >= plugin.pixel_range[0] and clipped.max() <= plugin.pixel_range[1]


def test_standard_accuracy_does_not_rise_with_epsilon(batch):
    plugin, images, labels = batch
    gradient = input_gradient(plugin.predict, images, labels)
    accuracies = [
        _accuracy(plugin, fgsm_step(images, gradient, eps, plugin.pixel_range), labels)
        for eps in (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
    ]
    assert all(b <= a for a, b in itertools.pairwise(accuracies)), accuracies
    assert accuracies[-1] < accuracies[0] - 0.2


def test_pgd_is_at_least_as_strong_as_fgsm_and_stays_in_the_ball(batch):
    plugin, images, labels = batch
    eps = 0.05
    single = fgsm(plugin.predict, images, labels, eps, plugin.pixel_range)
    iterated = pgd(
        plugin.predict,
        images,
        labels,
        eps,
        plugin.pixel_range,
        steps=10,
        generator=torch.Generator().manual_seed(0),
    )
    assert (iterated - images).abs().max().item() <= eps + 1e-6
    assert _accuracy(plugin, iterated, labels) <= _accuracy(plugin, single, labels)


def test_fgsm_run_writes_curves_and_eps0_equals_eval(dense_run, tmp_path):
    clean = zoo.evaluate(dense_run.path)["accuracy"]
    result = zoo.run(
        "fgsm",
        target=[str(dense_run.path)],
        epsilons=[0, 0.05, 0.2],
        test_size=SMALL["test_size"],
        out=str(tmp_path),
        progress=False,
    )
    report = json.loads((result.path / "robustness.json").read_text())
    assert report["scale"] == "paper" and "[-1, 1]" in report["scale_note"]
    curves = report["targets"][0]["curves"]
    assert set(curves) == {"masked", "standard"}
    for curve in curves.values():
        assert curve[0] == {"eps": 0.0, "accuracy": clean}
        assert curve[-1]["accuracy"] < clean
    assert (result.path / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert (result.path / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert result.metrics["dense/standard@0"] == clean


def test_adversarial_training_changes_training_and_is_recorded(tmp_path):
    # no dropout: the extra forward passes would otherwise change the dropout masks alone
    options = {"dropout": 0.0, "seed": 1, "precision": "fp32", **SMALL}

    def train(eps: float, steps: int) -> zoo.RunResult:
        out = tmp_path / f"{eps}-{steps}"
        return zoo.run("cnn", max_steps=steps, adversarial_eps=eps, out=str(out), **options)

    clean, hardened = train(0.0, 1), train(0.1, 1)
    config = json.loads((hardened.path / "config.json").read_text())
    assert config["config"]["adversarial_eps"] == 0.1
    # the first step starts from the same weights: its loss is half clean, half adversarial,
    # and FGSM copies cost more than the clean images
    assert hardened.metrics["loss"] > clean.metrics["loss"]
    first, second = (load_file(str(r.path / "model.safetensors")) for r in (clean, hardened))
    assert not all(torch.equal(first[k], second[k]) for k in first)  # it changes the updates


def test_bad_attack_input(dense_run, tmp_path):
    assert_one_line_error(invoke("run", "fgsm"), 2, "--target")
    assert_one_line_error(
        invoke("run", "fgsm", "--target", str(tmp_path / "nope")), 1, "does not exist"
    )
    assert_one_line_error(
        invoke("run", "fgsm", "--target", str(dense_run.path), "--epsilons", "0.1,-0.2"),
        2,
        "--epsilons",
        "must be >= 0",
    )
    assert_one_line_error(
        invoke("run", "fgsm", "--target", str(dense_run.path), "--epsilons", "0.1,big"),
        2,
        "--epsilons",
        "expected float",
    )
    attack = zoo.run(
        "fgsm",
        target=[str(dense_run.path)],
        epsilons=[0.0],
        modes=["standard"],
        test_size=50,
        out=str(tmp_path),
        progress=False,
    )
    assert_one_line_error(
        invoke("run", "fgsm", "--target", str(attack.path), "--out", str(tmp_path)),
        1,
        "task attack",
        "classifier runs",
    )
