"""What a person sees while a run trains: the epoch line, durations, and Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
import time
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


class BatchProgress:
    """Progress of a long pass over batches (an attack on 10,000 images): a tqdm bar on
    a terminal, else a line every tenth of the way (or every minute) with the rate and
    ETA, so a log of a run in the background shows it moving too."""

    def __init__(self, total: int, what: str, *, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.total, self.what, self.done = total, what, 0
        interactive = enabled and sys.stderr.isatty()
        self._bar = tqdm(total=total, unit="batch", disable=not interactive, file=sys.stderr)
        self._lines = enabled and not interactive
        self._started = self._last = time.perf_counter()
        self._every = max(1, total // 10)

    def update(self, n: int = 1) -> None:
        self.done += n
        self._bar.update(n)
        now = time.perf_counter()
        due = self.done % self._every == 0 or now - self._last >= 60 or self.done == self.total
        if self._lines and due:
            self._last = now
            rate = (now - self._started) / self.done
            eta = duration(rate * (self.total - self.done))
            print(f"zoo: {self.what}: {self.done}/{self.total} batches  {rate:.2f} s/batch  "
                  f"ETA {eta}", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
