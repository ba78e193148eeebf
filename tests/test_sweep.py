"""zoo sweep on Optuna: real studies in real SQLite storages, real trial runs, real
worker processes; the study read back with Optuna's own API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

import zoo
from tests.conftest import REPO, ZOO, run_cli
from zoo.core.runs import FAILED_FILE, read_jsonl

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.slow

TINY = ["--epochs", "2", "--train-size", "512", "--test-size", "200", "--no-progress",
        "--precision", "fp32", "--device", "cpu"]  # fmt: skip


def sweep_args(out, *extra: str, trials: int = 3) -> list[str]:
    return ["sweep", "dense", "--trials", str(trials), "--param", "lr=loguniform:1e-4:1e-2",
            "--param", "hidden=int:16:96", "--objective", "accuracy", "--direction", "maximize",
            "--out", str(out), *TINY, *extra]  # fmt: skip


def load_study(out, name: str = "dense-accuracy"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / name / 'study.db'}")


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_three_trial_sweep_records_each_trial_run_and_writes_its_report(tmp_path):
    result = run_cli(*sweep_args(tmp_path, "--report"))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    study = load_study(tmp_path)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    folders = {t.user_attrs["run"] for t in trials}
    assert len(folders) == 3
    for trial in trials:  # each trial is an ordinary zoo run, scored by its eval.json
        run = trial.user_attrs["run"]
        config = json.loads(Path(run, "config.json").read_text())
        assert config["config"]["lr"] == trial.params["lr"]
        assert config["config"]["hidden"] == trial.params["hidden"]
        assert json.loads(Path(run, "eval.json").read_text())["accuracy"] == trial.value
        history = read_jsonl(Path(run, "metrics.jsonl"))  # the test accuracy, not the training
        assert trial.intermediate_values == {r["epoch"]: r["test_accuracy"] for r in history}
    assert summary["best_value"] == max(t.value for t in trials) == study.best_value
    page = (tmp_path / "dense-accuracy" / "study.html").read_text()
    for heading in ("Best trial", "Optimisation history", "Parameter importances", "Leaderboard"):
        assert f">{heading}</h2>" in page
    assert "data:image/png;base64," in page and 'href="leaderboard.html"' in page
    assert "importance (fANOVA)" in page
    board = (tmp_path / "dense-accuracy" / "leaderboard.md").read_text()
    assert all(folder.rsplit("/", 1)[-1] in board for folder in folders)


def test_the_same_command_continues_the_study(tmp_path):
    first = run_cli(*sweep_args(tmp_path, trials=2))
    assert first.returncode == 0, first.stderr[-3000:]
    before = [(t.number, t.user_attrs["run"]) for t in load_study(tmp_path).get_trials()]
    again = run_cli(*sweep_args(tmp_path, trials=3))
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load_study(tmp_path).get_trials()
    assert [(t.number, t.user_attrs["run"]) for t in trials[:2]] == before
    assert len(trials) == 3 and "trial 2:" in again.stderr and "trial 0:" not in again.stderr
    done = run_cli(*sweep_args(tmp_path, trials=3))  # nothing left: no trial runs
    assert done.returncode == 0 and "training dense" not in done.stderr
    assert len(load_study(tmp_path).get_trials()) == 3


def test_two_workers_on_one_sqlite_storage_share_the_trials_without_running_one_twice(tmp_path):
    args = sweep_args(tmp_path, "--sampler", "random", trials=4)
    first = subprocess.Popen([*ZOO, *args], cwd=REPO, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the first creates the study; both then ask for trials
    second = subprocess.Popen([*ZOO, *args], cwd=REPO, stderr=subprocess.PIPE, text=True)
    logs = [worker.communicate(timeout=600)[1] for worker in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, logs
    trials = load_study(tmp_path).get_trials()
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]  # the median pruner
    assert len(done) == 4
    assert all(t.user_attrs.get("surplus") for t in trials if t not in done)
    ran = [line.split("trial ")[1].split()[0] for log in logs for line in log.splitlines()
           if " complete" in line or " pruned" in line]  # fmt: skip
    assert sorted(ran) == sorted(str(t.number) for t in done)  # each trial ran once
    assert len({t.user_attrs["run"] for t in done}) == 4
    assert all("training dense" in log for log in logs)  # both workers trained


def _three_good_then_one_bad(tmp_path, epochs: int) -> list[str]:
    from zoo.sweeps.spec import build_spec
    from zoo.sweeps.study import open_study, run_sweep

    fixed = {"epochs": epochs, "train_size": 512, "test_size": 200, "progress": False,
             "precision": "fp32", "device": "cpu", "out": str(tmp_path)}  # fmt: skip
    spec = build_spec("dense", trials=4, params=["lr=loguniform:1e-8:1e-2"],
                      objective="accuracy", direction="maximize", fixed=fixed)  # fmt: skip
    study = open_study(spec)
    for lr in (1e-2, 1e-2, 1e-2, 1e-8):  # three that learn, then one that cannot
        study.enqueue_trial({"lr": lr})
    run_sweep(spec, say=lambda line: None)
    return [t.state.name for t in load_study(tmp_path).get_trials()]


def test_a_trial_is_never_pruned_after_its_last_epoch(tmp_path):
    """Stopping then would save nothing and lose the trial's final evaluation."""
    assert _three_good_then_one_bad(tmp_path, epochs=1) == ["COMPLETE"] * 4


