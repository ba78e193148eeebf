"""One sweep trial: an ordinary zoo run in the study's folder, watched by an observer
that feeds each epoch's objective to Optuna's pruner.

The trial records its run folder (user attribute ``run``) as soon as the folder
exists, so a trial queued again after Ctrl-C or a dead worker resumes that folder
instead of starting over.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from zoo.core.errors import ConfigError, PluginError, RunError
from zoo.core.observers import RunObserver, RunStart, StopRun
from zoo.sweeps.spec import SweepSpec

RUN_ATTR = "run"
# a trial's own failure: the sweep goes on with the next (bad settings stop it)
TRIAL_FAILURES = (RunError, PluginError)
MAX_FAILURES_IN_A_ROW = 3


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Heartbeats and their retry are Optuna's experimental API: it works, say it once
    here rather than on every call."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def retry() -> Any:
    """Queue a failed trial again (a dead worker's, or Ctrl-C'd), with its run folder
    (a user attribute) and the epochs it reported, so it resumes."""
    import optuna

    with quiet():
        return optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3, inherit_intermediate_values=True
        )


class TrialRunner:
    """The objective Optuna calls, one trial at a time."""

    def __init__(self, spec: SweepSpec, say: Callable[[str], None]) -> None:
        self.spec, self.say = spec, say
        self.number: int | None = None  # the trial running now
        self.failures = 0  # trials in a row that failed on their own

    def __call__(self, trial: Any) -> float:
        self.number = trial.number
        try:
            value = self._run(trial)
        except TRIAL_FAILURES:
            self.failures += not trial.user_attrs.get("surplus")
            raise
        self.failures = 0
        return value

    def _run(self, trial: Any) -> float:
        import optuna

        values = {spec.name: spec.suggest(trial) for spec in self.spec.params}
        self._refuse_surplus(trial)
        folder = self._resumable(trial.user_attrs.get(RUN_ATTR))
        shown = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        self.say(f"zoo: sweep {self.spec.study_name}: trial {trial.number}: {shown}"
                 + (f" (resuming {folder})" if folder else ""))  # fmt: skip
        watcher = PruningWatcher(trial, self.spec)
        run_values = {**self.spec.fixed, **values, "out": str(self.spec.folder)}
        if folder is not None:
            run_values["resume"] = str(folder)
        if "mlflow" in run_values.get("log", ()):  # the trials side by side in one experiment
            run_values.setdefault("mlflow_experiment", self.spec.study_name)
        from zoo import api

        try:
            result = api.execute(api.prepare(self.spec.plugin, run_values), observers=[watcher])
        except StopRun as stop:
            raise optuna.TrialPruned(str(stop)) from None
        except TRIAL_FAILURES as error:  # the sweep goes on; the study keeps why
            trial.set_user_attr("error", str(error))
            raise
        return final_value(result.path, self.spec.objective, watcher.last)

    def _refuse_surplus(self, trial: Any) -> None:
        """Two workers that asked at the same moment may make one trial too many."""
        from optuna.trial import TrialState

        live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        earlier = trial.study.get_trials(deepcopy=False, states=live)
        if sum(t.number < trial.number for t in earlier) >= self.spec.trials:
            why = f"surplus: {self.spec.trials} trials were claimed by other workers already"
            trial.set_user_attr("surplus", True)
            trial.set_user_attr("error", why)
            raise RunError(why)

    def _resumable(self, recorded: Any) -> Path | None:
        """A queued-again trial's run folder, if it can be resumed."""
        if not recorded:
            return None
        from zoo.core.runs import FAILED_FILE, STATE_FILE

        folder = Path(recorded)
        if (folder / STATE_FILE).is_file() and not (folder / FAILED_FILE).exists():
            return folder
        self.say(f"zoo: sweep: {folder} has no usable checkpoint; the trial starts anew")
        return None

    def summarize(self, study: Any, trial: Any) -> None:
        """One line per finished trial, with the best so far."""
        state = trial.state.name.lower()
        value = f" {self.spec.objective} {trial.value:.4g}" if trial.value is not None else ""
        if trial.state.name == "PRUNED" and trial.intermediate_values:  # its last epoch's value
            value = f" after epoch {trial.last_step} ({value.strip()})"
        best = ""
        if any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
            best = f"; best {study.best_value:.4g} (trial {study.best_trial.number})"
        self.number = None
        why = f": {trial.user_attrs['error']}" if trial.user_attrs.get("error") else ""
        self.say(f"zoo: sweep {self.spec.study_name}: trial {trial.number} {state}{why}"
                 f"{value}{best}")  # fmt: skip

    def check_failures(self) -> None:
        """Trials that keep failing on their own stop the sweep, not run forever."""
        if self.failures >= MAX_FAILURES_IN_A_ROW:
            raise RunError(
                f"sweep {self.spec.study_name}: {self.failures} trials in a row failed (see "
                "above); fix the cause, then repeat the command to continue the study"
            )

    def requeue(self, study: Any) -> bool:
        """The interrupted trial (marked failed by Optuna) queued again, with its run
        folder and the values it reported, so the next worker resumes it; False if it
        was not (retried too often already)."""
        if self.number is None:
            return False
        trials = study.get_trials(deepcopy=False)
        failed = [t for t in trials if t.number == self.number]
        if not (failed and failed[0].state.name == "FAIL"):
            return False
        retry()(study, failed[0])
        after = study.get_trials(deepcopy=False)
        return any(t.state.name == "WAITING" and t.number > self.number for t in after)


