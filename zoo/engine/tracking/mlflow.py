"""MLflow: parameters, per-step and per-epoch metrics, tags and artifacts of a zoo run,
through MlflowClient (no global "active run", so several trackers and sweep trials in
one process cannot cross).

The MLflow run's id is kept in RUN/mlflow.json, so a resume continues the same MLflow
run; a metric is never logged twice at one step (a killed process's steps past its
checkpoint are already there, and an exact resume repeats them).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from zoo.core import __version__
from zoo.core.errors import ConfigError, one_line
from zoo.core.observers import RunObserver, RunStart
from zoo.core.runs import write_json
from zoo.engine.tracking.common import Warner, flat_params, scalars

RUN_FILE = "mlflow.json"  # which MLflow run this run folder logs to
STATUS = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
ARTIFACTS = ("report.html", "config.json", "eval.json", "model.safetensors", "animation.gif")
MAX_PARAM = 6000  # MLflow's limit on a parameter's value


def tracking_uri(settings: Any) -> str:
    """--mlflow-uri, else MLFLOW_TRACKING_URI, else an SQLite store beside --out."""
    if settings.mlflow_uri:
        return settings.mlflow_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{_beside_out(settings) / 'mlflow.db'}"


def _beside_out(settings: Any) -> Path:
    return Path(settings.out).resolve().parent


@contextlib.contextmanager
def _quick_failure() -> Iterator[None]:
    """A tracking server that is down fails the first request in seconds, not after
    MLflow's two minutes of retries (a user's own settings win)."""
    given = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                                              "MLFLOW_HTTP_REQUEST_TIMEOUT")}  # fmt: skip
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        yield
    finally:
        for key, value in given.items():
            if value is None:
                os.environ.pop(key, None)


class MlflowTracker(RunObserver):
    def __init__(self, client: Any, uri: str, experiment_id: str) -> None:
        self.client, self.uri, self.experiment_id = client, uri, experiment_id
        self.run_id: str | None = None
        self.logged: dict[str, int] = {}  # metric -> the last step it has, on resume
        self.step = 0  # the last global step seen: the final evaluation's step
        self.warner = Warner("MLflow")

    @classmethod
    def connect(cls, settings: Any, plugin_name: str) -> MlflowTracker:
        """Reach the store and find (or make) the experiment: one line if it cannot."""
        import logging

        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # a new store's set-up is not news to the user
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = tracking_uri(settings)
        name = settings.mlflow_experiment or plugin_name
        experiment = None
        try:
            with _quick_failure():
                client = MlflowClient(tracking_uri=uri)
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    return cls(client, uri, _create_experiment(client, uri, name, settings))
        except Exception as error:  # MlflowException, OSError, SQLAlchemy's errors...
            raise ConfigError(
                f"--log mlflow: cannot use the tracking store {uri} ({one_line(error, 200)}); "
                "check --mlflow-uri / MLFLOW_TRACKING_URI, or that the server is up"
            ) from None
        if experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"--log mlflow: experiment '{name}' is deleted in {uri}; restore it "
                "(mlflow experiments restore) or pass --mlflow-experiment NEW"
            )
        return cls(client, uri, experiment.experiment_id)

    def run_started(self, start: RunStart) -> None:
        self._guarded(self._open_run, start)

    def losses_logged(self, step: int, losses: Mapping[str, float]) -> None:
        self.step = step
        self._guarded(self._metrics, {f"train/{k}": v for k, v in losses.items()}, step)

    def epoch_ended(self, epoch: Any, record: Mapping[str, Any]) -> None:
        self.step = int(record.get("step", self.step))
        values = {k: v for k, v in scalars(record).items() if k not in ("epoch", "step")}
        self._guarded(self._metrics, values, epoch.epoch)
        from zoo.reports.plots import epoch_picture

        picture = epoch_picture(epoch.run.path, epoch.epoch)
        if picture.is_file():
            self._guarded(self.client.log_artifact, self.run_id, str(picture), "epochs")

    def run_finished(self, path: Path, results: Mapping[str, Any]) -> None:
        # at the last step: a run resumed for more epochs logs its new evaluation too
        final = {f"eval/{k}": v for k, v in scalars(results).items()}
        self._guarded(self._metrics, final, self.step)
        files = [path / name for name in ARTIFACTS] + sorted(path.glob("*.png"))
        for file in files:
            if file.is_file():
                self._guarded(self.client.log_artifact, self.run_id, str(file))

    def run_closed(self, status: str) -> None:
        self._guarded(self.client.set_terminated, self.run_id, STATUS.get(status, "FAILED"))

    def _open_run(self, start: RunStart) -> None:
        """The run folder's MLflow run, continued on resume; else a new one named
        after the folder, with its parameters and tags."""
        previous = self._previous_run(start.path) if start.step else None
        if previous is not None:
            self.run_id = previous
            self.client.update_run(previous, status="RUNNING")
            self.logged = self._last_steps(previous)
            self.step = start.step
            self.client.set_tag(previous, "zoo.resumed_at_step", str(start.step))
            return
        tags = {
            "zoo.plugin": start.plugin,
            "zoo.task": start.task,
            "zoo.version": __version__,
            "zoo.plugin_version": start.plugin_version,
            "zoo.run_path": str(start.path),
        }
        run = self.client.create_run(self.experiment_id, run_name=start.path.name, tags=tags)
        self.run_id = run.info.run_id
        write_json(start.path / RUN_FILE, {"run_id": self.run_id, "tracking_uri": self.uri})
        from mlflow.entities import Param

        params = [Param(k, str(v)[:MAX_PARAM]) for k, v in flat_params(start).items()]
        for first in range(0, len(params), 100):  # MLflow takes 100 per batch
            self.client.log_batch(self.run_id, params=params[first : first + 100])

    def _previous_run(self, path: Path) -> str | None:
        import json

        try:
            recorded = json.loads((path / RUN_FILE).read_text())
            run_id = str(recorded["run_id"])
            if recorded.get("tracking_uri") != self.uri:
                return None
            run = self.client.get_run(run_id)
        except Exception:  # no file, a damaged one, a run deleted from the store
            return None
        return run_id if run.info.lifecycle_stage == "active" else None

    def _last_steps(self, run_id: str) -> dict[str, int]:
        keys = self.client.get_run(run_id).data.metrics
        return {k: max(m.step for m in self.client.get_metric_history(run_id, k)) for k in keys}

    def _metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [Metric(k, v, now, step) for k, v in values.items()
                 if step > self.logged.get(k, -1)]  # fmt: skip
        if fresh:
            self.client.log_batch(self.run_id, metrics=fresh)

    def _guarded(self, call: Any, *args: Any) -> None:
        if self.warner.broken or (self.run_id is None and call != self._open_run):
            return
        try:
            with _quick_failure():
                call(*args)
        except Exception as error:  # the server went down, the disk filled: warn, go on
            self.warner.fail(error)


def _create_experiment(client: Any, uri: str, name: str, settings: Any) -> str:
    """A new experiment; in a local store its artifacts go beside --out too, not into
    ./mlruns of whatever folder zoo was started in."""
    location = None
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).resolve().parent
        location = (folder / "mlartifacts" / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another worker made it a moment ago
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
