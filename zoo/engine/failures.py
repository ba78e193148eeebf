"""What becomes of a run folder when its run fails, and the one line that says so.

A failure before anything worth keeping was written removes the folder (no orphan
holding only config.json); after that the folder stays, marked failed in
``failed.json`` (which ``zoo compare`` and ``--resume auto`` skip), and the message
says whether a checkpoint is intact and how to continue from it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

from zoo.core.errors import CheckpointError, Interrupted, PluginError, ZooError, one_line
from zoo.core.runs import FAILED_FILE, STATE_FILE, holds_only_config, write_json
from zoo.engine.progress import resume_command


def as_zoo_error(error: BaseException, plugin_name: str) -> ZooError:
    """Anything a run raised, as one line for a person; the original stays the cause.
    (The trainer names the plugin hook that raised; what reaches here unnamed came from
    a plugin's own ``execute`` or from zoo itself.)"""
    if isinstance(error, ZooError):
        return error
    if isinstance(error, KeyboardInterrupt):
        return Interrupted("interrupted by Ctrl-C")
    if isinstance(error, SystemExit):
        return PluginError(f"plugin '{plugin_name}' called sys.exit({error.code!r}) while running")
    return PluginError(
        f"running plugin '{plugin_name}' failed: {type(error).__name__}: {one_line(error)} (`zoo "
        "--debug ...` shows where)"
    )


def settle(
    path: Path, plugin_name: str, error: ZooError, *, touched: bool, epochs: int = 0
) -> ZooError:
    """Remove or mark the folder of a failed run; return ``error`` with its fate added.
    ``touched``: the call has written into the folder (a resume refused before that
    leaves it as it was); ``epochs``: what this call asked for (it may re-plan the run).
    A Ctrl-C with a checkpoint, and a failure after training finished, leave a usable
    run: it is not marked failed."""
    if not touched:
        return _with(error, f"{path} is unchanged")
    header = _checkpoint_header(path)
    if header is None and holds_only_config(path):
        shutil.rmtree(path, ignore_errors=True)
        return _with(error, f"nothing had been saved yet, so {path} was removed")
    if header is None:
        _mark_failed(path, str(error), None)
        return _with(error, f"no checkpoint had been written yet; {path} keeps its logs and "
                            "is marked failed")  # fmt: skip
    step, planned = header.get("step"), max(_planned_epochs(header) or 0, epochs)
    if isinstance(header.get("epoch"), int) and header["epoch"] >= planned > 0:
        return _with(error, f"training had finished: the checkpoint (step {step}) in {path} is "
                            f"complete, and `zoo eval {path}` computes its results")  # fmt: skip
    if not isinstance(error, Interrupted):
        _mark_failed(path, str(error), step)
    return _with(
        error,
        f"the last checkpoint (step {step}) in {path} is intact; continue with "
        f"`{resume_command(plugin_name, path, planned or None)}`",
    )


def _planned_epochs(header: dict) -> int | None:
    plan = header.get("plan")
    epochs = plan.get("epochs") if isinstance(plan, dict) else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def clear_failure(path: Path) -> None:
    """A run that has now succeeded is no longer failed."""
    with contextlib.suppress(OSError):
        (path / FAILED_FILE).unlink(missing_ok=True)


def _with(error: ZooError, fate: str) -> ZooError:
    error.args = (f"{error}; {fate}",)
    return error


def _checkpoint_header(path: Path) -> dict | None:
    from zoo.engine.checkpoints import read_meta

    if not (path / STATE_FILE).is_file():
        return None
    try:
        return dict(read_meta(path, STATE_FILE))
    except (CheckpointError, TypeError, ValueError):
        return None


def _mark_failed(path: Path, message: str, step: int | None) -> None:
    """Best effort: on a full disk the mark itself may not fit."""
    record = {"error": message, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checkpoint_step": step}
    with contextlib.suppress(ZooError, OSError):
        write_json(path / FAILED_FILE, record)
