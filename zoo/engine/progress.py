"""What a person sees while a run trains: the epoch line, durations, and Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any


def format_record(record: Mapping[str, Any]) -> str:
    """``step 314  0.2s  29234 img/s  loss 0.5642 ...`` for the epoch line."""
    parts = [
        f"step {record['step']}",
        f"{record['seconds']:.1f}s",
        f"{record['images_per_s']:.0f} img/s",
    ]
    timing = {"epoch", "step", "seconds", "images_per_s"}
    parts += [f"{k} {v:.4g}" for k, v in record.items() if k not in timing and isinstance(v, float)]
    return "  ".join(parts)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) into a flag the loop checks between steps; a
    second Ctrl-C interrupts at once. Only in the main thread of a single process."""

    def __init__(self, enabled: bool = True) -> None:
        self.requested = False
        self._previous = None
        if enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nzoo: stopping at the end of this step (Ctrl-C again to stop now)", file=sys.stderr)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def resume_command(plugin_name: str, path: Any, epochs: int | None = None) -> str:
    """The command that continues a run; the run's own settings are its defaults
    (``epochs``: where the recorded --epochs would stop short of the plan)."""
    import shlex

    more = f" --epochs {epochs}" if epochs is not None else ""
    return f"zoo run {plugin_name} --resume {shlex.quote(str(path))}{more}"
