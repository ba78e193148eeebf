"""The Optuna study behind a sweep, and the worker loop that runs its trials.

The study lives in an RDB storage, so any number of ``zoo sweep`` processes, on one
machine (SQLite) or many (PostgreSQL, MySQL), share it: each asks Optuna for the next
trial until the study holds ``--trials`` trials that are done or running.
Heartbeats mark a dead worker's trial failed and queue it again, and the retry resumes
that trial's run folder from its checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from zoo.core.errors import ConfigError, Interrupted, RunError, one_line
from zoo.sweeps.spec import SweepSpec
from zoo.sweeps.trial import quiet, retry

HEARTBEAT_S = 30  # a worker that stops beating for GRACE_S is taken for dead
GRACE_S = 120
POLL_S = 5  # how often a worker whose last trials run elsewhere looks again
SPACE_ATTR = "zoo"  # the study's user attribute holding what it was started with


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
    space = json.loads(json.dumps(spec.space(), default=str))  # as the storage keeps it
    started = study.user_attrs.get(SPACE_ATTR)
    if started is None:
        study.set_user_attr(SPACE_ATTR, space)
    elif started != space:
        raise ConfigError(
            f"study '{spec.study_name}' in {spec.storage_url} was started with another "
            f"plugin, objective, --param or shared option ({_difference(started, space)}); "
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


def counts(study: Any) -> dict[str, int]:
    """The study's trials by state, once a dead worker's trials are failed (and queued
    again by the heartbeat retry)."""
    import optuna

    with quiet():
        optuna.storages.fail_stale_trials(study)
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return states


def claimed(study: Any) -> int:
    """Trials done or running: what counts towards --trials (a queued one runs next)."""
    states = counts(study)
    return sum(states.get(name, 0) for name in ("COMPLETE", "PRUNED", "RUNNING"))


def run_sweep(spec: SweepSpec, say: Callable[[str], None] | None = None) -> Any:
    """Run trials of the study until it holds ``spec.trials`` done; returns the study.
    While the last trials run elsewhere, wait: a worker that died meanwhile leaves a
    trial that goes stale and is queued again, and this worker then resumes it. Ctrl-C
    fails the running trial and queues it again: the next worker resumes it."""
    say = say or (lambda line: print(line, file=sys.stderr))
    try:
        study = open_study(spec)
        say(f"zoo: sweep {spec.study_name}: {claimed(study)}/{spec.trials} trials in "
            f"{spec.storage_url}")  # fmt: skip
        _work(study, spec, say)
    except _storage_errors() as error:
        raise RunError(
            f"sweep {spec.study_name}: the study storage {spec.storage_url} failed "
            f"({one_line(error, 200)}); repeat the command once it is back"
        ) from None
    return study


def _storage_errors() -> tuple[type[BaseException], ...]:
    """What a database that fails mid-sweep raises (imported late: Optuna is an extra)."""
    import optuna
    import sqlalchemy.exc

    return (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def _work(study: Any, spec: SweepSpec, say: Callable[[str], None]) -> None:
    from zoo.sweeps.trial import TRIAL_FAILURES, TrialRunner

    runner = TrialRunner(spec, say)
    while True:
        states = counts(study)
        done = states.get("COMPLETE", 0) + states.get("PRUNED", 0)
        if done >= spec.trials:
            return
        if done + states.get("RUNNING", 0) >= spec.trials:  # the rest run elsewhere
            time.sleep(POLL_S)
            continue
        try:
            study.optimize(runner, n_trials=1, catch=TRIAL_FAILURES,
                           callbacks=[runner.summarize])  # fmt: skip
        except (KeyboardInterrupt, Interrupted) as error:
            raise Interrupted(_interrupted(spec, runner, study)) from error
        runner.check_failures()


def _interrupted(spec: SweepSpec, runner: Any, study: Any) -> str:
    number, queued = runner.number, runner.requeue(study)
    if number is None:
        return f"sweep {spec.study_name} interrupted between trials; repeat the command to go on"
    what = ("marked failed and queued again (its run resumes from its checkpoint)" if queued
            else "marked failed (it was retried too often to queue it again)")  # fmt: skip
    return (f"sweep {spec.study_name} interrupted in trial {number}; it is {what}: repeat "
            "the command to continue")  # fmt: skip
