"""The attack contract, the fgsm and pgd plugins and the perturbations, on a small
classifier trained on real data."""

from __future__ import annotations

import itertools
import json
import shutil
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.conftest import SMALL
from tests.test_cli import assert_one_line_error, invoke
from zoo import AttackPlugin, PluginInfo
from zoo.core.data import load as load_data
from zoo.core.data import to_float
from zoo.tasks.attack.runner import ROBUSTNESS_FILE


@pytest.fixture(scope="module")
def batch(dense_run):
    loaded = zoo.load(dense_run.path)
    test = load_data().test.head(256)
    images = to_float(test.images, loaded.plugin.pixel_range)
    return loaded.plugin, images, test.labels


def _accuracy(plugin, images, labels) -> float:
    with torch.no_grad():
        return (plugin.predict(images).argmax(1) == labels).float().mean().item()


def _fooled(plugin, images, labels) -> torch.Tensor:
    with torch.no_grad():
        return plugin.predict(images).argmax(1) != labels


def _attack(name: str, target, tmp_path, **values) -> tuple[zoo.RunResult, dict]:
    values = {"epsilons": [0, 0.05, 0.1], "test_size": 300, "progress": False, **values}
    result = zoo.run(name, target=[str(target)], out=str(tmp_path / name), **values)
    return result, json.loads((result.path / ROBUSTNESS_FILE).read_text())


# --- the perturbations (zoo.fgsm, zoo.pgd, ...) ---------------------------------------


def test_eps_scales_convert():
    assert zoo.eps_in_range(0.05, "paper", (0.0, 1.0)) == pytest.approx(0.025)
    assert zoo.eps_in_range(0.05, "paper", (-1.0, 1.0)) == pytest.approx(0.05)
    assert zoo.eps_in_range(0.05, "unit", (-1.0, 1.0)) == pytest.approx(0.1)


def test_masked_noise_leaves_background_pixels_alone(batch):
    plugin, images, labels = batch
    mask = zoo.foreground_mask(images, plugin.pixel_range)
    attacked = zoo.fgsm(plugin.predict, images, labels, 0.1, plugin.pixel_range, mask=mask)
    background = images == plugin.pixel_range[0]
    assert background.any()
    assert torch.equal(attacked[background], images[background])
    assert not torch.equal(attacked[~background], images[~background])


def test_perturbation_max_norm_is_epsilon_before_clipping(batch):
    plugin, images, labels = batch
    gradient = zoo.input_gradient(plugin.predict, images, labels)
    eps = 0.07
    unclipped = zoo.fgsm_step(images, gradient, eps, (-1e9, 1e9))
    assert (unclipped - images).abs().max().item() == pytest.approx(eps, abs=1e-6)
    clipped = zoo.fgsm_step(images, gradient, eps, plugin.pixel_range)
    assert clipped.min() >= plugin.pixel_range[0] and clipped.max() <= plugin.pixel_range[1]


