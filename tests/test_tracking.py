"""--log tensorboard,mlflow: the logs read back with the tools' own readers, on real
local stores (TensorBoard's event reader, MlflowClient on an SQLite store)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import zoo
from tests.conftest import run_cli
from zoo import api
from zoo.core.observers import RunObserver, StopRun
from zoo.core.runs import FAILED_FILE, read_jsonl

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow
TINY = {"test_size": 200, "progress": False, "precision": "fp32", "device": "cpu"}


def events(folder) -> EventAccumulator:
    reader = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    reader.Reload()
    return reader


def only_run(store, experiment: str):
    client = MlflowClient(f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment} in {store}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def test_tensorboard_holds_losses_epoch_metrics_grids_and_hyperparameters(tmp_path):
    result = zoo.run("gan", epochs=2, train_size=1600, batch_size=64, out=str(tmp_path / "runs"),
                     log=["tensorboard"], **TINY)  # fmt: skip
    reader = events(result.path / "tensorboard")
    losses = read_jsonl(result.path / "losses.jsonl")
    for key in ("d_loss", "g_loss"):
        logged = [(e.step, e.value) for e in reader.Scalars(f"train/{key}")]
        assert [s for s, _ in logged] == [line["step"] for line in losses] == [25, 50]
        assert [v for _, v in logged] == pytest.approx([line[key] for line in losses], rel=1e-6)
    epochs = read_jsonl(result.path / "metrics.jsonl")
    assert [e.step for e in reader.Scalars("epoch/g_loss")] == [r["step"] for r in epochs]
    assert [e.value for e in reader.Scalars("epoch/epoch")] == [1.0, 2.0]
    grids = reader.Images("samples")
    assert [g.step for g in grids] == [25, 50] and all(g.width > 28 for g in grids)
    final = reader.Scalars("final/frechet_distance")
    assert final[0].value == pytest.approx(evaluation(result.path)["frechet_distance"], rel=1e-6)
    assert reader.PluginTagToContent("hparams"), "add_hparams wrote no HPARAMS data"


def evaluation(path) -> dict:
    return json.loads((path / "eval.json").read_text())


def test_mlflow_records_params_metrics_tags_and_artifacts_in_a_store_beside_the_runs(tmp_path):
    result = zoo.run("dense", epochs=2, train_size=1000, out=str(tmp_path / "runs"),
                     log=["mlflow"], lr=0.002, **TINY)  # fmt: skip
    store = tmp_path / "mlflow.db"  # the default: an SQLite file beside --out
    client, run = only_run(store, "dense")
    assert run.info.run_name == result.path.name and run.info.status == "FINISHED"
    assert run.data.tags["zoo.plugin"] == "dense" and run.data.tags["zoo.task"] == "classify"
    assert run.data.tags["zoo.version"] == zoo.__version__
    assert run.data.params["lr"] == "0.002" and run.data.params["run.epochs"] == "2"
    epochs = read_jsonl(result.path / "metrics.jsonl")
    history = client.get_metric_history(run.info.run_id, "test_accuracy")
    assert [(m.step, m.value) for m in history] == [
        (r["epoch"], r["test_accuracy"]) for r in epochs
    ]
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == [
        line["step"] for line in read_jsonl(result.path / "losses.jsonl")
    ]
    assert run.data.metrics["eval/accuracy"] == evaluation(result.path)["accuracy"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "model.safetensors", "eval.json", "confusion_matrix.png"} <= artifacts
    local = client.download_artifacts(run.info.run_id, "model.safetensors", str(tmp_path))
    assert Path(local).read_bytes() == (result.path / "model.safetensors").read_bytes()


def test_a_resume_continues_the_same_tensorboard_folder_and_mlflow_run_without_repeating_steps(
    tmp_path,
):
    """A process killed after it logged epoch 2 but before its checkpoint: the resume
    trains epoch 2 again, and each tool shows every step once."""
    out = tmp_path / "runs"
    common = {"train_size": 1000, "out": str(out), "log": ["tensorboard", "mlflow"], **TINY}
    first = zoo.run("dense", epochs=1, **common)
    saved = tmp_path / "epoch1"
    saved.mkdir()
    for name in ("state.safetensors", "model.safetensors"):
        shutil.copy(first.path / name, saved / name)
    zoo.run("dense", epochs=2, resume=str(first.path), **common)
    for name in ("state.safetensors", "model.safetensors"):  # back to before epoch 2's checkpoint
        shutil.copy(saved / name, first.path / name)
    zoo.run("dense", epochs=2, resume=str(first.path), **common)
    steps = [line["step"] for line in read_jsonl(first.path / "losses.jsonl")]
    assert steps == [25, 32, 50, 64]  # every 25 steps and at each epoch's end (32 steps)
    reader = events(first.path / "tensorboard")
    assert [e.step for e in reader.Scalars("train/loss")] == steps
    assert [e.value for e in reader.Scalars("epoch/epoch")] == [1.0, 2.0]
    client, run = only_run(tmp_path / "mlflow.db", "dense")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == steps
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy")] == [1, 2]
    assert run.data.tags["zoo.resumed_at_step"] == "32" and run.info.status == "FINISHED"
    # the evaluation of the resumed run, not the first one's
    assert run.data.metrics["eval/accuracy"] == evaluation(first.path)["accuracy"]
    final = client.get_metric_history(run.info.run_id, "eval/accuracy")
    assert [m.step for m in final] == [32, 64]


class StopAfterFirstEpoch(RunObserver):
    def epoch_ended(self, epoch, record) -> None:
        raise StopRun("stopped by the test's observer")


def test_an_observer_that_stops_the_run_leaves_it_resumable_and_the_mlflow_run_killed(tmp_path):
    prepared = api.prepare("dense", {"epochs": 3, "train_size": 500, "out": str(tmp_path / "runs"),
                                     "log": ["mlflow"], **TINY})  # fmt: skip
    with pytest.raises(StopRun, match="stopped by the test's observer"):
        api.execute(prepared, observers=[StopAfterFirstEpoch()])
    (path,) = (tmp_path / "runs").iterdir()
    assert (path / "state.safetensors").is_file() and not (path / FAILED_FILE).exists()
    assert [r["epoch"] for r in read_jsonl(path / "metrics.jsonl")] == [1]
    _, run = only_run(tmp_path / "mlflow.db", "dense")
    assert run.info.status == "KILLED"
    done = zoo.run("dense", epochs=3, resume=str(path), **{**TINY, "out": str(tmp_path / "runs"),
                                                            "log": ["mlflow"]})  # fmt: skip
    assert done.metrics["epoch"] == 3
    _, run = only_run(tmp_path / "mlflow.db", "dense")
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
def test_a_tracker_whose_extra_is_missing_is_one_line_naming_the_extra(tracker, tmp_path):
    code = (f"import sys; sys.modules[{tracker!r}] = None; from zoo.cli import main; "
            "sys.argv[0] = 'zoo'; main()")  # fmt: skip
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", code, "run", "dense", "--log", tracker, "--train-size", "100",
         "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"zoo: error: --log {tracker}: {tracker} is not installed; "
                     f"pip install 'zoo[{tracker}]'"]  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_tracking_server_is_one_line_before_any_run_folder(tmp_path):
    result = run_cli("run", "dense", "--log", "mlflow", "--mlflow-uri", "http://127.0.0.1:9",
                     "--train-size", "100", "--out", str(tmp_path / "runs"))  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot use the tracking store http://127.0.0.1:9" in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_a_tensorboard_folder_that_cannot_be_made_warns_and_the_run_trains_on(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("in the way")
    result = run_cli("run", "dense", "--log", "tensorboard", "--log-dir", str(blocker / "tb"),
                     "--train-size", "200", "--test-size", "100", "--no-progress",
                     "--out", str(tmp_path / "runs"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "TensorBoard logging failed" in line]
    assert len(warnings) == 1 and "training goes on" in warnings[0]
    assert blocker.read_text() == "in the way"
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "model.safetensors").is_file()


def test_log_names_only_known_trackers(tmp_path):
    result = run_cli("run", "dense", "--log", "wandb", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--log" in result.stderr and "tensorboard" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
