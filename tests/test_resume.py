"""--resume: 1 epoch + 1 resumed epoch equals 2 epochs in one go, bit for bit."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from tests.test_cli import assert_one_line_error, invoke
from zoo.core.runs import append_jsonl, read_jsonl

TIMING = {"seconds", "images_per_s"}
SETTINGS = {
    # constant LR: a cosine schedule is planned over the run's total, which the first,
    # 1-epoch call sets differently (see docs/guide.md, "Resuming a run")
    "cnn": {"train_size": 320, "test_size": 100, "batch_size": 32, "lr_schedule": "constant"},
    "gan": {"train_size": 192, "test_size": 50, "batch_size": 64},
}


def _history(path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(path)]


@pytest.mark.parametrize("name", ["cnn", "gan"])
def test_one_epoch_and_a_resumed_one_equal_two_in_one_go(name, tmp_path):
    common = {**SETTINGS[name], "seed": 11, "progress": False, "precision": "fp32"}
    whole = zoo.run(name, epochs=2, out=str(tmp_path / "whole"), **common)
    part = zoo.run(name, epochs=1, out=str(tmp_path / "part"), **common)
    resumed = zoo.run(name, epochs=2, resume=str(part.path), out=str(tmp_path / "x"), **common)
    assert resumed.path == part.path  # continued in place, no new folder
    assert not (tmp_path / "x").exists()
    expected = load_file(str(whole.path / "model.safetensors"))
    got = load_file(str(resumed.path / "model.safetensors"))
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key
    assert _history(whole.path / "metrics.jsonl") == _history(part.path / "metrics.jsonl")
    logged = read_jsonl(part.path / "losses.jsonl")  # plus a record at the first call's end
    assert all(record in logged for record in read_jsonl(whole.path / "losses.jsonl"))
    config = json.loads((part.path / "config.json").read_text())
    assert config["settings"]["epochs"] == 2


@pytest.fixture()
def dense_one_epoch(tmp_path):
    return zoo.run(
        "dense", epochs=1, train_size=256, test_size=64, seed=2, progress=False,
        out=str(tmp_path / "runs"),
    )  # fmt: skip


def test_resume_auto_takes_the_newest_run_and_cuts_logs_back(dense_one_epoch, tmp_path):
    run = dense_one_epoch
    # a crash after the checkpoint: a whole record it does not hold, then a torn line
    append_jsonl(run.path / "metrics.jsonl", {"epoch": 99, "step": 999})
    for log in ("metrics.jsonl", "losses.jsonl"):
        with (run.path / log).open("a") as file:
            file.write('{"epoch": 2, "step": 1')  # no closing brace, no newline
    out = str(tmp_path / "runs")
    result = invoke(
        "run", "dense", "--resume", "auto", "--epochs", "2", "--train-size", "256",
        "--test-size", "64", "--seed", "2", "--out", out, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["run"] == str(run.path.resolve())
    assert [r["epoch"] for r in read_jsonl(run.path / "metrics.jsonl")] == [1, 2]
    for log in ("metrics.jsonl", "losses.jsonl"):  # no fragment left, none glued to a record
        lines = (run.path / log).read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines], log


def test_resume_refuses_a_changed_config_unless_forced(dense_one_epoch):
    base = ["run", "dense", "--resume", str(dense_one_epoch.path), "--epochs", "2"]
    same = ["--train-size", "256", "--test-size", "64", "--seed", "2", "--no-progress"]
    changed = invoke(*base, *same, "--lr", "0.01")
    assert_one_line_error(changed, 2, "--lr", "resume refused", "--force")
    forced = invoke(*base, *same, "--lr", "0.01", "--force")
    assert forced.exit_code == 0, forced.output
    again = invoke(*base, *same)  # the run now records lr 0.01, and 2 epochs
    assert_one_line_error(again, 2, "trained 2 epochs already")


def test_resume_errors_are_one_line(dense_one_epoch, tmp_path):
    other = invoke("run", "cnn", "--resume", str(dense_one_epoch.path), "--epochs", "3")
    assert_one_line_error(other, 2, "run of 'dense', not 'cnn'")
    missing = invoke("run", "dense", "--resume", str(tmp_path / "nope"))
    assert_one_line_error(missing, 1, "does not exist")
    nothing = invoke("run", "dense", "--resume", "auto", "--out", str(tmp_path / "empty"))
    assert_one_line_error(nothing, 1, "no dense run with a checkpoint")
    # a state file without its own weights (written before they were kept in it) must
    # come from the same step as model.safetensors
    copy = tmp_path / "mixed"
    shutil.copytree(dense_one_epoch.path, copy)
    state = copy / "state.safetensors"
    header = json.loads(safe_open(str(state), "pt").metadata()["zoo"])
    tensors = {k: v for k, v in load_file(str(state)).items() if not k.startswith("model.")}
    save_file(tensors, str(state), {"zoo": json.dumps({**header, "epoch": 5, "step": 40})})
    mixed = invoke("run", "dense", "--resume", str(copy), "--epochs", "7", *DENSE_OPTIONS)
    assert_one_line_error(mixed, 1, "do not match")


DENSE_OPTIONS = ("--train-size", "256", "--test-size", "64", "--seed", "2", "--no-progress")


def test_the_state_file_alone_resumes_and_brings_the_model_file_back(dense_one_epoch, tmp_path):
    # a crash between the two writes of the first checkpoint leaves only the state file
    (dense_one_epoch.path / "model.safetensors").unlink()
    resumed = invoke("run", "dense", "--resume", str(dense_one_epoch.path), "--epochs", "2",
                     *DENSE_OPTIONS)  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    model = json.loads(
        safe_open(str(dense_one_epoch.path / "model.safetensors"), "pt").metadata()["zoo"]
    )
    assert model["epoch"] == 2
    state = load_file(str(dense_one_epoch.path / "state.safetensors"))
    weights = load_file(str(dense_one_epoch.path / "model.safetensors"))
    for key, value in weights.items():
        assert torch.equal(state[f"model.{key}"], value), key


def test_ctrl_c_saves_at_a_step_boundary_and_resuming_matches_an_uninterrupted_run(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    options = [
        "--epochs", "3", "--train-size", "4000", "--test-size", "100", "--seed", "4",
        "--precision", "fp32", "--no-progress",
    ]  # fmt: skip
    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "zoo", "run", "cnn", *options, "--out", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("cnn-*/losses.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the first loss record: training is under way
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    (run,) = out.iterdir()
    stopped_at = read_jsonl(run / "losses.jsonl")[-1]["step"]
    assert 25 <= stopped_at < 3 * 125  # stopped inside the run, not at its end

    resumed = invoke("run", "cnn", *options, "--resume", str(run))
    assert resumed.exit_code == 0, resumed.output
    whole = zoo.run(
        "cnn", epochs=3, train_size=4000, test_size=100, seed=4, precision="fp32",
        progress=False, out=str(tmp_path / "whole"),
    )  # fmt: skip
    expected = load_file(str(whole.path / "model.safetensors"))
    got = load_file(str(run / "model.safetensors"))
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key
    assert os.path.exists(run / "eval.json")


def test_resuming_brings_a_model_file_one_checkpoint_behind_up_to_the_state(
    dense_one_epoch, tmp_path
):
    """A crash between the state and the model writes leaves the model one epoch behind;
    restoring from the state rewrites it."""
    from zoo.core.contract import TrainPlan
    from zoo.engine import checkpoints
    from zoo.engine.trainer import hand_over, setup_modules

    behind = tmp_path / "behind.safetensors"
    shutil.copy(dense_one_epoch.path / "model.safetensors", behind)
    two = invoke("run", "dense", "--resume", str(dense_one_epoch.path), "--epochs", "2",
                 *DENSE_OPTIONS)  # fmt: skip
    assert two.exit_code == 0, two.output
    shutil.copy(behind, dense_one_epoch.path / "model.safetensors")  # epoch 1 again
    assert checkpoints.read_meta(dense_one_epoch.path)["epoch"] == 1
    dense = zoo.get_plugin("dense")
    plugin = dense(dense.Config())
    setup_modules(plugin, torch.device("cpu"))
    optimizers = hand_over(plugin, TrainPlan(1, 1, 1)).optimizers
    checkpoints.resume(dense_one_epoch.path, plugin.modules, optimizers, "dense")
    assert checkpoints.read_meta(dense_one_epoch.path)["epoch"] == 2
    state = load_file(str(dense_one_epoch.path / "state.safetensors"))
    for key, value in load_file(str(dense_one_epoch.path / "model.safetensors")).items():
        assert torch.equal(state[f"model.{key}"], value), key


def test_resume_compares_the_precision_a_run_trained_in(tmp_path, monkeypatch):
    """'auto' trained in bf16 on an AMX CPU; on a CPU without bf16 it would mean fp32."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    common = ["--train-size", "256", "--test-size", "64", "--seed", "2", "--no-progress",
              "--device", "cpu", "--out", str(tmp_path)]  # fmt: skip
    assert invoke("run", "dense", "--epochs", "1", *common).exit_code == 0
    (run,) = tmp_path.glob("dense-*")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    refused = invoke("run", "dense", "--resume", str(run), "--epochs", "2", *common)
    assert_one_line_error(refused, 2, "trained in bf16", "(fp32 here)", "resume refused")
    kept = invoke("run", "dense", "--resume", str(run), "--epochs", "2", "--precision", "bf16",
                  *common)  # fmt: skip
    assert kept.exit_code == 0, kept.output
    assert json.loads((run / "config.json").read_text())["resolved"]["precision"] == "bf16"
