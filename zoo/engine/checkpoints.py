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
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from zoo.core.errors import CheckpointError, first_line
from zoo.core.runs import MODEL_FILE, STATE_FILE, load_json, write_atomic

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
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({first_line(error)}); re-train the run"
        ) from None
    _check_header(path, header)
    return tensors, header


def _header(raw: bytes) -> dict[str, Any]:
    """The ``zoo`` metadata in a safetensors header (the JSON after its 8-byte length);
    a ValueError where it is not JSON, not an object or nested absurdly deep."""
    header = load_json(raw.decode("utf-8"))
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("zoo"), str):
        return {}
    zoo_header = load_json(metadata["zoo"])
    if not isinstance(zoo_header, dict):
        raise ValueError("its zoo metadata is not a JSON object")
    return zoo_header


def _check_header(path: Path, header: Mapping[str, Any]) -> None:
    """The marker, a version this zoo reads, and epoch and step as counts: anything else
    is not a checkpoint zoo wrote (and would fail later, deep inside training)."""
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a zoo checkpoint")
    version = header.get("format_version", 0)
    if not _is_count(version):
        raise CheckpointError(
            f"{path}: its format_version {version!r} is not a whole number; the file is "
            "damaged or not written by zoo (re-train the run)"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer zoo (format {version}); upgrade zoo")
    for key in ("epoch", "step"):
        if key in header and not _is_count(header[key]):
            raise CheckpointError(
                f"{path}: its {key} {header[key]!r} is not a whole number >= 0; the file is "
                "damaged (re-train the run)"
            )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_meta(run_dir: Path, file: str = MODEL_FILE) -> dict[str, Any]:
    """The zoo header of a checkpoint file, checked as ``_read`` does, without reading
    its tensors."""
    path = run_dir / file
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 100_000_000:
                raise ValueError(f"header size {size}")
            header = _header(handle.read(size))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: this run has no checkpoint") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated ({first_line(error)})") from None
    _check_header(path, header)
    return header


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
    """Load ``tensors`` into ``modules`` once plugin, names, shapes, dtypes and finite
    values are checked: load_state_dict would silently cast an int8 or bool tensor, and
    NaN weights evaluate to a plausible-looking number."""
    if header.get("plugin") != plugin_name:
        raise CheckpointError(
            f"{path} belongs to plugin {header.get('plugin')!r}, not '{plugin_name}'"
        )
    expected = modules.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{path} does not fit this plugin's networks ({what})")
    for key, value in sorted(tensors.items()):
        _check_tensor(path, key, value, expected[key])
    modules.load_state_dict(dict(tensors))


def _check_tensor(path: Path, key: str, value: torch.Tensor, expected: torch.Tensor) -> None:
    if value.shape != expected.shape:
        raise CheckpointError(
            f"{path}: tensor {key} has shape {tuple(value.shape)}, the network expects "
            f"{tuple(expected.shape)}"
        )
    if value.dtype != expected.dtype:
        raise CheckpointError(
            f"{path}: tensor {key} is {_dtype(value)}, the network expects "
            f"{_dtype(expected)}; the file is damaged or not this run's (re-train the run)"
        )
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise CheckpointError(
            f"{path}: tensor {key} holds NaN or infinite values; the checkpoint is damaged "
            "(re-train the run, or resume from an earlier copy)"
        )


