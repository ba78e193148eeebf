"""torchrun with 2 CPU processes: DistributedDataParallel replicas, one run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from zoo.core.runs import read_jsonl


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "zoo", "run", *args,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


@pytest.mark.parametrize("name", ["dense", "gan", "began"])
def test_two_processes_end_with_identical_weights_and_one_run_folder(name, tmp_path):
    out = tmp_path / "runs"
    result = torchrun(
        name, "--epochs", "2", "--train-size", "640", "--test-size", "100",
        "--batch-size", "64", "--device", "cpu", "--no-progress", "--out", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list(out.iterdir())
    assert len(runs) == 1, runs  # rank 1 wrote no folder of its own
    run = runs[0]
    report = json.loads((run / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["backend"] == "gloo"
    digests = report["weights_sha256_by_rank"]
    assert len(digests) == 2 and digests[0] == digests[1] and report["replicas_identical"]
    history = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in history] == [1, 2]  # written once, not once per rank
    assert [r["step"] for r in history] == [5, 10]  # 640 images / 2 ranks / batch 64
    summaries = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["run"] == str(run)
    assert (run / "model.safetensors").is_file()


def test_a_plugin_that_trains_nothing_is_refused_under_torchrun(tmp_path):
    result = torchrun("fgsm", "--target", str(tmp_path), cwd=tmp_path)
    assert result.returncode != 0
    assert "run it without torchrun" in result.stderr


def test_skipping_non_finite_updates_is_refused_under_torchrun(tmp_path):
    result = torchrun("dense", "--on-nonfinite", "skip", "--max-steps", "2", "--train-size",
                      "256", "--out", str(tmp_path), cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0
    assert "--on-nonfinite skip works in one process only" in result.stderr
    assert not list(tmp_path.rglob("*.safetensors"))


WHO_SEES_WHAT = """
import zoo


class Probe(zoo.ClassifierPlugin):
    info = zoo.PluginInfo(name="probe", task="classify", summary="which modules hooks see")

    def build_network(self):
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def _wrapped(self):
        return float(type(self.modules["net"]).__name__ == "DistributedDataParallel")

    def train_step(self, batch):
        import torch

        losses = dict(super().train_step(batch))
        return {**losses, "step_sees_ddp": torch.tensor(self._wrapped())}

    def end_of_epoch(self, epoch):
        return {"hook_sees_ddp": self._wrapped(), **super().end_of_epoch(epoch)}


@zoo.hookimpl
def register_plugins(register):
    register(Probe)
"""


def test_steps_see_the_replicas_and_hooks_the_plugins_own_networks(tmp_path, monkeypatch):
    """Under torchrun, train_step trains the DDP replicas (gradients averaged) while the
    epoch hooks, run on rank 0 only, get the plain networks (no collective hangs there)."""
    (tmp_path / "probe_plugin.py").write_text(WHO_SEES_WHAT)
    (tmp_path / "registry.toml").write_text('[[plugins]]\nmodule = "probe_plugin"\n')
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "registry.toml"))
    result = torchrun("probe", "--epochs", "2", "--train-size", "256", "--test-size", "64",
                      "--batch-size", "32", "--device", "cpu", "--no-progress", "--out",
                      str(tmp_path / "runs"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step_sees_ddp"] for r in records] == [1.0, 1.0]
    assert [r["hook_sees_ddp"] for r in records] == [0.0, 0.0]


def test_only_rank_0_logs_to_the_trackers(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs"
    options = tmp_path / "trackers.toml"  # torchrun's parser takes --log for its --log-dir
    options.write_text('log = ["tensorboard", "mlflow"]\n')
    result = torchrun(
        "dense", "--epochs", "2", "--train-size", "1600", "--test-size", "100",
        "--device", "cpu", "--no-progress", "--out", str(out), "--config", str(options),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = out.iterdir()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("dense")
    (logged,) = client.search_runs([experiment.experiment_id])  # one MLflow run, not two
    steps = [line["step"] for line in read_jsonl(run / "losses.jsonl")]
    history = client.get_metric_history(logged.info.run_id, "train/loss")
    assert [m.step for m in history] == steps  # each window once
    reader = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    reader.Reload()
    assert [e.step for e in reader.Scalars("train/loss")] == steps
    writers = {p.name.rsplit(".", 2)[1] for p in (run / "tensorboard").glob("events.out.*")}
    assert len(writers) == 1  # one process (pid) wrote the event files
