"""Errors meant for people: each carries one line that says what is wrong and how to fix it.

The CLI prints ``str(error)`` without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


def one_line(text: object, limit: int = 300) -> str:
    """A message (often another library's) as one line of at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type where it has none), for the
    parenthesis of a one-line error."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


class ZooError(Exception):
    """Base class of every error the zoo reports to a user."""

    exit_code = 1


class UnknownPluginError(ZooError, KeyError):
    """No plugin of that name is registered."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginLoadError(ZooError):
    """A plugin module could not be imported or registered (strict mode only)."""


class PluginError(ZooError):
    """A plugin's own code raised while it ran; ``__cause__`` holds the exception, whose
    traceback ``--debug`` (or ZOO_DEBUG=1) prints."""


class ConfigError(ZooError, ValueError):
    """A hyperparameter or option has a bad name, type or value."""

    exit_code = 2


class DataError(ZooError):
    """Fashion-MNIST is missing or damaged."""


class CheckpointError(ZooError):
    """A checkpoint is missing, corrupt or belongs to something else."""


class RunError(ZooError):
    """A folder is not a zoo run, or a run cannot be used as asked."""


class StorageError(RunError):
    """A file could not be written: the disk is full, the folder is read-only..."""


class Interrupted(ZooError):
    """Ctrl-C during training: a checkpoint was saved and the run can be resumed."""

    exit_code = 130


@contextlib.contextmanager
def plugin_code(describe: Callable[[], str]) -> Iterator[None]:
    """An exception from a plugin's own code becomes one PluginError line: what
    ``describe()`` says (which plugin, which hook, where), then the error (its traceback
    stays the cause, for --debug). zoo's own errors pass through unchanged."""
    try:
        yield
    except ZooError:
        raise
    except Exception as error:
        raise PluginError(f"{describe()}: {type(error).__name__}: {one_line(error)}") from error
