"""Device and precision choices, resolved once per run."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from zoo.core.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """True where bf16 matrix work has hardware support (AMX/AVX512-BF16 CPUs, Ampere+ GPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(cpu, check, lambda: False)() for check in checks)


def resolve_precision(
    name: str,
    device: torch.device,
    devices: tuple[str, ...] = ("cpu", "cuda"),
    *,
    fast: bool | None = None,
) -> str:
    """``auto``: bf16 where the hardware is fast at it (``fast``, default: measured
    here) and the plugin allows it on this kind of device (``devices``); else fp32."""
    if name != "auto":
        return name
    fast = bf16_is_fast(device) if fast is None else fast
    return "bf16" if fast and device.type in devices else "fp32"


def resolved_choices(
    device: str, precision: str, devices: tuple[str, ...] = ("cpu", "cuda")
) -> dict[str, str]:
    """What ``auto`` becomes on this machine, for config.json: a run records the precision
    it trained in, not only the word it was asked with."""
    resolved = resolve_device(device)
    return {"device": resolved.type, "precision": resolve_precision(precision, resolved, devices)}


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """fp32 that is fp32 on CUDA too: cuDNN convolutions use TF32 by default, which
    would make evaluation numbers depend on the GPU's tensor cores."""
    backends = torch.backends
    saved = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
    backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved


def keep_fp32(module: torch.nn.Module, device: torch.device) -> None:
    """Run ``module`` in fp32 inside a bf16 autocast region: autocast is switched off
    for its forward and its floating inputs are cast up (a mixed-precision run whose
    other networks still take bf16). Its weights and state_dict are unchanged."""
    forward = module.forward

    def fp32_forward(*args, **kwargs):
        with torch.autocast(device_type=device.type, enabled=False):
            args = tuple(_up(a) for a in args)
            return forward(*args, **{k: _up(v) for k, v in kwargs.items()})

    module.forward = fp32_forward


def _up(value):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.float()
    return value


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for bf16; a no-op context for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
