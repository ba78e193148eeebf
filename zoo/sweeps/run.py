"""``zoo.sweep``: the programmatic face of ``zoo sweep NAME``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zoo.sweeps.spec import SWEEP_OPTIONS, build_spec
from zoo.sweeps.study import run_sweep


def sweep(
    name: str,
    *,
    trials: int,
    params: Sequence[str],
    objective: str,
    direction: str,
    **options: Any,
) -> Any:
    """Tune ``name`` with Optuna, as ``zoo sweep`` does, e.g. ``zoo.sweep("cnn",
    trials=20, params=["lr=loguniform:1e-4:1e-2"], objective="accuracy",
    direction="maximize", epochs=2)``; returns the optuna Study. Sweep options
    (storage, study, pruner, sampler, sampler_seed, epoch_samples) go to the sweep, the
    other keywords are the zoo run values every trial shares."""
    sweep_options = {k: options.pop(k) for k in SWEEP_OPTIONS if k in options}
    spec = build_spec(name, trials=trials, params=params, objective=objective,
                      direction=direction, fixed=options, **sweep_options)  # fmt: skip
    return run_sweep(spec)
