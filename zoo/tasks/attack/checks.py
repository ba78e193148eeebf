"""What the core asks of an attack's output, and how its failures reach a person.

An attack is trusted with nothing: every batch it returns is checked before a single
accuracy is counted, since a perturbation outside the eps-ball or the pixel range would
report a robustness the threat model does not allow. A failure is one line naming the
attack; the traceback stays the error's cause, for ``--debug``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from zoo.core.errors import PluginError, plugin_code
from zoo.tasks.attack.perturbations import foreground_mask

if TYPE_CHECKING:
    from zoo.tasks.attack.base import AttackPlugin, Classifier

TOLERANCE = 1e-5  # float32 rounding of x + eps, relative to the largest pixel value


def attack_code(attack: AttackPlugin, hook: str, where: str):
    """An exception from the attack's own code becomes one line naming the attack, its
    hook and what it was attacking."""
    return plugin_code(lambda: f"attack '{attack.info.name}' failed in {hook} on {where}")


def perturbed(
    attack: AttackPlugin,
    model: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilons: Sequence[float],
    *,
    masked: bool,
    generator: torch.Generator,
    where: str,
) -> list[torch.Tensor]:
    """The attack's images for each of ``epsilons`` (all > 0, in the model's range),
    each checked; detached, on the images' device and dtype."""
    if not epsilons:
        return []
    mask = foreground_mask(images, model.pixel_range) if masked else None
    with attack_code(attack, attack.written_hook(), where):  # copies: checked against the originals
        outputs = list(
            attack.perturb_epsilons(model, images.clone(), labels.clone(), epsilons,
                                    mask=None if mask is None else mask.clone(),
                                    generator=generator)
        )  # fmt: skip
    networks = getattr(model, "modules", None)
    if networks is not None and networks.training:  # the attack left it in train mode
        networks.eval()  # predictions (dropout, batch norm) are measured in eval mode
    name = attack.info.name
    if len(outputs) != len(epsilons):
        raise PluginError(
            f"attack '{name}' returned {len(outputs)} batches for {len(epsilons)} epsilons"
        )
    return [
        check_perturbation(name, images, output, eps, model.pixel_range, mask)
        for eps, output in zip(epsilons, outputs, strict=True)
    ]


def check_perturbation(
    name: str,
    images: torch.Tensor,
    output: object,
    eps: float,
    pixel_range: tuple[float, float],
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """``output`` as a checked batch: a tensor of the images' shape, finite, within
    ``eps`` of the images (L-inf), inside ``pixel_range`` and, where ``mask`` is 0,
    equal to the images. Anything else is a PluginError of one line."""
    if not isinstance(output, torch.Tensor):
        raise PluginError(f"attack '{name}' returned a {type(output).__name__}, not a tensor")
    if output.shape != images.shape:
        raise PluginError(
            f"attack '{name}' returned images of shape {tuple(output.shape)} for a batch of "
            f"shape {tuple(images.shape)}"
        )
    output = output.detach().to(device=images.device, dtype=images.dtype)
    if not output.numel():
        return output
    if not bool(torch.isfinite(output).all()):
        raise PluginError(f"attack '{name}' returned non-finite pixels (NaN or inf) at eps {eps:g}")
    low, high = pixel_range
    tolerance = TOLERANCE * max(1.0, abs(low), abs(high))
    delta = (output - images).abs()
    largest = float(delta.max())
    if largest > eps + tolerance:
        raise PluginError(
            f"attack '{name}' returned images outside the eps-ball "
            f"(max |delta| {largest:.6g} > eps {eps:.6g})"
        )
    if float(output.min()) < low - tolerance or float(output.max()) > high + tolerance:
        raise PluginError(
            f"attack '{name}' returned pixels outside the target's range [{low:g}, {high:g}] "
            f"(min {float(output.min()):.6g}, max {float(output.max()):.6g})"
        )
    if mask is not None and bool((delta * (1 - mask)).gt(0).any()):
        outside = float((delta * (1 - mask)).max())
        raise PluginError(
            f"attack '{name}' changed pixels outside the mask in masked mode "
            f"(max |delta| {outside:.6g} on the background)"
        )
    return output
