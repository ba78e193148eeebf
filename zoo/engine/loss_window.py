"""Running sums of step losses, turned into floats only when logged (no sync per step).

A checkpoint taken inside an epoch keeps the open windows (``state``), so a resumed run
logs the same ``losses.jsonl`` lines and epoch means as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from zoo.core.contract import TrainingContext

NEVER = 2**62  # "no non-finite loss yet" for LossWindow.first_bad


class LossWindow:
    """Each key has its own weight: a GAN's generator loss exists only on the steps where
    the generator is updated (every n_critic steps for WGAN). The step of the first
    non-finite loss is tracked on the device too, so a stop names the exact step.
    Under ``--on-nonfinite skip`` non-finite losses weigh nothing, and the trainer's
    update counters (its TrainingContext) at the window's start tell whether any update
    in it was usable.
    Steps go into a log window; each log window is absorbed into its epoch's window.
    """

    def __init__(self, counters: TrainingContext) -> None:
        self.counters = counters
        self.drop_nonfinite = counters.skip_nonfinite
        self.skipped_before = counters.skipped_updates
        self.applied_before = counters.applied_updates
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, torch.Tensor | int] = {}
        self.first_bad: torch.Tensor | None = None
        self.first_step: int | None = None

    def add(self, losses: Mapping[str, torch.Tensor], weight: int, step: int) -> None:
        if self.first_step is None:
            self.first_step = step
        for key, value in losses.items():
            value = torch.as_tensor(value).detach().float()
            finite = torch.isfinite(value)
            if self.drop_nonfinite:
                self._accumulate(key, torch.where(finite, value * weight, 0.0), finite * weight)
            else:
                self._mark_bad(torch.where(finite, NEVER, step))
                self._accumulate(key, value * weight, weight)

    def absorb(self, other: LossWindow) -> None:
        """Add a finished log window's sums into this (epoch) window."""
        if self.first_step is None:
            self.first_step = other.first_step
        for key, total in other.sums.items():
            self._accumulate(key, total, other.weights[key])
        if other.first_bad is not None:
            self._mark_bad(other.first_bad)

    def _accumulate(self, key: str, total: torch.Tensor, weight: torch.Tensor | int) -> None:
        self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.weights[key] = self.weights[key] + weight if key in self.weights else weight

    def _mark_bad(self, steps: torch.Tensor) -> None:
        self.first_bad = steps if self.first_bad is None else self.first_bad.minimum(steps)

    @property
    def skipped(self) -> int:
        """Updates dropped since the window opened (--on-nonfinite skip)."""
        return self.counters.skipped_updates - self.skipped_before

    @property
    def applied(self) -> int:
        return self.counters.applied_updates - self.applied_before

    def means(self) -> dict[str, float]:
        weights = {k: float(w) for k, w in self.weights.items()}
        return {k: float(v) / weights[k] for k, v in self.sums.items() if weights[k] > 0}

    def first_bad_step(self) -> int | None:
        if self.first_bad is None or int(self.first_bad) == NEVER:
            return None
        return int(self.first_bad)

    def state(self) -> dict[str, Any]:
        """The window as JSON: float32 sums survive the float64 round trip exactly."""
        return {
            "sums": {k: float(v) for k, v in self.sums.items()},
            "weights": {k: int(w) for k, w in self.weights.items()},
            "first_bad": None if self.first_bad is None else int(self.first_bad),
            "first_step": self.first_step,
            "skipped": self.skipped,
            "applied": self.applied,
        }

    @classmethod
    def restore(
        cls, counters: TrainingContext, state: Mapping[str, Any], device: torch.device
    ) -> LossWindow:
        """A window as :meth:`state` saved it, on ``device``; counters continue from the
        trainer's (reset) ones."""
        window = cls(counters)
        for key, value in state["sums"].items():  # add() keeps every sum in float32
            window.sums[key] = torch.tensor(value, dtype=torch.float32, device=device)
        window.weights = {k: _weight(w, window.drop_nonfinite, device)
                          for k, w in state["weights"].items()}  # fmt: skip
        if state.get("first_bad") is not None:
            window.first_bad = torch.tensor(int(state["first_bad"]), device=device)
        window.first_step = state.get("first_step")
        window.skipped_before -= int(state.get("skipped", 0))
        window.applied_before -= int(state.get("applied", 0))
        return window


def _weight(value: Any, as_tensor: bool, device: torch.device) -> torch.Tensor | int:
    """Weights are plain ints, or device tensors under --on-nonfinite skip."""
    return torch.tensor(int(value), device=device) if as_tensor else int(value)