def test_standard_accuracy_does_not_rise_with_epsilon(batch):
    plugin, images, labels = batch
    gradient = zoo.input_gradient(plugin.predict, images, labels)
    accuracies = [
        _accuracy(plugin, zoo.fgsm_step(images, gradient, eps, plugin.pixel_range), labels)
        for eps in (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
    ]
    assert all(b <= a for a, b in itertools.pairwise(accuracies)), accuracies
    assert accuracies[-1] < accuracies[0] - 0.2


def test_pgd_is_at_least_as_strong_as_fgsm_and_stays_in_the_ball(batch):
    plugin, images, labels = batch
    eps = 0.05
    single = zoo.fgsm(plugin.predict, images, labels, eps, plugin.pixel_range)
    iterated = zoo.pgd(
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


def test_pgd_restarts_keep_each_images_worst_case(batch):
    """An image counts as robust only if every restart fails: the restarts' union of
    fooled images, not the last restart's (nor the first's)."""
    plugin, images, labels = batch
    eps, options = 0.05, {"steps": 2, "step_size": 0.005}  # short steps: the starts matter
    generator = torch.Generator().manual_seed(1)
    singles = [
        zoo.pgd(plugin.predict, images, labels, eps, plugin.pixel_range, generator=generator,
                **options)
        for _ in range(4)
    ]  # fmt: skip
    union = torch.stack([_fooled(plugin, single, labels) for single in singles]).any(dim=0)
    # each restart alone misses some: keeping the first or the last would not do
    assert all(_fooled(plugin, single, labels).sum() < union.sum() for single in singles)
    worst = zoo.pgd(plugin.predict, images, labels, eps, plugin.pixel_range, restarts=4,
                    generator=torch.Generator().manual_seed(1), **options)  # fmt: skip
    assert torch.equal(_fooled(plugin, worst, labels), union)
    assert (worst - images).abs().max().item() <= eps + 1e-6


def test_pgd_without_random_start_is_deterministic_and_one_full_step_is_fgsm(batch):
    plugin, images, labels = batch
    eps, low_high = 0.05, plugin.pixel_range

    def no_start(seed: int, **options) -> torch.Tensor:
        return zoo.pgd(plugin.predict, images, labels, eps, low_high, random_start=False,
                       generator=torch.Generator().manual_seed(seed), **options)  # fmt: skip

    assert torch.equal(no_start(0, restarts=3), no_start(1))
    single_step = no_start(0, steps=1, step_size=eps)
    assert torch.equal(single_step, zoo.fgsm(plugin.predict, images, labels, eps, low_high))


def test_pgd_starts_at_random_without_a_generator_too(batch):
    """Called directly, without a generator, the random start comes from torch's global
    generator: one step of size 0 leaves the images at their random start."""
    plugin, images, labels = batch
    torch.manual_seed(0)
    started = zoo.pgd(plugin.predict, images, labels, 0.05, plugin.pixel_range, steps=1,
                      step_size=1e-12)  # fmt: skip
    moved = (started - images).abs()
    assert float(moved.max()) > 0.04 and float(moved.max()) <= 0.05 + 1e-6


def test_fgsm_plugin_shares_one_gradient_across_epsilons(batch):
    plugin, images, labels = batch
    fgsm = zoo.get_plugin("fgsm")()
    epsilons = [0.02, 0.1]
    for mask in (None, zoo.foreground_mask(images, plugin.pixel_range)):
        shared = fgsm.perturb_epsilons(plugin, images, labels, epsilons, mask=mask)
        for eps, attacked in zip(epsilons, shared, strict=True):
            alone = fgsm.perturb(plugin, images, labels, eps, mask=mask)
            assert torch.equal(attacked, alone)


# --- attack runs: what the core gives every attack ------------------------------------


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
    assert report["attack"] == "fgsm" and report["test_images"] == SMALL["test_size"]
    assert report["scale"] == "paper" and "[-1, 1]" in report["scale_note"]
    (target,) = report["targets"]
    assert target["plugin"] == "dense" and target["pixel_range"] == [0.0, 1.0]
    curves = target["curves"]
    assert set(curves) == {"masked", "standard"}
    for curve in curves.values():
        assert curve[0] == {"eps": 0.0, "accuracy": clean}
        assert curve[-1]["accuracy"] < clean
    # the paper's noise spares the background, so it hurts less than whole-image noise
    assert curves["masked"][-1]["accuracy"] > curves["standard"][-1]["accuracy"]
    assert (result.path / "robustness.png").read_bytes()[:4] == b"\x89PNG"
    assert (result.path / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert result.metrics["dense/standard@0"] == clean
    assert zoo.get_plugin("fgsm").preview == "robustness.png"


def test_pgd_run_is_at_least_as_strong_as_fgsm(dense_run, tmp_path):
    # a near-linear dense net leaves PGD little to find: 500 images, up to eps 0.2 (paper
    # scale), where it fools a few more than FGSM (6 more on the reference CPU)
    same = {"modes": ["standard"], "epsilons": [0, 0.05, 0.1, 0.2], "test_size": 500}
    _, fgsm_report = _attack("fgsm", dense_run.path, tmp_path, **same)
    pgd, pgd_report = _attack("pgd", dense_run.path, tmp_path, restarts=2, **same)
    assert pgd_report["attack"] == "pgd"
    one = fgsm_report["targets"][0]["curves"]["standard"]
    many = pgd_report["targets"][0]["curves"]["standard"]
    assert many[0] == one[0]  # eps 0: the clean accuracy for both
    assert all(p["accuracy"] <= f["accuracy"] for p, f in zip(many, one, strict=True))
    assert many[-1]["accuracy"] < one[-1]["accuracy"]  # strictly stronger where it matters
    config = json.loads((pgd.path / "config.json").read_text())["config"]
    assert config["steps"] == 10 and config["restarts"] == 2 and config["random_start"]


class Spy(AttackPlugin):
    """A valid attack that changes nothing and records what the core hands it."""

    info = PluginInfo(name="spy", task="attack", summary="records what perturb is given")
    calls: ClassVar[list[dict]] = []

    def perturb(self, model, images, labels, eps, *, mask=None, generator=None):
        self.calls.append(
            {"model": model, "images": images.clone(), "labels": labels.clone(), "eps": eps,
             "mask": mask, "generator": generator, "grad": torch.is_grad_enabled()}
        )  # fmt: skip
        return images


def test_the_core_hands_perturb_what_the_contract_promises(registry, dense_run, tmp_path):
    target = tmp_path / "target"
    shutil.copytree(dense_run.path, target)
    config = json.loads((target / "config.json").read_text())
    config["settings"]["eval_batch_size"] = 128  # the target's, not the attack run's 1000
    (target / "config.json").write_text(json.dumps(config))
    registry.register(Spy)
    Spy.calls.clear()
    _, report = _attack("spy", target, tmp_path, epsilons=[0, 0.1], examples=4)
    test = load_data().test.head(300)
    curve_calls, example_calls = Spy.calls[:6], Spy.calls[6:]
    assert [len(call["labels"]) for call in curve_calls] == [128, 128, 44] * 2
    for mode, calls in (("masked", curve_calls[:3]), ("standard", curve_calls[3:])):
        images = torch.cat([call["images"] for call in calls])
        assert torch.equal(images, to_float(test.images, (0.0, 1.0)))  # in order, in range
        assert torch.equal(torch.cat([call["labels"] for call in calls]), test.labels)
        for call in calls:
            assert call["eps"] == pytest.approx(0.05)  # 0.1 in [-1, 1] is 0.05 in [0, 1]
            assert call["model"].pixel_range == (0.0, 1.0) and callable(call["model"].predict)
            assert isinstance(call["generator"], torch.Generator) and call["grad"]
            if mode == "masked":
                assert torch.equal(call["mask"], (call["images"] > 0).float())
            else:
                assert call["mask"] is None
    assert [len(call["labels"]) for call in example_calls] == [4, 4]
    for curve in report["targets"][0]["curves"].values():  # unchanged images: no change
        assert curve[0]["accuracy"] == curve[1]["accuracy"]


def _bad_attack(name: str, perturb, **methods) -> type[AttackPlugin]:
    info = PluginInfo(name=name, task="attack", summary="a broken test attack")
    return type(name.title(), (AttackPlugin,), {"info": info, "perturb": perturb, **methods})


def _nudge(images, eps, pixel_range, scale: float = 1.0):
    return (images + scale * eps).clamp(*pixel_range)


BAD_OUTPUTS = {
    "escape": (
        lambda self, model, images, labels, eps, **_: _nudge(images, eps, model.pixel_range, 2),
        "standard",
        "attack 'escape' returned images outside the eps-ball (max |delta| 0.1 > eps 0.05)",
    ),
    "unclipped": (
        lambda self, model, images, labels, eps, **_: images + eps,
        "standard",
        "attack 'unclipped' returned pixels outside the target's range [0, 1] (min 0.05, max 1.05)",
    ),
    "nan": (
        lambda self, model, images, labels, eps, **_: images * float("nan"),
        "standard",
        "attack 'nan' returned non-finite pixels (NaN or inf) at eps 0.05",
    ),
    "cropped": (
        lambda self, model, images, labels, eps, **_: images[..., :27],
        "standard",
        "attack 'cropped' returned images of shape (64, 1, 28, 27) for a batch of shape "
        "(64, 1, 28, 28)",
    ),
    "listed": (
        lambda self, model, images, labels, eps, **_: images.tolist(),
        "standard",
        "attack 'listed' returned a list, not a tensor",
    ),
    "in-place": (  # edits the batch it was given: checked against an untouched original
        lambda self, model, images, labels, eps, **_: images.add_(2 * eps).clamp_(
            *model.pixel_range
        ),
        "standard",
        "attack 'in-place' returned images outside the eps-ball (max |delta| 0.1 > eps 0.05)",
    ),
    "unmask-in-place": (  # widens the mask it was given, then uses it
        lambda self, model, images, labels, eps, mask=None, **_: (
            images + eps * mask.fill_(1.0)
        ).clamp(*model.pixel_range),
        "masked",
        "attack 'unmask-in-place' changed pixels outside the mask in masked mode",
    ),
    "unmasked": (  # ignores the mask: in the ball and the range, but on the background
        lambda self, model, images, labels, eps, **_: _nudge(images, eps, model.pixel_range),
        "masked",
        "attack 'unmasked' changed pixels outside the mask in masked mode",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_OUTPUTS))
def test_an_attack_that_breaks_the_contract_is_refused(name, registry, dense_run, tmp_path):
    perturb, mode, message = BAD_OUTPUTS[name]
    registry.register(_bad_attack(name, perturb))
    result = invoke("run", name, "--target", str(dense_run.path), "--modes", mode,
                    "--epsilons", "0,0.1", "--test-size", "64", "--no-progress",
                    "--out", str(tmp_path))  # fmt: skip
    assert_one_line_error(result, 1, message)
    assert not list(tmp_path.rglob(ROBUSTNESS_FILE))  # no numbers from a broken attack


def test_perturb_epsilons_must_return_one_batch_per_epsilon(registry, dense_run, tmp_path):
    short = _bad_attack(
        "short",
        lambda self, model, images, labels, eps, **_: images,
        perturb_epsilons=lambda self, model, images, labels, epsilons, **_: [images],
    )
    registry.register(short)
    result = invoke("run", "short", "--target", str(dense_run.path), "--epsilons", "0.1,0.2",
                    "--test-size", "64", "--no-progress", "--out", str(tmp_path))  # fmt: skip
    assert_one_line_error(result, 1, "attack 'short' returned 1 batches for 2 epsilons")


def test_an_exception_in_perturb_is_one_line(registry, dense_run, tmp_path):
    def perturb(self, model, images, labels, eps, **_):
        raise RuntimeError("kaboom\nsecond line")

    registry.register(_bad_attack("boom", perturb))
    result = invoke("run", "boom", "--target", str(dense_run.path), "--test-size", "64",
                    "--no-progress", "--out", str(tmp_path))  # fmt: skip
    assert_one_line_error(
        result,
        1,
        f"attack 'boom' failed in perturb on dense ({dense_run.path.name}), masked mode: ",
        "RuntimeError: kaboom second line",
    )


def test_an_attack_config_must_extend_attack_config():
    import attrs

    @attrs.frozen
    class Own:
        steps: int = zoo.option(1, help="Steps.")

    with pytest.raises(TypeError, match=r"Config must subclass zoo\.AttackConfig"):
        type("Bad", (AttackPlugin,), {"Config": Own})


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
    # PGD is its own attack now (`zoo run pgd`), not a mode of fgsm
    assert_one_line_error(
        invoke("run", "fgsm", "--target", str(dense_run.path), "--modes", "pgd"), 2, "--modes"
    )
    assert_one_line_error(
        invoke("run", "pgd", "--target", str(dense_run.path), "--steps", "0"), 2, "--steps"
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
        invoke("run", "pgd", "--target", str(attack.path), "--out", str(tmp_path)),
        1,
        f"target {attack.path} is a 'fgsm' run (task attack); attack 'pgd' takes classifier "
        "runs (task classify)",
    )


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
