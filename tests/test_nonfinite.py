"""Non-finite losses: the run stops naming the exact step and keeps its last good
checkpoint, or, with --on-nonfinite skip, drops just those updates."""

from __future__ import annotations

import json
import math

import attrs
import torch
from safetensors.torch import load_file

import zoo
from tests.test_cli import invoke
from zoo.core.contract import TrainPlan
from zoo.core.runs import read_jsonl
from zoo.engine import checkpoints
from zoo.engine.trainer import hand_over, setup_modules

# 256 images at batch 32: 8 steps per epoch
OPTIONS = ("--train-size", "256", "--test-size", "64", "--seed", "1", "--no-progress")


def _assert_stopped_with(result, *fragments: str) -> None:
    """Progress lines, then one error line: exit 1, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("zoo: error: ")
    for fragment in fragments:
        assert fragment in last, last


def _poisoned_dense(bad_steps: frozenset[int]) -> type[zoo.Plugin]:
    """The built-in dense classifier, fed NaN images at the given 1-based steps."""
    dense = zoo.get_plugin("dense")

    class Poisoned(dense):
        info = attrs.evolve(dense.info, name="poisoned", summary="dense with NaN batches")

        def train_step(self, batch):
            if self.global_step + 1 in bad_steps:
                batch = attrs.evolve(batch, images=batch.images * float("nan"))
            return super().train_step(batch)

    return Poisoned


def test_a_nan_loss_stops_the_run_at_its_step_and_keeps_the_checkpoint(registry, tmp_path):
    registry.register(_poisoned_dense(frozenset({11})))
    result = invoke("run", "poisoned", "--epochs", "3", "--out", str(tmp_path), *OPTIONS)
    _assert_stopped_with(result, "loss became nan at step 11", "last checkpoint (step 8)",
                         "is intact", "--resume")  # fmt: skip
    (run,) = tmp_path.iterdir()
    assert "nan at step 11" in json.loads((run / "failed.json").read_text())["error"]
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
    weights = load_file(str(run / "model.safetensors"))
    assert all(torch.isfinite(value).all() for value in weights.values())
    resumed = invoke("run", "dense", "--resume", str(run), "--epochs", "3", *OPTIONS)
    assert "run of 'poisoned'" in resumed.output  # the checkpoint is intact and typed
    plugin = registry.get("poisoned")(registry.get("poisoned").Config())
    setup_modules(plugin, torch.device("cpu"))
    optimizers = hand_over(plugin, TrainPlan(1, 1, 1)).optimizers
    _, header = checkpoints.resume(run, plugin.modules, optimizers, "poisoned")
    assert (header["epoch"], header["step"]) == (1, 8)  # the epoch before the NaN, loadable


def test_weights_broken_without_a_non_finite_loss_are_never_checkpointed(registry, tmp_path):
    """An inf gradient on an epoch's last update leaves every logged loss finite; the
    check of the weights before each checkpoint still catches it."""
    dense = zoo.get_plugin("dense")

    class BrokenAtTheEnd(dense):
        info = attrs.evolve(dense.info, name="broken-at-end", summary="weights NaN at step 8")

        def train_step(self, batch):
            losses = super().train_step(batch)
            if self.global_step + 1 == 8:  # the last update of the first epoch
                with torch.no_grad():
                    next(self.modules.parameters()).fill_(float("nan"))
            return losses

    registry.register(BrokenAtTheEnd)
    result = invoke("run", "broken-at-end", "--epochs", "2", "--out", str(tmp_path), *OPTIONS)
    _assert_stopped_with(result, "weights became non-finite by step 8", "no checkpoint")
    assert not list(tmp_path.rglob("*.safetensors"))  # (a folder with no checkpoint is removed)


def test_skip_drops_only_the_bad_updates(registry, tmp_path):
    registry.register(_poisoned_dense(frozenset({3, 4, 12})))
    result = invoke(
        "run", "poisoned", "--epochs", "2", "--on-nonfinite", "skip", "--out", str(tmp_path),
        *OPTIONS,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "epoch 1 skipped 2 update(s)" in result.output
    (run,) = tmp_path.iterdir()
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["skipped_updates"] for r in records] == [2, 1]
    assert all(math.isfinite(r["loss"]) for r in records)
    weights = load_file(str(run / "model.safetensors"))
    assert all(torch.isfinite(value).all() for value in weights.values())
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["on_nonfinite"] == "skip"


def test_skip_gives_up_when_no_update_is_usable(registry, tmp_path):
    registry.register(_poisoned_dense(frozenset(range(1, 100))))
    result = invoke(
        "run", "poisoned", "--epochs", "2", "--on-nonfinite", "skip", "--out", str(tmp_path),
        *OPTIONS,
    )  # fmt: skip
    _assert_stopped_with(result, "every update of steps 1-8 had a non-finite loss")


def test_a_skipped_update_changes_neither_weights_nor_optimizer_state():
    dense = zoo.get_plugin("dense")
    plugin = dense(dense.Config())
    setup_modules(plugin, torch.device("cpu"))
    context = hand_over(plugin, TrainPlan(1, 1, 1), skip_nonfinite=True)
    before = {k: v.clone() for k, v in plugin.modules.state_dict().items()}
    weight = next(plugin.modules.parameters())
    images = torch.rand(4, 1, 28, 28)

    plugin.update("net", plugin.predict(images).sum() * float("inf"))  # inf loss
    plugin.update("net", plugin.predict(images * float("nan")).sum() * 0)  # nan gradients
    assert context.skipped_updates == 2
    assert all(torch.equal(v, plugin.modules.state_dict()[k]) for k, v in before.items())
    assert not plugin.optimizers["net"].state  # Adam never stepped

    plugin.update("net", plugin.predict(images).sum())
    assert context.skipped_updates == 2 and not torch.equal(weight, before["net.1.weight"])
