"""The generic trainer and evaluator on real Fashion-MNIST subsets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.conftest import SMALL
from zoo.core.data import CLASSES, to_float
from zoo.core.data import load as load_data
from zoo.core.runs import RunContext, new_run_dir, write_json
from zoo.engine import checkpoints
from zoo.engine.trainer import Trainer


def _without_timing(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in history]


def test_run_folder_has_the_documented_layout(dense_run):
    names = {p.name for p in dense_run.path.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "losses.jsonl",
        "model.safetensors",
        "state.safetensors",
        "loss.png",
    } <= names
    config = json.loads((dense_run.path / "config.json").read_text())
    assert config["plugin"] == "dense"
    assert config["config"]["hidden"] == 128
    assert config["settings"]["batch_size"] == 32  # the paper's default for dense
    history = dense_run.history
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["step"] == 2 * 63  # ceil(2000 / 32) steps per epoch
    for record in history:
        assert 0.0 <= record["test_accuracy"] <= 1.0 and record["loss"] > 0


def test_checkpoint_is_safetensors_with_json_metadata(dense_run):
    meta = checkpoints.read_meta(dense_run.path)
    assert meta["plugin"] == "dense" and meta["epoch"] == 2 and meta["seed"] == 3
    weights = load_file(str(dense_run.path / "model.safetensors"))
    assert weights["net.1.weight"].shape == (128, 784)
    state = load_file(str(dense_run.path / "state.safetensors"))
    assert "rng.torch" in state and any(k.startswith("optim.net.") for k in state)


def test_training_learns(dense_run):
    history = dense_run.history
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["test_accuracy"] > 0.6  # 10 classes: chance is 0.1


def test_same_seed_same_metrics_and_weights(tmp_path):
    runs = [
        zoo.run("cnn", max_steps=12, seed=7, out=str(tmp_path / str(i)), **SMALL) for i in range(2)
    ]
    assert _without_timing(runs[0].history) == _without_timing(runs[1].history)
    first, second = (load_file(str(r.path / "model.safetensors")) for r in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = zoo.run("cnn", max_steps=12, seed=8, out=str(tmp_path / "other"), **SMALL)
    assert _without_timing(other.history) != _without_timing(runs[0].history)


def test_max_steps_stops_mid_epoch(tmp_path):
    result = zoo.run("dense", epochs=5, max_steps=10, out=str(tmp_path), **SMALL)
    assert [r["step"] for r in result.history] == [10]


def test_eval_reproduces_trainer_accuracy_exactly(dense_run):
    results = zoo.evaluate(dense_run.path)
    assert results["accuracy"] == dense_run.history[-1]["test_accuracy"]
    assert results["test_images"] == SMALL["test_size"]
    matrix = torch.tensor(results["confusion_matrix"])
    assert matrix.sum() == SMALL["test_size"]
    assert matrix.trace() / matrix.sum() == pytest.approx(results["accuracy"])
    per_class = results["per_class_accuracy"]
    assert list(per_class) == list(CLASSES)
    assert (dense_run.path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((dense_run.path / "eval.json").read_text())["accuracy"] == results["accuracy"]


def test_loaded_model_predicts_like_the_evaluator(dense_run):
    loaded = zoo.load(dense_run.path)
    assert isinstance(loaded.model, torch.nn.ModuleDict)
    test = load_data().test.head(SMALL["test_size"])
    with torch.no_grad():
        logits = loaded.predict(to_float(test.images, loaded.plugin.pixel_range))
    accuracy = int((logits.argmax(1) == test.labels).sum()) / len(test)
    assert accuracy == dense_run.history[-1]["test_accuracy"]


def test_a_run_trained_in_bf16_is_evaluated_in_fp32_everywhere(tmp_path, monkeypatch):
    """As a CPU with AMX takes it: 'auto' trains in bf16, config.json says so, and the
    trainer's per-epoch and final numbers, zoo eval and load().predict agree exactly."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    options = {"max_steps": 8, "train_size": 256, "test_size": 300, "seed": 2, "progress": False,
               "device": "cpu"}  # fmt: skip
    bf16 = zoo.run("dense", out=str(tmp_path / "auto"), **options)
    config = json.loads((bf16.path / "config.json").read_text())
    assert config["settings"]["precision"] == "auto" and config["resolved"]["precision"] == "bf16"
    fp32 = zoo.run("dense", precision="fp32", out=str(tmp_path / "fp32"), **options)
    first, second = (load_file(str(r.path / "model.safetensors")) for r in (bf16, fp32))
    assert not all(torch.equal(first[k], second[k]) for k in first)  # bf16 really trained

    recorded = bf16.history[-1]["test_accuracy"]
    assert json.loads((bf16.path / "eval.json").read_text())["accuracy"] == recorded
    assert zoo.evaluate(bf16.path)["accuracy"] == recorded
    loaded, test = zoo.load(bf16.path), load_data().test.head(300)
    images = to_float(test.images, loaded.plugin.pixel_range)
    with torch.no_grad():
        logits = loaded.predict(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits_bf16 = loaded.predict(images).float()
    assert int((logits.argmax(1) == test.labels).sum()) / len(test) == recorded
    assert not torch.equal(logits, logits_bf16)  # so fp32 everywhere is what makes them agree


def test_a_channels_last_cnn_predicts_after_loading_as_it_did_in_training(tmp_path):
    """The cnn trains and is evaluated channels-last; zoo.load lays it out the same way,
    so its predictions reproduce the trainer's accuracy exactly."""
    run = zoo.run("cnn", max_steps=6, train_size=256, test_size=400, seed=1, progress=False,
                  device="cpu", out=str(tmp_path))  # fmt: skip
    loaded = zoo.load(run.path)
    conv = loaded.model["net"][1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    test = load_data().test.head(400)
    with torch.no_grad():
        logits = loaded.predict(to_float(test.images, loaded.plugin.pixel_range))
    recorded = run.history[-1]["test_accuracy"]
    assert int((logits.argmax(1) == test.labels).sum()) / 400 == recorded
    assert zoo.evaluate(run.path)["accuracy"] == recorded


def test_cnn_matches_the_paper_architecture():
    net = zoo.get_plugin("cnn")().build_network()
    assert sum(p.numel() for p in net.parameters()) == 269_322
    out = net(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10)
    dense = zoo.get_plugin("dense")().build_network()
    assert sum(p.numel() for p in dense.parameters()) == 784 * 128 + 128 + 128 * 10 + 10


def test_madry_cnn_is_the_challenge_network_and_learns_in_its_unit_pixel_range(tmp_path):
    net = zoo.get_plugin("madry_cnn")().build_network()
    convs = 32 * 25 + 32 + 64 * 32 * 25 + 64
    assert sum(p.numel() for p in net.parameters()) == convs + 3136 * 1024 + 1024 + 10250
    result = zoo.run("madry_cnn", epochs=1, seed=0, out=str(tmp_path), precision="fp32", **SMALL)
    evaluated = json.loads((result.path / "eval.json").read_text())["accuracy"]
    assert evaluated > 0.6  # ten classes: chance is 0.1
    # it learned on images in [0, 1]: only that scale gives the evaluator's accuracy back
    model, test = zoo.load(result.path).plugin, load_data().test.head(500)
    for pixel_range, same in (((0.0, 1.0), True), ((-1.0, 1.0), False)):
        with torch.no_grad():
            predicted = model.predict(to_float(test.images, pixel_range)).argmax(dim=1)
        accuracy = float((predicted == test.labels).float().mean())
        assert (accuracy == pytest.approx(evaluated, abs=1e-6)) is same


def test_training_state_round_trips_through_state_safetensors(tmp_path):
    """What resuming needs: the trainer's optimizer state in memory at the last checkpoint
    comes back from state.safetensors bit for bit, every tensor and every setting."""
    prepared = zoo.api.prepare("dense", {"epochs": 2, "seed": 3, "out": str(tmp_path), **SMALL})
    run = new_run_dir(tmp_path, "dense")
    write_json(run / "config.json", prepared.to_dict())
    trained = prepared.plugin(prepared.config)
    Trainer(trained, RunContext(run, "dense", prepared.settings)).fit()  # checkpoints at the end

    fresh = zoo.load(run).plugin
    restored = dict(fresh.configure_optimizers())
    rng, header = checkpoints.load_state(run, restored)
    assert header["step"] == 2 * 63 and rng["torch"].dtype == torch.uint8 and "shuffle" in rng
    before, after = trained.optimizers["net"].state_dict(), restored["net"].state_dict()
    assert before["param_groups"] == after["param_groups"]  # lr (cosine-decayed), betas, eps
    assert before["state"].keys() == after["state"].keys() and len(after["state"]) == 4
    for index, moments in before["state"].items():
        assert moments.keys() == after["state"][index].keys()
        for name, value in moments.items():
            assert torch.equal(value, after["state"][index][name]), (index, name)
