"""Checkpoints in safetensors + JSON metadata only: nothing is ever unpickled.

``model.safetensors`` holds the weights of every module (``<module>.<param>``);
``state.safetensors`` holds what resuming needs on top: optimizer tensors and RNG
states, with the non-tensor optimizer state as JSON metadata. Both are written
atomically, so a crash leaves the previous checkpoint intact.
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
from zoo.runs import write_atomic

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
FORMAT = "zoo-checkpoint"
FORMAT_VERSION = 1


def save(
    run_dir: Path,
    modules: torch.nn.ModuleDict,
    optimizers: Mapping[str, torch.optim.Optimizer],
    rng: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
) -> None:
    """Write weights, then training state; each file atomically."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    weights = {k: v.detach().cpu().contiguous() for k, v in modules.state_dict().items()}
    write_atomic(run_dir / MODEL_FILE, save_bytes(weights, {"zoo": json.dumps(header)}))

    tensors: dict[str, torch.Tensor] = {f"rng.{k}": v.cpu() for k, v in rng.items()}
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


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise CheckpointError(
            f"{path} is missing: this run has no checkpoint (did training start?)"
        )
    try:
        blob = path.read_bytes()
        tensors = load_bytes(blob)
        header = _header(blob)
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


def _header(blob: bytes) -> dict[str, Any]:
    """The ``zoo`` JSON metadata of a safetensors blob (its header is length-prefixed JSON)."""
    size = int.from_bytes(blob[:8], "little")
    metadata = json.loads(blob[8 : 8 + size]).get("__metadata__", {})
    if "zoo" not in metadata:
        return {}
    return json.loads(metadata["zoo"])


def read_meta(run_dir: Path) -> dict[str, Any]:
    return _read(run_dir / MODEL_FILE)[1]


def load_weights(run_dir: Path, modules: torch.nn.ModuleDict, plugin_name: str) -> dict[str, Any]:
    """Load weights into ``modules`` after checking the checkpoint is this plugin's."""
    path = run_dir / MODEL_FILE
    tensors, header = _read(path)
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
    modules.load_state_dict(tensors)
    return header


def load_state(
    run_dir: Path, optimizers: Mapping[str, torch.optim.Optimizer]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore optimizer states; return the saved RNG tensors and the header."""
    tensors, header = _read(run_dir / STATE_FILE)
    saved = header.get("optimizers", {})
    for name, optimizer in optimizers.items():
        if name not in saved:
            raise CheckpointError(f"{run_dir / STATE_FILE} has no state for optimizer '{name}'")
        state: dict[int, dict[str, Any]] = {}
        prefix = f"optim.{name}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                param_id, field = key[len(prefix) :].split(".", 1)
                state.setdefault(int(param_id), {})[field] = value
        for param_id, values in saved[name]["plain"].items():
            state.setdefault(int(param_id), {}).update(values)
        optimizer.load_state_dict({"state": state, "param_groups": saved[name]["param_groups"]})
    rng = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
    return rng, header
