"""Run folders: one per run, holding its config, metrics, checkpoint and pictures.

Layout: ``config.json``, ``metrics.jsonl`` (one line per epoch), ``losses.jsonl``
(smoothed step losses), ``model.safetensors`` + ``state.safetensors``, ``samples/``,
``loss.png`` and the evaluator's outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from zoo.errors import RunError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOSSES_FILE = "losses.jsonl"
MODEL_FILE = "model.safetensors"  # the weights: what eval and sample load
STATE_FILE = "state.safetensors"  # everything resuming needs, the weights included


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


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
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
    with path.open("a") as file:
        file.write(json.dumps(record) + "\n")
        file.flush()
        os.fsync(file.fileno())


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite a JSON-lines log with only the records ``keep`` accepts (atomically)."""
    if not path.is_file():
        return
    kept = [record for record in read_jsonl(path) if keep(record)]
    write_atomic(path, "".join(json.dumps(record) + "\n" for record in kept).encode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a torn last line (crash mid-write) is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


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
    try:
        data = json.loads(config_file.read_text())
        return RunRecord(
            path=path,
            plugin=str(data["plugin"]),
            plugin_version=str(data.get("plugin_version", "")),
            config=dict(data["config"]),
            settings=dict(data["settings"]),
            resolved=dict(data.get("resolved", {})),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise RunError(f"{config_file} is damaged; this folder is not a usable zoo run") from None


@attrs.define
class RunContext:
    """Everything a plugin's ``execute`` gets: the run folder, its settings and data."""

    path: Path
    plugin_name: str
    settings: Any  # zoo.settings.RunSettings
    _data: Any = None

    @property
    def data(self):
        """Fashion-MNIST, loaded on first use and cut to ``train_size``/``test_size``."""
        if self._data is None:
            from zoo import data

            full = data.load(self.settings.data_dir)
            self._data = attrs.evolve(
                full,
                train=full.train.head(self.settings.train_size),
                test=full.test.head(self.settings.test_size),
            )
        return self._data
