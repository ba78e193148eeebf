"""Run folders: one per run, holding its config, metrics, checkpoint and pictures.

Layout: ``config.json``, ``metrics.jsonl`` (one line per epoch), ``losses.jsonl``
(smoothed step losses), ``model.safetensors`` + ``state.safetensors``, ``samples/``,
``loss.png`` and the evaluator's outputs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from zoo.core.errors import RunError, StorageError, first_line

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOSSES_FILE = "losses.jsonl"
MODEL_FILE = "model.safetensors"  # the weights: what eval and sample load
STATE_FILE = "state.safetensors"  # everything resuming needs, the weights included
FAILED_FILE = "failed.json"  # why a run stopped with an error; removed once it succeeds


def new_run_dir(out: str | os.PathLike, plugin_name: str) -> Path:
    """``<out>/<plugin>-<YYYYmmdd-HHMMSS>``, with a counter if that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{plugin_name}-{stamp}"
    path, counter = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            counter += 1
            path = base.with_name(f"{base.name}-{counter}")
        except OSError as error:
            raise RunError(f"cannot create run folder {path}: {error.strerror}") from None


def storage_error(path: Path, error: OSError) -> StorageError:
    """One line for a failed write: what ran out or refused, and which file."""
    if error.errno == errno.ENOSPC or error.errno == errno.EDQUOT:
        return StorageError(f"no space left on the device while writing {path}; free some space")
    if error.errno == errno.EFBIG:
        return StorageError(f"{path} grew past the file-size limit (ulimit -f) while writing")
    return StorageError(f"cannot write {path}: {error.strerror or error}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``;
    a failure leaves the old file as it was and raises a StorageError."""
    try:
        _write_atomic(path, data)
    except OSError as error:
        raise storage_error(path, error) from None


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with contextlib.suppress(OSError):  # mkstemp makes it private; keep the usual mode
            os.chmod(temp, 0o666 & ~_UMASK)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)  # the rename itself survives a power cut


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: setting it later would race other threads


def _fsync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some file systems do not open folders; the rename is still atomic
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files of checkpoint writes a crash interrupted."""
    stale = [path for path in folder.glob(".*.safetensors.*.tmp") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    try:
        with path.open("a") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise storage_error(path, error) from None


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a JSON-lines log with only the records ``keep`` accepts (atomically). A
    record ``keep`` cannot judge (a field of the wrong type) is dropped like a torn line."""
    if not path.is_file():
        return
    kept = [record for record in read_jsonl(path) if _keeps(keep, record)]
    write_atomic(path, "".join(json.dumps(record) + "\n" for record in kept).encode())


def _keeps(keep: Callable[[dict[str, Any]], bool], record: dict[str, Any]) -> bool:
    try:
        return bool(keep(record))
    except (TypeError, ValueError):  # e.g. {"epoch": "abc"} <= 3
        return False


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file. A line that is not a JSON object in UTF-8 (a torn last
    line after a crash, or garbage) is skipped: the records around it still count. A
    link to a file outside the run folder is refused (a report would inline it)."""
    if not path.is_file():
        return []
    refuse_outside_link(path)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as error:
        raise RunError(f"cannot read {path}: {error.strerror or error}") from None
    return [record for line in lines if (record := _json_object(line)) is not None]


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        value = load_json(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


MAX_JSON_DEPTH = 100  # zoo writes 4 levels; far deeper would overflow the stack of readers


def load_json(text: str) -> Any:
    """``json.loads``, with nesting past MAX_JSON_DEPTH a ValueError, not a RecursionError
    (here or in whatever walks the value later: tables, str())."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    pending, depth = [(value, 1)], 0
    while pending:
        item, level = pending.pop()
        depth = max(depth, level)
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            pending.extend((child, level + 1) for child in item)
    return value


def refuse_outside_link(path: Path) -> None:
    """A RunError if ``path`` is a link whose target lies outside its own folder (the run
    folder): zoo reads and shows only a run's own files, never a planted link's target."""
    if not is_outside_link(path):
        return
    raise RunError(
        f"{path} is a link to a file outside the run folder; zoo reads only the run's own "
        "files (replace the link with a copy of the file)"
    )


def is_outside_link(path: Path, folder: Path | None = None) -> bool:
    """Whether reading ``path`` would leave ``folder`` (default: its parent) through a
    symbolic link, itself or a folder on the way."""
    folder = path.parent if folder is None else folder
    try:
        return not path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # a link loop: nothing inside to read
        return True


def holds_only_config(path: Path) -> bool:
    """A run folder that never got going: nothing in it but its config.json."""
    try:
        return {child.name for child in path.iterdir()} <= {CONFIG_FILE}
    except OSError:
        return False


@attrs.frozen
class RunRecord:
    """What ``config.json`` says about a run folder."""

    path: Path
    plugin: str
    plugin_version: str
    config: dict[str, Any]
    settings: dict[str, Any]
    resolved: dict[str, Any] = attrs.field(factory=dict)  # what 'auto' became: precision...

    @property
    def history(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / METRICS_FILE)


def read_run(path: str | os.PathLike) -> RunRecord:
    """Open a run folder; anything that is not one is a RunError saying why."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"run folder {path} does not exist")
    if not path.is_dir():
        raise RunError(f"{path} is not a run folder (it is a file)")
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise RunError(f"{path} is not a zoo run: it has no {CONFIG_FILE}")
    refuse_outside_link(config_file)
    try:
        data = load_json(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError: not UTF-8, not JSON, too deep
        raise RunError(
            f"{config_file} is damaged ({first_line(error)}); this folder is not a usable zoo run"
        ) from None
    parts = _record_parts(data)
    if parts is None:
        raise RunError(f"{config_file} is damaged; this folder is not a usable zoo run")
    return RunRecord(path, *parts)


def _record_parts(data: Any) -> tuple | None:
    """(plugin, version, config, settings, resolved) of config.json, or None where any
    of them has the wrong type."""
    if not isinstance(data, dict):
        return None
    plugin, version = data.get("plugin"), data.get("plugin_version", "")
    tables = [data.get("config"), data.get("settings"), data.get("resolved", {})]
    if not isinstance(plugin, str) or not all(isinstance(t, dict) for t in tables):
        return None
    return (plugin, str(version), *tables)


@attrs.define
class RunContext:
    """Everything a plugin's ``execute`` gets: the run folder, its settings and data."""

    path: Path
    plugin_name: str
    settings: Any  # zoo.core.settings.RunSettings
    _data: Any = None
    # called by the trainer with the step it starts from, once a resume is validated and
    # before it writes anything into the folder (the core records the call in config.json)
    before_first_write: Callable[[int], None] | None = None
    # who watches the run from outside (trackers, a sweep's pruner): zoo.core.observers
    observers: Any = None

    @property
    def data(self):
        """Fashion-MNIST, loaded on first use and cut to ``train_size``/``test_size``."""
        if self._data is None:
            from zoo.core import data

            full = data.load(self.settings.data_dir)
            self._data = attrs.evolve(
                full,
                train=full.train.head(self.settings.train_size),
                test=full.test.head(self.settings.test_size),
            )
        return self._data
