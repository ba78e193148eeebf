"""SIGKILL at random moments, one of them inside a checkpoint write: the run folder
always holds a loadable checkpoint, and resuming ends with the weights and metrics of a
run that was never killed."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo
from tests.test_resume import _history
from zoo.engine import checkpoints

pytestmark = pytest.mark.slow

EPOCHS = 8
OPTIONS = {"train_size": 128, "test_size": 32, "batch_size": 64, "seed": 3, "precision": "fp32"}


def _command(out: Path, resume: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "zoo", "run", "gan", "--epochs", str(EPOCHS)]
    for key, value in OPTIONS.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    command += ["--out", str(out), "--no-progress"]
    return command + (["--resume", str(resume)] if resume else [])


def _wait_for(condition, timeout: float = 120.0, interval: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the training process")
        time.sleep(interval)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _assert_loadable(run: Path) -> int:
    """Both checkpoint files load into fresh networks; returns the state's epoch."""
    plugin = zoo.get_plugin("gan")(zoo.get_plugin("gan").Config())
    modules = torch.nn.ModuleDict(dict(plugin.build()))
    checkpoints.load_weights(run, modules, "gan")
    plugin.modules = modules
    optimizers = dict(plugin.configure_optimizers())
    _, header = checkpoints.resume(run, modules, optimizers, "gan")
    return int(header["epoch"])


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    out = tmp_path / "killed"
    chance = random.Random(20261126)
    # Each kill is followed by a resume. "state" and "model": inside that file's write
    # (of a later checkpoint than the first); a number: that many seconds after the
    # process wrote a new checkpoint (mid-training); "startup": while it imports.
    kills = ["state", "model", "startup"] + [chance.uniform(0.0, 1.0) for _ in range(3)]
    run: Path | None = None
    epochs_seen = []
    for moment in kills:
        process = subprocess.Popen(_command(out, run), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        if run is None:
            _wait_for(lambda: any(out.glob("gan-*/state.safetensors")))
            (run,) = out.iterdir()
        if moment in ("state", "model"):
            pattern = f".{moment}.safetensors.*.tmp"
            _wait_for(lambda folder=run, pattern=pattern: any(folder.glob(pattern)))
            _kill(process)
            assert any(run.glob(pattern)), "killed after the write finished; poll faster"
        elif moment == "startup":
            time.sleep(chance.uniform(0.1, 1.5))
            _kill(process)
        else:
            state = run / "state.safetensors"
            before = state.stat().st_mtime_ns
            _wait_for(lambda state=state, before=before: state.stat().st_mtime_ns != before)
            time.sleep(moment)
            if process.poll() is not None:
                break  # it finished before this moment: nothing left to kill
            _kill(process)
        epochs_seen.append(_assert_loadable(run))
    else:
        finished = subprocess.run(_command(out, run), capture_output=True, text=True)
        assert finished.returncode == 0, finished.stderr
    assert not list(run.glob(".*.tmp"))  # the resume cleared the interrupted writes

    whole = zoo.run("gan", epochs=EPOCHS, out=str(tmp_path / "whole"), progress=False,
                    **OPTIONS)  # fmt: skip
    expected = load_file(str(whole.path / "model.safetensors"))
    got = load_file(str(run / "model.safetensors"))
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert torch.equal(value, got[key]), key
    assert _history(whole.path / "metrics.jsonl") == _history(run / "metrics.jsonl")
    assert [r["epoch"] for r in _history(run / "metrics.jsonl")] == list(range(1, EPOCHS + 1))
    assert epochs_seen == sorted(epochs_seen) and epochs_seen[0] >= 1