def _dtype(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def resume(
    run_dir: Path,
    modules: torch.nn.ModuleDict,
    optimizers: Mapping[str, torch.optim.Optimizer],
    plugin_name: str,
    *,
    publish: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore weights, optimizers and RNG from the state file alone; return the RNG
    tensors (checked: they load into generators) and its header (epoch, step).
    ``publish``: also bring model.safetensors up to the state's step (one process of
    several leaves that to rank 0), once everything has been checked, so a refused
    resume writes nothing. A state file from before weights were kept in it is used with
    model.safetensors, which must then be from the same step."""
    path = run_dir / STATE_FILE
    tensors, header = _read(path)
    for key in ("epoch", "step"):
        if key not in header:
            raise CheckpointError(f"{path} records no {key}; the file is damaged (re-train)")
    weights = _weights_in_state(tensors)
    if weights:
        _fit(path, weights, header, modules, plugin_name)
    else:
        model = load_weights(run_dir, modules, plugin_name)
        if (model.get("epoch"), model.get("step")) != (header.get("epoch"), header.get("step")):
            raise CheckpointError(
                f"{run_dir}: {MODEL_FILE} (epoch {model.get('epoch')}) and {STATE_FILE} "
                f"(epoch {header.get('epoch')}) do not match; the run cannot be resumed exactly"
            )
    rng = _load_optimizers(path, tensors, header, optimizers)
    _check_rng(path, rng, _device_of(modules))
    if weights and publish:
        _republish(run_dir, weights, header)
    return rng, header


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


def publish(run_dir: Path, modules: torch.nn.ModuleDict, header: Mapping[str, Any]) -> None:
    """After a resume is validated: bring model.safetensors up to the restored state
    (``modules`` hold its weights), where a crash left it missing or behind."""
    weights = {k: v.detach().cpu().contiguous() for k, v in modules.state_dict().items()}
    _republish(run_dir, weights, header)


def load_state(
    run_dir: Path, optimizers: Mapping[str, torch.optim.Optimizer]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore optimizer states; return the saved RNG tensors and the header."""
    tensors, header = _read(run_dir / STATE_FILE)
    return _load_optimizers(run_dir / STATE_FILE, tensors, header, optimizers), header


RNG_NEEDED = ("torch", "shuffle")  # CPU generators: torch's global one, the data order


def _device_of(modules: torch.nn.ModuleDict) -> torch.device:
    first = next(iter(modules.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _check_rng(path: Path, rng: Mapping[str, torch.Tensor], device: torch.device) -> None:
    """Each RNG state must load into a generator of its kind: a short, missing or
    scrambled one would fail, or continue differently, after the resume began."""
    for name in RNG_NEEDED:
        if name not in rng:
            raise CheckpointError(
                f"{path} has no RNG state rng.{name}; the file is damaged and the run "
                "cannot be resumed exactly (re-train the run)"
            )
        _try_generator(path, name, rng[name], torch.Generator())
    if "cuda" in rng and device.type == "cuda":
        _try_generator(path, "cuda", rng["cuda"], torch.Generator(device))


def _try_generator(path: Path, name: str, state: torch.Tensor, generator) -> None:
    try:
        if state.dtype != torch.uint8 or state.dim() != 1:
            raise ValueError(f"a {_dtype(state)} tensor of shape {tuple(state.shape)}")
        generator.set_state(state)
    except (RuntimeError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"{path}: RNG state rng.{name} is not a generator state ({first_line(error)}); "
            "the file is damaged (re-train the run)"
        ) from None


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
    """Optimizer states into ``optimizers``, once their groups, names, fields, dtypes and
    shapes are checked (torch checks few of them, and a wrong one fails at the first
    step); return the RNG tensors."""
    saved = header.get("optimizers", {})
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: its optimizer metadata is not a JSON object; {DAMAGED}")
    for name, optimizer in optimizers.items():
        entry = saved.get(name)
        if entry is None:
            raise CheckpointError(f"{path} has no state for optimizer '{name}'")
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: the state of optimizer '{name}' is not an object")
        groups = _saved_groups(path, name, entry.get("param_groups"), optimizer.param_groups)
        state = _saved_state(path, name, tensors, entry.get("plain", {}))
        _check_state(path, name, state, groups, optimizer)
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError, TypeError) as error:
            raise CheckpointError(
                f"{path}: the state of optimizer '{name}' does not fit this run "
                f"({first_line(error)})"
            ) from None
    return {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}


DAMAGED = "the file is damaged (re-train the run)"


def _saved_groups(path: Path, name: str, saved: Any, current: list[dict]) -> list[dict]:
    """The saved param groups, if they are what this optimizer's groups are: as many,
    each listing as many distinct parameter indices, each setting of the same kind."""
    where = f"{path}: optimizer '{name}'"
    if not isinstance(saved, list) or not all(isinstance(group, dict) for group in saved):
        raise CheckpointError(f"{where} has no list of param groups; {DAMAGED}")
    if len(saved) != len(current):
        raise CheckpointError(f"{where} has {len(saved)} param groups, this run {len(current)}")
    indices: list[Any] = []
    for group, now in zip(saved, current, strict=True):
        params = group.get("params")
        if not isinstance(params, list) or not all(_is_count(i) for i in params):
            raise CheckpointError(f"{where}: a group's params are not parameter indices")
        if len(params) != len(now["params"]):
            raise CheckpointError(
                f"{where}: a group holds {len(params)} parameters, this run's {len(now['params'])}"
            )
        indices += params
        for key, value in group.items():
            if key != "params" and key in now and not _same_kind(value, now[key]):
                raise CheckpointError(
                    f"{where}: setting {key!r} is {_short(value)}, this run's is "
                    f"{_short(now[key])}; {DAMAGED}"
                )
    if len(set(indices)) != len(indices):
        raise CheckpointError(f"{where} lists a parameter index twice; {DAMAGED}")
    return _with_tuples(saved, current)


def _same_kind(value: Any, like: Any) -> bool:
    """Whether a saved setting can stand where ``like`` does: a finite number for a
    number, a flag for a flag, a sequence of as many for a tuple; other kinds as they are."""
    if isinstance(like, bool) or like is None:
        return value is None or isinstance(value, bool)
    if isinstance(like, (int, float, torch.Tensor)):
        return _is_number(value) and math.isfinite(value)
    if isinstance(like, (tuple, list)):
        return (
            isinstance(value, (tuple, list))
            and len(value) == len(like)
            and all(_same_kind(v, w) for v, w in zip(value, like, strict=True))
        )
    if isinstance(like, str):
        return isinstance(value, str)
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _saved_state(
    path: Path, name: str, tensors: Mapping[str, torch.Tensor], plain: Any
) -> dict[int, dict[str, Any]]:
    """Per parameter index, the saved tensors (``optim.<name>.<index>.<field>``) and plain
    values; a name of another shape or a non-finite tensor is refused."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        index, _, field = key[len(prefix) :].partition(".")
        if _index(index) is None or not field:
            raise CheckpointError(
                f"{path}: optimizer tensor {key!r} is not named {prefix}<index>.<field>; {DAMAGED}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: optimizer tensor {key!r} holds NaN or inf; {DAMAGED}")
        state.setdefault(_index(index), {})[field] = value
    if not isinstance(plain, dict):
        raise CheckpointError(f"{path}: the plain state of optimizer '{name}' is not an object")
    for index, values in plain.items():
        if _index(index) is None or not isinstance(values, dict):
            raise CheckpointError(
                f"{path}: optimizer '{name}' has plain state {_short(index)} that is not "
                f"an index with fields; {DAMAGED}"
            )
        state.setdefault(_index(index), {}).update(values)
    return state


def _index(text: str) -> int | None:
    """A parameter index as save() writes it: decimal digits, no sign, no leading zero."""
    if text.isascii() and text.isdigit() and str(int(text)) == text:
        return int(text)
    return None


def _check_state(
    path: Path,
    name: str,
    state: Mapping[int, Mapping[str, Any]],
    groups: list[dict],
    optimizer: torch.optim.Optimizer,
) -> None:
    """Each parameter's state holds the fields, dtypes and shapes one step of this kind
    of optimizer gives it."""
    position = {index: i for i, index in enumerate(i for g in groups for i in g["params"])}
    reference = _reference_state(optimizer)
    for index, fields in sorted(state.items()):
        if index not in position:
            raise CheckpointError(
                f"{path}: optimizer '{name}' has state for parameter {index}, which none of "
                f"its groups lists; {DAMAGED}"
            )
        want = reference.get(position[index]) if reference is not None else None
        if want is None:
            continue
        if set(fields) != set(want):
            raise CheckpointError(
                f"{path}: optimizer '{name}' parameter {index} has state {sorted(fields)!r}, "
                f"this optimizer keeps {sorted(want)!r}; {DAMAGED}"
            )
        for field, value in fields.items():
            if not _fits(value, want[field]):
                raise CheckpointError(
                    f"{path}: optimizer '{name}' state {index}.{field} is {_describe(value)}, "
                    f"this optimizer keeps {_describe(want[field])}; {DAMAGED}"
                )


def _fits(value: Any, like: Any) -> bool:
    if isinstance(like, torch.Tensor):
        return (
            isinstance(value, torch.Tensor)
            and value.dtype == like.dtype
            and value.shape == like.shape
        )
    return not isinstance(value, torch.Tensor) and _same_kind(value, like)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {_dtype(value)} tensor of shape {tuple(value.shape)}"
    return _short(value)


def _reference_state(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]] | None:
    """The state one step puts into a fresh optimizer of the same class and settings
    over zero copies of the parameters. None where it cannot be rebuilt so (a plugin's
    own optimizer class): torch's checks in load_state_dict are then all there is."""
    groups = [
        {**{k: v for k, v in group.items() if k != "params"},
         "params": [torch.zeros_like(p, requires_grad=True) for p in group["params"]]}
        for group in optimizer.param_groups
    ]  # fmt: skip
    try:
        probe = type(optimizer)(groups)
        for group in probe.param_groups:
            for param in group["params"]:
                param.grad = torch.zeros_like(param)
        probe.step()
        return probe.state_dict()["state"]
    except Exception:  # any class a plugin brings, any constructor it has
        return None
