"""The generic trainer and evaluator on real Fashion-MNIST subsets."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.conftest import SMALL
from zoo import checkpoints
from zoo.data import CLASSES, to_float
from zoo.data import load as load_data


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
    accuracy = (logits.argmax(1) == test.labels).float().mean().item()
    assert accuracy == pytest.approx(dense_run.history[-1]["test_accuracy"], abs=1e-6)


def test_cnn_matches_the_paper_architecture():
    net = zoo.get_plugin("cnn")().build_network()
    assert sum(p.numel() for p in net.parameters()) == 269_322
    out = net(torch.zeros(2, 1, 28, 28))
    assert out.shape == (2, 10)
    dense = zoo.get_plugin("dense")().build_network()
    assert sum(p.numel() for p in dense.parameters()) == 784 * 128 + 128 + 128 * 10 + 10


def test_training_state_round_trips_through_state_safetensors(dense_run):
    """What resuming will need: optimizer moments and RNG states come back bit for bit."""
    plugin = zoo.load(dense_run.path).plugin
    restored = dict(plugin.configure_optimizers())
    rng, header = checkpoints.load_state(dense_run.path, restored)
    assert header["step"] == dense_run.history[-1]["step"]
    assert rng["torch"].dtype == torch.uint8 and "shuffle" in rng
    state = restored["net"].state_dict()["state"]
    assert len(state) == 4  # two weights, two biases
    assert all(float(s["step"]) == header["step"] for s in state.values())
    assert all(s["exp_avg_sq"].abs().sum() > 0 for s in state.values())
