"""What the trackers share: the numbers a record holds, parameters as one flat table,
and a failure said once."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a record a tracker can chart (bools and text left out)."""
    return {
        key: float(value)
        for key, value in record.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def flat_params(start: Any) -> dict[str, Any]:
    """Hyperparameters and run settings as one flat table of plain values; the
    settings prefixed, so a plugin's ``lr`` and zoo's ``epochs`` cannot clash."""
    params = {key: _plain(value) for key, value in start.config.items()}
    params.update({f"run.{key}": _plain(value) for key, value in start.settings.items()})
    return params


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


class Warner:
    """A tracker's failure, said once: the run goes on without that tracker."""

    def __init__(self, tracker: str) -> None:
        self.tracker = tracker
        self.broken = False

    def fail(self, error: BaseException) -> None:
        from zoo.core.errors import one_line

        if not self.broken:
            print(
                f"zoo: warning: {self.tracker} logging failed ({type(error).__name__}: "
                f"{one_line(error, 200)}); training goes on, the run folder has everything",
                file=sys.stderr,
            )
        self.broken = True
