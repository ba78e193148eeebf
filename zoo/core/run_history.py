"""config.json over a run's life: what the run is now, and what each call changed.

The top level (plugin, config, settings, resolved) is what the run's weights are
trained with now, which ``zoo.load`` rebuilds. ``history`` keeps every call: the one
that started the run, and for each resume the step it continued from and each value
it changed (``from``/``to``), so the original settings are never lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.core import __version__
from zoo.core.runs import CONFIG_FILE, write_json

NOT_HISTORY = frozenset({"resume", "force"})  # how a call was made, not what it changed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_start(path: Path, recorded: Mapping[str, Any]) -> None:
    """config.json of a new run."""
    history = [{"call": "start", "at": _now(), "zoo_version": __version__}]
    write_json(path / CONFIG_FILE, {**recorded, "history": history})


def write_resume(path: Path, recorded: Mapping[str, Any], step: int, forced: bool) -> None:
    """config.json after a validated resume: the new values on top, the change below."""
    before = _read_raw(path)
    history = before.get("history")
    if not isinstance(history, list):  # a run from before zoo kept a history
        history = [{"call": "start", "at": None}]
    changed = changes(before, recorded)
    entry = {"call": "resume", "at": _now(), "step": step, "zoo_version": __version__,
             "changed": changed, **({"forced": True} if forced else {})}  # fmt: skip
    write_json(path / CONFIG_FILE, {**recorded, "history": [*history, entry]})


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict]:
    """``{name: {"from": old, "to": new}}`` over hyperparameters, settings and what
    ``auto`` resolved to."""
    found: dict[str, dict] = {}
    for section in ("config", "settings", "resolved"):
        old, new = before.get(section) or {}, after.get(section) or {}
        if not isinstance(old, Mapping):
            old = {}
        for key in sorted(set(old) | set(new)):
            if key in NOT_HISTORY or old.get(key) == new.get(key):
                continue
            label = f"resolved.{key}" if section == "resolved" else key
            found[label] = {"from": old.get(key), "to": new.get(key)}
    return found


def _read_raw(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
