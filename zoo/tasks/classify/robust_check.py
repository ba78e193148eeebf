"""Robust accuracy during adversarial training, and catastrophic overfitting.

FGSM training can collapse (Wong, Rice & Kolter 2020, "Fast is better than free"):
within an epoch the model learns to defeat FGSM's single step, its accuracy under FGSM
rises, and its accuracy under PGD falls towards zero. So every epoch of an
adversarially trained classifier measures both on the first test images, at the
training epsilon, and says so when PGD accuracy collapses while FGSM accuracy holds.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from zoo.core.data import iterate_batches
from zoo.core.runs import METRICS_FILE, read_jsonl
from zoo.tasks.attack.perturbations import eps_in_range, fgsm, pgd

CHECK_IMAGES = 500  # test images per epoch: a few seconds, enough to see a collapse
CHECK_PGD_STEPS = 10
COLLAPSE = 0.5  # PGD accuracy below this share of its best so far...
COLLAPSE_DROP = 0.2  # ...and at least this much under it


def check_robustness(plugin: Any, epoch: Any) -> dict[str, float]:
    """test_fgsm_accuracy and test_pgd_accuracy (PGD-10) at the training epsilon on the
    first CHECK_IMAGES test images; with catastrophic_overfitting 1.0 and a warning
    when the history of the run shows the collapse."""
    eps = eps_in_range(plugin.config.adversarial_eps, "paper", plugin.pixel_range)
    split = epoch.run.data.test.head(CHECK_IMAGES).to(epoch.device)
    hits = {"fgsm": 0, "pgd": 0}
    generator = torch.Generator().manual_seed(0)  # the same starts every epoch
    for batch in iterate_batches(split, 250, plugin.pixel_range, shuffle=False):
        images, labels = batch.images, batch.labels
        attacked = {
            "fgsm": fgsm(plugin.predict, images, labels, eps, plugin.pixel_range),
            "pgd": pgd(plugin.predict, images, labels, eps, plugin.pixel_range,
                       steps=CHECK_PGD_STEPS, generator=generator),
        }  # fmt: skip
        for name, adversarial in attacked.items():
            with torch.no_grad():
                predicted = plugin.predict(adversarial).float().argmax(dim=1)
            hits[name] += int((predicted == labels).sum())
    record = {f"test_{k}_accuracy": v / len(split) for k, v in hits.items()}
    earlier = [r for r in read_jsonl(epoch.run.path / METRICS_FILE) if not r.get("partial")]
    history = [*earlier, record]
    warning = catastrophic_overfitting(history)
    if warning:
        print(f"zoo: warning: epoch {epoch.epoch}: {warning}", file=sys.stderr)
        record["catastrophic_overfitting"] = 1.0
    return record


def catastrophic_overfitting(history: Sequence[Mapping[str, Any]]) -> str | None:
    """What went wrong, when the last epoch's PGD accuracy collapsed below half of its
    best (and by at least COLLAPSE_DROP) while FGSM accuracy did not fall; else None."""
    scored = [r for r in history if "test_pgd_accuracy" in r and "test_fgsm_accuracy" in r]
    if len(scored) < 2:
        return None
    last, earlier = scored[-1], scored[:-1]
    best = max(earlier, key=lambda r: r["test_pgd_accuracy"])
    pgd_best, pgd_now = best["test_pgd_accuracy"], last["test_pgd_accuracy"]
    collapsed = pgd_now < COLLAPSE * pgd_best and pgd_now <= pgd_best - COLLAPSE_DROP
    if not collapsed or last["test_fgsm_accuracy"] < best["test_fgsm_accuracy"]:
        return None
    return (
        f"catastrophic overfitting: accuracy under PGD fell from {pgd_best:.3f} to "
        f"{pgd_now:.3f} while accuracy under FGSM held at {last['test_fgsm_accuracy']:.3f}; "
        "the model defeats FGSM's single step, not the attack (use --adversarial pgd or "
        "trades, a smaller --adversarial-eps, or the epochs before the collapse)"
    )
