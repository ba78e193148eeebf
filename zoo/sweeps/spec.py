"""What a sweep is: the plugin, its search space, the objective, the values every trial
shares, and where the study lives; checked before any trial trains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from zoo.core.errors import ConfigError
from zoo.sweeps.params import ParamSpec, parse_params

DIRECTIONS = ("minimize", "maximize")
PRUNERS = ("median", "none")
SAMPLERS = ("tpe", "random")
# what a trial may not take from the search space or the shared values: the sweep owns them
OWNED = frozenset({"resume", "force", "out"})
STUDY_FILE = "study.db"
SWEEP_OPTIONS = ("storage", "study", "pruner", "sampler", "sampler_seed", "epoch_samples")


@attrs.frozen
class SweepSpec:
    plugin: str
    trials: int
    params: tuple[ParamSpec, ...]
    objective: str
    direction: str
    fixed: Mapping[str, Any] = attrs.field(factory=dict)  # zoo run values of every trial
    out: str = "runs"
    storage: str | None = None
    study: str | None = None
    pruner: str = "median"
    sampler: str = "tpe"
    sampler_seed: int | None = None
    epoch_samples: int = 1000  # objectives not in metrics.jsonl, measured per epoch on these

    @property
    def study_name(self) -> str:
        return self.study or f"{self.plugin}-{self.objective}"

    @property
    def folder(self) -> Path:
        """The study's folder: its trials' run folders, the default SQLite file, the report."""
        return Path(self.out) / self.study_name

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.folder / STUDY_FILE).resolve()}"

    def space(self) -> dict[str, Any]:
        """What a study is started with; a later worker must ask for the same."""
        return {"plugin": self.plugin, "objective": self.objective,
                "params": [p.describe() for p in self.params],
                "fixed": {k: self.fixed[k] for k in sorted(self.fixed)}}  # fmt: skip


def build_spec(
    plugin: str,
    *,
    trials: int,
    params: Sequence[str],
    objective: str,
    direction: str,
    fixed: Mapping[str, Any],
    **options: Any,
) -> SweepSpec:
    """A checked SweepSpec: every parameter at both ends of its range, and the shared
    values, must make a valid run of ``plugin``; the objective must be one of its metrics."""
    from zoo import api
    from zoo.core.config import flag

    if trials < 1:
        raise ConfigError(f"--trials: must be >= 1 (got {trials})")
    asked = {"direction": direction, "pruner": options.get("pruner", "median"),
             "sampler": options.get("sampler", "tpe")}  # fmt: skip
    for key, allowed in (("direction", DIRECTIONS), ("pruner", PRUNERS), ("sampler", SAMPLERS)):
        if asked[key] not in allowed:
            raise ConfigError(f"--{key} {asked[key]}: choose from {', '.join(allowed)}")
    for owned in sorted(OWNED - {"out"}):
        if fixed.get(owned):
            raise ConfigError(f"{flag(owned)}: a sweep resumes its own trials; leave it out")
    specs = parse_params(params)
    kind = api.get_plugin(plugin)
    shared = {k: v for k, v in fixed.items() if k not in OWNED}
    for spec in specs:
        if spec.name in OWNED:
            raise ConfigError(f"--param {spec.name}: the sweep sets it; search something else")
        for value in spec.choices or (spec.low, spec.high):
            api.prepare(plugin, {**shared, spec.name: value}, label=flag)
    _check_objective(kind, objective)
    out = str(fixed.get("out", kind.defaults.get("out", "runs")))
    return SweepSpec(plugin, trials, specs, objective, direction, shared, out, **options)


def _check_objective(kind: type, objective: str) -> None:
    metrics = tuple(getattr(kind, "metrics", ()))
    if objective not in metrics:
        known = ", ".join(metrics) or "none"
        raise ConfigError(
            f"--objective {objective}: not a metric of plugin '{kind.info.name}' "
            f"(its metrics: {known})"
        )
