"""Checkpoints in safetensors + JSON metadata only: nothing is ever unpickled.

``model.safetensors`` holds the weights of every module (``<module>.<param>``): what
``zoo eval`` and ``zoo sample`` load. ``state.safetensors`` holds everything resuming
needs on its own: the same weights (``model.`` prefix), optimizer tensors and RNG states,
with the non-tensor optimizer state as JSON metadata. Each file is written atomically,
state first, so a crash at any moment leaves a complete model file and a complete,
self-consistent state file (at worst the state is one checkpoint newer than the model).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from zoo.errors import CheckpointError
from zoo.runs import MODEL_FILE, STATE_FILE, write_atomic

FORMAT = "zoo-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_PREFIX = "model."  # weights inside the state file


def save(
    run_dir: Path,
    modules: torch.nn.ModuleDict,
    optimizers: Mapping[str, torch.optim.Optimizer],
    rng: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
) -> None:
    """Write the training state (weights included), then the weights; each atomically."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    weights = {k: v.detach().cpu().contiguous() for k, v in modules.state_dict().items()}

    tensors: dict[str, torch.Tensor] = {f"rng.{k}": v.cpu() for k, v in rng.items()}
    tensors.update({f"{WEIGHTS_PREFIX}{k}": v for k, v in weights.items()})
    optimizer_meta = {}
    for name, optimizer in optimizers.items():
        state = optimizer.state_dict()
        plain: dict[str, dict[str, Any]] = {}
        for param_id, values in state["state"].items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{name}.{param_id}.{key}"] = value.detach().cpu().contiguous()
                else:
                    plain.setdefault(str(param_id), {})[key] = value
        optimizer_meta[name] = {"param_groups": state["param_groups"], "plain": plain}
    state_header = {**header, "optimizers": optimizer_meta}
    write_atomic(run_dir / STATE_FILE, save_bytes(tensors, {"zoo": json.dumps(state_header)}))
    _write_model(run_dir, weights, header)


def _write_model(run_dir: Path, weights: Mapping[str, torch.Tensor], header: Mapping) -> None:
    write_atomic(run_dir / MODEL_FILE, save_bytes(dict(weights), {"zoo": json.dumps(header)}))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: this run has no checkpoint (did training start?)"
        )
    try:
        blob = path.read_bytes()
        tensors = load_bytes(blob)
        header = _header(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({error}); re-train the run"
        ) from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a zoo checkpoint")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer zoo (format {header['format_version']}); upgrade zoo"
        )
    return tensors, header


def _header(raw: bytes) -> dict[str, Any]:
    """The ``zoo`` metadata in a safetensors header (the JSON after its 8-byte length)."""
    header = json.loads(raw)
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("zoo"), str):
        return {}
    zoo_header = json.loads(metadata["zoo"])
    if not isinstance(zoo_header, dict):
        raise ValueError("its zoo metadata is not a JSON object")
    return zoo_header


def read_meta(run_dir: Path, file: str = MODEL_FILE) -> dict[str, Any]:
    """The zoo header of a checkpoint file, without reading its tensors."""
    path = run_dir / file
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError(f"header size {size}")
            return _header(handle.read(size))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: this run has no checkpoint") from None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated ({error})") from None


def load_weights(run_dir: Path, modules: torch.nn.ModuleDict, plugin_name: str) -> dict[str, Any]:
    """Load weights into ``modules`` after checking the checkpoint is this plugin's. A
    crash inside the very first checkpoint can leave only the state file: its copy of
    the weights is used then."""
    path = run_dir / MODEL_FILE
    if not path.is_file() and (run_dir / STATE_FILE).is_file():
        path = run_dir / STATE_FILE
        tensors, header = _read(path)
        tensors = _weights_in_state(tensors)
    else:
        tensors, header = _read(path)
    _fit(path, tensors, header, modules, plugin_name)
    return header


def _weights_in_state(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(WEIGHTS_PREFIX) :]: v for k, v in tensors.items() if k.startswith(WEIGHTS_PREFIX)}


