"""FGSM robustness of the benchmark classifiers, and of an adversarially trained cnn.

    .venv/bin/python benchmarks/robustness.py [--hardened-epochs 10] [--adversarial-eps 0.1]

Uses the dense and cnn runs recorded by benchmarks/classifiers.py, attacks them with
`fgsm` on the 10,000 test images (masked = the paper's noise, standard = whole-image
FGSM), compares whole-image FGSM with `pgd` on a 2,000-image subset, trains a hardened
cnn with FGSM examples mixed in and attacks it the same way. Writes
benchmarks/results/robustness.json and prints Markdown tables.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, markdown_table, write_result

import zoo

EPSILONS = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
PGD_EPSILONS = [0.0, 0.02, 0.05, 0.1]


def _attack(targets: list[str], out: str, attack: str = "fgsm", **values) -> dict:
    result = zoo.run(attack, target=targets, out=out, progress=False, **values)
    return json.loads((result.path / "robustness.json").read_text()) | {"run": str(result.path)}


def _fgsm_and_pgd(targets: list[str], out: str, test_size: int) -> dict:
    """Whole-image FGSM and PGD on the same subset: how much FGSM over-states robustness."""
    same = {"epsilons": PGD_EPSILONS, "modes": ["standard"], "test_size": test_size}
    return {attack: _attack(targets, out, attack, **same) for attack in ("fgsm", "pgd")}


@click.command()
@click.option("--hardened-epochs", default=10, show_default=True)
@click.option("--adversarial-eps", default=0.1, show_default=True)
@click.option("--pgd-test-size", default=2000, show_default=True)
@click.option("--out", default="runs/benchmarks", show_default=True)
def main(hardened_epochs: int, adversarial_eps: float, pgd_test_size: int, out: str) -> None:
    classifiers = json.loads((RESULTS / "classifiers.json").read_text())["rows"]
    runs = {row["model"]: row["run"] for row in classifiers}
    started = time.perf_counter()
    fgsm = _attack([runs["dense"], runs["cnn"]], out, epsilons=EPSILONS)
    pgd = _fgsm_and_pgd([runs["cnn"]], out, pgd_test_size)
    trained = time.perf_counter()
    hardened = zoo.run(
        "cnn", epochs=hardened_epochs, adversarial_eps=adversarial_eps, out=out, progress=False
    )
    train_s = time.perf_counter() - trained
    hardened_clean = zoo.evaluate(hardened.path)["accuracy"]
    hardened_fgsm = _attack([runs["cnn"], str(hardened.path)], out, epsilons=EPSILONS)
    hardened_pgd = _fgsm_and_pgd([str(hardened.path)], out, pgd_test_size)
    payload = {
        "command": " ".join(sys.argv),
        "fgsm": fgsm,
        "pgd": pgd,
        "hardened": {
            "run": str(hardened.path),
            "epochs": hardened_epochs,
            "adversarial_eps": adversarial_eps,
            "train_s": round(train_s, 1),
            "clean_accuracy": hardened_clean,
            "fgsm": hardened_fgsm,
            "pgd": hardened_pgd,
        },
        "total_s": round(time.perf_counter() - started, 1),
    }
    print(f"wrote {write_result('robustness', payload)}")
    for title, reports in (
        ("FGSM", [fgsm]),
        ("FGSM and PGD subset", list(pgd.values())),
        ("hardened vs plain", [hardened_fgsm]),
        ("hardened FGSM and PGD subset", list(hardened_pgd.values())),
    ):
        _print_table(title, reports, str(hardened.path))


def _print_table(title: str, reports: list[dict], hardened: str) -> None:
    """One Markdown table of accuracy against epsilon: a row per attack, target and mode."""
    first = reports[0]
    print(f"\n{title}: {first['scale_note']}, {first['test_images']} test images")
    eps = [p["eps"] for p in next(iter(first["targets"][0]["curves"].values()))]
    cells = []
    for report in reports:
        for target in report["targets"]:
            name = target["plugin"] + (" (hardened)" if target["run"] == hardened else "")
            for mode, curve in target["curves"].items():
                row = [name, f"{report['attack']} ({mode})"]
                cells.append(row + [f"{p['accuracy']:.4f}" for p in curve])
    print(markdown_table(["classifier", "attack", *(f"{e:g}" for e in eps)], cells))


if __name__ == "__main__":
    main()
