"""One writer per run folder: an OS lock (flock) on the folder itself.

The lock lives in the kernel, not in a file: it needs no write into the run folder (a
refused resume changes nothing), and it dies with its process, so a SIGKILL leaves no
stale lock behind. Who holds it is read from ``/proc/locks`` (Linux) to name the
holder in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from zoo.core.errors import RunError


class RunInUseError(RunError):
    """Another process trains or evaluates into this run folder."""


class RunLock:
    """An exclusive, non-blocking lock on a run folder, held until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: int | None = None

    def acquire(self, purpose: str) -> RunLock:
        """Take the lock or raise RunInUseError naming the holder; ``purpose`` says what
        this process wanted to do ("resume", "evaluate")."""
        try:
            handle = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise RunError(f"cannot open run folder {self.path}: {error.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(handle)
            os.close(handle)
            raise RunInUseError(
                f"cannot {purpose} {self.path}: it is in use by {holder}; wait for that to "
                "finish (or stop it) and try again"
            ) from None
        except OSError as error:  # NFS, Lustre without flock: no lock to be had
            os.close(handle)
            reason = error.strerror or error
            print(f"zoo: warning: cannot lock {self.path} on this file system ({reason}); a "
                  "second writer would not be stopped", file=sys.stderr)  # fmt: skip
            return self
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                os.close(self._handle)  # closing the last descriptor drops the flock
            self._handle = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_holder(handle: int) -> str:
    """``process 4123 (zoo run dense --resume ...)``, or "another process" where the
    kernel does not say."""
    pid = _holder_pid(os.fstat(handle))
    if pid is None:
        return "another process"
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"process {pid}"
    words = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    if len(words) > 2 and words[1:3] == ["-m", "zoo"]:
        words = ["zoo", *words[3:]]  # python -m zoo ... reads as the command people type
    command = " ".join(" ".join(words).split())  # one line, whatever the arguments hold
    return f"process {pid} ({command[:120]})" if command else f"process {pid}"


def _holder_pid(stat: os.stat_result) -> int | None:
    """The pid of the FLOCK on this inode in /proc/locks (``1: FLOCK ADVISORY WRITE pid
    maj:min:inode start end``)."""
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None