def test_a_trial_that_trails_the_median_is_pruned_and_its_run_kept_resumable(tmp_path):
    states = _three_good_then_one_bad(tmp_path, epochs=3)
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    pruned = load_study(tmp_path).get_trials()[3]
    assert list(pruned.intermediate_values) == [1]
    run = tmp_path / "dense-accuracy" / pruned.user_attrs["run"].rsplit("/", 1)[-1]
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1]
    assert (run / "state.safetensors").is_file() and not (run / FAILED_FILE).exists()


def test_ctrl_c_fails_the_running_trial_queues_it_again_and_a_rerun_resumes_its_run(tmp_path):
    args = sweep_args(tmp_path, trials=1)
    args[args.index("--train-size") + 1] = "20000"
    args[args.index("--epochs") + 1] = "3"
    worker = subprocess.Popen([*ZOO, *args], cwd=REPO, stderr=subprocess.PIPE, text=True)
    for line in worker.stderr:
        if line.startswith("epoch 1/3"):
            break
    worker.send_signal(signal.SIGINT)
    _, rest = worker.communicate(timeout=300)
    assert worker.returncode == 130, rest
    assert "queued again" in rest and "Traceback" not in rest
    trials = load_study(tmp_path).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].params == trials[0].params
    assert trials[1].user_attrs["run"] == trials[0].user_attrs["run"]
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming {trials[0].user_attrs['run']}" in again.stderr
    trials = load_study(tmp_path).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].user_attrs["run"] == trials[0].user_attrs["run"]  # the same folder
    folders = [p for p in (tmp_path / "dense-accuracy").iterdir() if p.is_dir()]
    assert folders == [Path(trials[0].user_attrs["run"])]  # no new run was started
    history = read_jsonl(Path(trials[1].user_attrs["run"], "metrics.jsonl"))
    assert [r["epoch"] for r in history] == [1, 2, 3]  # epoch 1 was not trained twice


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("lr", "expected NAME=KIND:LOW:HIGH"),
        ("lr=normal:0:1", "unknown kind 'normal'"),
        ("lr=uniform:1", "uniform needs LOW:HIGH"),
        ("lr=uniform:a:b", "uniform needs LOW:HIGH, two numbers"),
        ("lr=uniform:0.1:0.01", "needs LOW < HIGH"),
        ("lr=loguniform:0:0.1", "a log scale needs LOW > 0"),
        ("epochs=int:1.5:8", "int needs LOW:HIGH, two integers"),
        ("lr=choice:0.1", "two or more different values"),
        ("widht=int:8:64", "--widht"),  # not a hyperparameter of dense
        ("lr=uniform:-0.1:0.1", "--lr"),  # outside the plugin's own bounds
        ("out=choice:a,b", "the sweep sets it"),
    ],
)
def test_a_malformed_param_is_one_line_and_no_study_is_made(tmp_path, spec, says):
    args = sweep_args(tmp_path)
    args[args.index("lr=loguniform:1e-4:1e-2")] = spec
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert says in error_line(result)
    assert not (tmp_path / "dense-accuracy").exists()


