"""The Optuna study behind a sweep, and the worker loop that runs its trials.

The study lives in an RDB storage, so any number of ``zoo sweep`` processes, on one
machine (SQLite) or many (PostgreSQL, MySQL), share it: each asks Optuna for the next
trial until the study holds ``--trials`` trials that are done or running.
Heartbeats mark a dead worker's trial failed and queue it again, and the retry resumes
that trial's run folder from its checkpoint.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from zoo.core.errors import ConfigError, Interrupted, one_line
from zoo.sweeps.spec import SweepSpec

HEARTBEAT_S = 30  # a worker that stops beating for GRACE_S is taken for dead
GRACE_S = 120
SPACE_ATTR = "zoo"  # the study's user attribute holding what it was started with


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


def open_storage(url: str) -> Any:
    """Optuna's RDB storage with heartbeats; one line if it cannot be reached."""
    import optuna

    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite:"):
        engine = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
    try:
        with quiet():
            return optuna.storages.RDBStorage(url, engine_kwargs=engine,
                                              heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S,
                                              heartbeat_stale_trial_callback=retry())  # fmt: skip
    except Exception as error:  # SQLAlchemy's errors, a missing driver, a bad URL
        raise ConfigError(
            f"--storage {url}: cannot open the study storage ({one_line(error, 200)}); "
            "check the URL, that the database is up and its driver installed"
        ) from None


def open_study(spec: SweepSpec) -> Any:
    """The sweep's study, created on first use and continued after; a study started
    with another plugin, objective, direction or space is refused."""
    import optuna

    # zoo says each trial's outcome in one line; Optuna's own warnings carry tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if spec.storage is None:
        spec.folder.mkdir(parents=True, exist_ok=True)
    storage = open_storage(spec.storage_url)
    study = optuna.create_study(storage=storage, study_name=spec.study_name,
                                direction=spec.direction, sampler=_sampler(spec),
                                pruner=_pruner(spec), load_if_exists=True)  # fmt: skip
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(
            f"--direction {spec.direction}: study '{spec.study_name}' was started to "
            f"{study.direction.name.lower()}; use its direction or another --study"
        )
    started = study.user_attrs.get(SPACE_ATTR)
    if started is None:
        study.set_user_attr(SPACE_ATTR, spec.space())
    elif started != spec.space():
        raise ConfigError(
            f"study '{spec.study_name}' in {spec.storage_url} was started with another "
            f"plugin, objective, --param or shared option ({_difference(started, spec.space())}); "
            "repeat its command or pass --study NEW"
        )
    return study


def _difference(before: dict, now: dict) -> str:
    key = next((k for k in now if before.get(k) != now.get(k)), "params")
    return f"{key}: {before.get(key)!r} then, {now.get(key)!r} now"


def _sampler(spec: SweepSpec) -> Any:
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.sampler_seed)
    return optuna.samplers.TPESampler(seed=spec.sampler_seed)


def _pruner(spec: SweepSpec) -> Any:
    import optuna

    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)


def claimed(study: Any) -> int:
    """Trials done or running: what counts towards --trials (a queued one runs next)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=states))


def run_sweep(spec: SweepSpec, say: Callable[[str], None] | None = None) -> Any:
    """Run trials of the study until it holds ``spec.trials``; returns the study.
    Ctrl-C fails the running trial and queues it again: the next worker resumes it."""
    import optuna

    from zoo.sweeps.trial import TRIAL_FAILURES, TrialRunner

    say = say or (lambda line: print(line, file=sys.stderr))
    study = open_study(spec)
    runner = TrialRunner(spec, say)
    with quiet():
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial is queued again
    say(f"zoo: sweep {spec.study_name}: {claimed(study)}/{spec.trials} trials in "
        f"{spec.storage_url}")  # fmt: skip
    while claimed(study) < spec.trials:
        try:
            study.optimize(runner, n_trials=1, catch=TRIAL_FAILURES,
                           callbacks=[runner.summarize])  # fmt: skip
        except (KeyboardInterrupt, Interrupted) as error:
            runner.requeue(study)
            raise Interrupted(
                f"sweep {spec.study_name} interrupted in trial {runner.number}; it is marked "
                "failed and queued again (its run resumes from its checkpoint): repeat the "
                "command to continue"
            ) from error
    return study