class PruningWatcher(RunObserver):
    """Reports each epoch's objective to the trial; a pruned trial stops its run."""

    def __init__(self, trial: Any, spec: SweepSpec) -> None:
        self.trial, self.spec = trial, spec
        self.last: float | None = None
        self.reported: set[int] = set()  # epochs a queued-again trial inherited

    def run_started(self, start: RunStart) -> None:
        self.trial.set_user_attr(RUN_ATTR, str(start.path.resolve()))
        for frozen in self.trial.study.get_trials(deepcopy=False):
            if frozen.number == self.trial.number:
                self.reported = set(frozen.intermediate_values)

    def epoch_ended(self, epoch: Any, record: Mapping[str, Any]) -> None:
        value = epoch_value(epoch, record, self.spec.objective, self.spec.epoch_samples)
        if value is None or not math.isfinite(value):
            return
        self.last = value
        if epoch.epoch in self.reported:
            return  # reported before the trial was queued again
        self.trial.report(value, epoch.epoch)
        last = epoch.epoch >= epoch.run.settings.epochs  # stopping now would save nothing
        if not last and self.trial.should_prune():
            raise StopRun(
                f"trial {self.trial.number} pruned after epoch {epoch.epoch} "
                f"({self.spec.objective} {value:.4g})"
            )


def epoch_value(epoch: Any, record: Mapping[str, Any], objective: str, samples: int):
    """The objective on the test split after an epoch: from the epoch's record
    (``test_accuracy``) when the plugin measures it there, else measured now on
    ``samples`` test images (0: not). The record's own ``accuracy`` is the training
    batches': never the objective."""
    value = record.get(f"test_{objective}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if samples <= 0:
        return None
    import torch

    from zoo.engine.evaluator import evaluate

    run = epoch.run
    evidence = epoch.plugin.evidence(run.data.test.head(samples), device=epoch.device,
                                     batch_size=run.settings.eval_batch_size,
                                     train=run.data.train)  # fmt: skip
    with torch.no_grad():
        value = evaluate(evidence, [objective]).get(objective)
    return float(value) if isinstance(value, (int, float)) else None


def final_value(path: Path, objective: str, last_epoch: float | None) -> float:
    """The trial's value: the final evaluation's (eval.json), else the last epoch's."""
    try:
        results = json.loads((path / "eval.json").read_text())
    except (OSError, ValueError):
        results = {}
    value = results.get(objective, last_epoch) if isinstance(results, dict) else last_epoch
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(
            f"--objective {objective}: {path} recorded no number for it ({value!r}); "
            "choose a metric with one value"
        )
    if not math.isfinite(value):
        raise RunError(f"trial run {path}: {objective} is {value}; the trial failed")
    return float(value)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
