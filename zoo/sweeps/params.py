"""Search spaces from the command line: ``--param lr=loguniform:1e-5:1e-2``.

Kinds: ``uniform:LOW:HIGH``, ``loguniform:LOW:HIGH``, ``int:LOW:HIGH`` (both ends
included), ``intlog:LOW:HIGH``, ``choice:A,B,C``. Each parses into a ParamSpec that
suggests its value through Optuna's trial API, so the study records a typed space.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

from zoo.core.errors import ConfigError

KINDS = ("uniform", "loguniform", "int", "intlog", "choice")
FORMAT = "NAME=KIND:LOW:HIGH or NAME=choice:A,B,C (KIND: uniform, loguniform, int, intlog)"


@attrs.frozen
class ParamSpec:
    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[str, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This parameter's value for an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind in ("int", "intlog"):
            return trial.suggest_int(self.name, self.low, self.high, log=self.kind == "intlog")
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "loguniform")

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name}=choice:{','.join(self.choices)}"
        return f"{self.name}={self.kind}:{self.low}:{self.high}"


def parse_param(text: str) -> ParamSpec:
    """One ``--param`` spec; a malformed one is one line saying what is wrong."""
    name, equals, rest = text.partition("=")
    name = name.strip().replace("-", "_")
    kind, _, bounds = rest.partition(":")
    kind = kind.strip()
    if not equals or not name.isidentifier() or not bounds:
        raise ConfigError(f"--param {text!r}: expected {FORMAT}")
    if kind not in KINDS:
        known = ", ".join(KINDS)
        raise ConfigError(f"--param {text!r}: unknown kind {kind!r} (choose from {known})")
    if kind == "choice":
        choices = tuple(part.strip() for part in bounds.split(",") if part.strip())
        if len(choices) < 2 or len(set(choices)) != len(choices):
            raise ConfigError(f"--param {text!r}: choice needs two or more different values")
        return ParamSpec(name, kind, choices=choices)
    low, high = _bounds(text, kind, bounds)
    return ParamSpec(name, kind, low, high)


def _bounds(text: str, kind: str, bounds: str) -> tuple[Any, Any]:
    parts = bounds.split(":")
    number = int if kind in ("int", "intlog") else float
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = number(parts[0]), number(parts[1])
    except ValueError:
        what = "integers" if number is int else "numbers"
        raise ConfigError(f"--param {text!r}: {kind} needs LOW:HIGH, two {what}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ConfigError(f"--param {text!r}: needs LOW < HIGH, both finite")
    if kind in ("loguniform", "intlog") and low <= 0:
        raise ConfigError(f"--param {text!r}: a log scale needs LOW > 0")
    return low, high


def parse_params(texts: Iterable[str]) -> tuple[ParamSpec, ...]:
    specs = tuple(parse_param(text) for text in texts)
    if not specs:
        raise ConfigError(f"zoo sweep needs at least one --param {FORMAT}")
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"--param {twice[0]}: given twice; give each parameter once")
    return specs