def _fit(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    header: Mapping[str, Any],
    modules: torch.nn.ModuleDict,
    plugin_name: str,
) -> None:
    """Load ``tensors`` into ``modules`` once plugin, names and shapes are checked."""
    if header.get("plugin") != plugin_name:
        raise CheckpointError(
            f"{path} belongs to plugin '{header.get('plugin')}', not '{plugin_name}'"
        )
    expected = modules.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{path} does not fit this plugin's networks ({what})")
    for key, value in sorted(tensors.items()):
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: tensor {key} has shape {tuple(value.shape)}, the network expects "
                f"{tuple(expected[key].shape)}"
            )
    modules.load_state_dict(dict(tensors))


def resume(
    run_dir: Path,
    modules: torch.nn.ModuleDict,
    optimizers: Mapping[str, torch.optim.Optimizer],
    plugin_name: str,
    *,
    publish: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore weights, optimizers and RNG from the state file alone; return the RNG
    tensors and its header (epoch, step). ``publish``: also bring model.safetensors up to
    the state's step (one process of several leaves that to rank 0). A state file from
    before weights were kept in it is used with model.safetensors, which must then be
    from the same step."""
    path = run_dir / STATE_FILE
    tensors, header = _read(path)
    weights = _weights_in_state(tensors)
    if weights:
        _fit(path, weights, header, modules, plugin_name)
        if publish:
            _republish(run_dir, weights, header)
    else:
        model = load_weights(run_dir, modules, plugin_name)
        if (model.get("epoch"), model.get("step")) != (header.get("epoch"), header.get("step")):
            raise CheckpointError(
                f"{run_dir}: {MODEL_FILE} (epoch {model.get('epoch')}) and {STATE_FILE} "
                f"(epoch {header.get('epoch')}) do not match; the run cannot be resumed exactly"
            )
    return _load_optimizers(path, tensors, header, optimizers), header


def _republish(run_dir: Path, weights: Mapping[str, torch.Tensor], header: Mapping) -> None:
    """Rewrite model.safetensors from the state's weights where a crash between the two
    writes left it missing or one checkpoint behind."""
    try:
        model = read_meta(run_dir)
    except CheckpointError:
        model = {}
    if (model.get("epoch"), model.get("step")) == (header.get("epoch"), header.get("step")):
        return
    _write_model(run_dir, weights, {k: v for k, v in header.items() if k != "optimizers"})


def load_state(
    run_dir: Path, optimizers: Mapping[str, torch.optim.Optimizer]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore optimizer states; return the saved RNG tensors and the header."""
    tensors, header = _read(run_dir / STATE_FILE)
    return _load_optimizers(run_dir / STATE_FILE, tensors, header, optimizers), header


def _with_tuples(saved: list[dict], current: list[dict]) -> list[dict]:
    """JSON turned the tuples of the saved groups (Adam's betas) into lists: give them
    back the type the optimizer's own groups have, so the state is restored exactly."""
    return [
        {k: tuple(v) if isinstance(now.get(k), tuple) and isinstance(v, list) else v
         for k, v in group.items()}
        for group, now in zip(saved, current, strict=False)
    ] + saved[len(current):]  # fmt: skip


def _load_optimizers(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    header: Mapping[str, Any],
    optimizers: Mapping[str, torch.optim.Optimizer],
) -> dict[str, torch.Tensor]:
    """Optimizer states into ``optimizers``; return the RNG tensors."""
    saved = header.get("optimizers", {})
    for name, optimizer in optimizers.items():
        if name not in saved:
            raise CheckpointError(f"{path} has no state for optimizer '{name}'")
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                param_id, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(param_id), {})[field] = value
        for param_id, values in saved[name]["plain"].items():
            state.setdefault(int(param_id), {}).update(values)
        groups = _with_tuples(saved[name]["param_groups"], optimizer.param_groups)
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError) as error:
            raise CheckpointError(
                f"{path}: the state of optimizer '{name}' does not fit this run ({error})"
            ) from None
    return {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