def test_an_unknown_objective_is_one_line_naming_the_plugins_metrics(tmp_path):
    args = sweep_args(tmp_path)
    args[args.index("accuracy")] = "frechet_distance"
    line = error_line(run_cli(*args))
    assert "--objective frechet_distance: not a metric of plugin 'dense'" in line
    assert "accuracy" in line


@pytest.mark.parametrize(
    "storage",
    ["sqlite:////nonexistent-folder/study.db", "postgresql://zoo@127.0.0.1:9/zoo", "nosuch://x"],
)
def test_an_unreachable_storage_is_one_line(tmp_path, storage):
    result = run_cli(*sweep_args(tmp_path, "--storage", storage))
    assert result.returncode == 2
    assert f"--storage {storage}: cannot open the study storage" in error_line(result)


def test_a_study_started_with_another_space_is_refused(tmp_path):
    assert run_cli(*sweep_args(tmp_path, trials=1)).returncode == 0
    args = sweep_args(tmp_path, trials=2)
    args[args.index("hidden=int:16:96")] = "hidden=int:16:128"
    line = error_line(run_cli(*args))
    assert "was started with another" in line and "--study NEW" in line
    assert len(load_study(tmp_path).get_trials()) == 1


def test_a_sweep_without_optuna_is_one_line_naming_the_extra(tmp_path):
    code = "import sys; sys.modules['optuna'] = None; from zoo.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, *sweep_args(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'zoo[sweep]'" in error_line(result)


def test_the_python_api_runs_a_sweep_and_checks_its_options(tmp_path):
    with pytest.raises(zoo.ConfigError, match="--pruner hyperband: choose from median, none"):
        zoo.sweep("dense", trials=1, params=["lr=loguniform:1e-4:1e-2"], objective="accuracy",
                  direction="maximize", pruner="hyperband", out=str(tmp_path))  # fmt: skip
    study = zoo.sweep("dense", trials=1, params=["lr=loguniform:1e-4:1e-2"],
                      objective="accuracy", direction="maximize", study="api", epochs=1,
                      train_size=256, test_size=100, progress=False, out=str(tmp_path))  # fmt: skip
    (trial,) = study.get_trials()
    assert trial.state.name == "COMPLETE" and Path(trial.user_attrs["run"]).parent.name == "api"


def test_a_trial_asked_for_beyond_the_claimed_trials_is_failed_as_surplus(tmp_path):
    """Two workers that asked at the same moment: the later trial must not train."""
    from zoo.sweeps.spec import build_spec
    from zoo.sweeps.study import open_study
    from zoo.sweeps.trial import TrialRunner

    spec = build_spec("dense", trials=1, params=["lr=loguniform:1e-4:1e-2"],
                      objective="accuracy", direction="maximize",
                      fixed={"out": str(tmp_path), "train_size": 256})  # fmt: skip
    study = open_study(spec)
    study.ask()  # another worker's trial, running
    late = study.ask()
    with pytest.raises(zoo.RunError, match="surplus"):
        TrialRunner(spec, say=lambda line: None)(late)
    assert late.user_attrs["surplus"] is True
    assert not any(p.is_dir() for p in (tmp_path / "dense-accuracy").iterdir())


def test_trials_that_keep_failing_stop_the_sweep_with_one_line(registry, tmp_path):
    dense = zoo.get_plugin("dense")

    class Boom(dense):
        info = attrs.evolve(dense.info, name="boom", summary="dense whose steps raise")

        def train_step(self, batch):
            raise ValueError("boom")

    registry.register(Boom)
    with pytest.raises(zoo.RunError, match="3 trials in a row failed"):
        zoo.sweep("boom", trials=10, params=["lr=loguniform:1e-4:1e-2"], objective="accuracy",
                  direction="maximize", train_size=256, progress=False,
                  out=str(tmp_path))  # fmt: skip
    trials = optuna.load_study(study_name="boom-accuracy",
                               storage=f"sqlite:///{tmp_path / 'boom-accuracy' / 'study.db'}"
                               ).get_trials()  # fmt: skip
    assert [t.state.name for t in trials] == ["FAIL"] * 3
    assert all("ValueError: boom" in t.user_attrs["error"] for t in trials)
