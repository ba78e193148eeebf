"""Robustness in the field's protocol: defences trained, then attacked at L-inf eps 0.1.

    .venv/bin/python benchmarks/defences.py [--classifier cnn] [--epochs 10]
        [--defences plain,fgsm,pgd,trades] [--test-size 10000] [--autoattack-size 1000]
        [--adversarial-steps 7] [--existing RUN ...] [--defences ""]

Trains the classifier (the paper's cnn by default) once per defence (plain; FGSM, PGD-K
and TRADES adversarial training at eps 0.1 in [0, 1] = 0.2 in the paper's scale), then
measures on the test images: clean accuracy, FGSM, PGD-20 (step 2.5 eps / 20, random
start) and AutoAttack (standard version; on the first --autoattack-size images, as it
costs ~0.7 s per image on a 2-core CPU); for the plain network also the paper's masked
FGSM curve. Records each training's wall time and s/epoch. Writes
benchmarks/results/NAME.json (after every defence) and prints the Markdown table for
docs/RESULTS.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_result

import zoo

EPS_UNIT = 0.1  # the published Fashion-MNIST budget, [0, 1] scale
EPS_PAPER = 0.2  # the same, in the paper's [-1, 1] scale (zoo's --adversarial-eps)
DEFENCES = {
    "plain": {},
    "fgsm": {"adversarial_eps": EPS_PAPER, "adversarial": "fgsm"},
    "pgd": {"adversarial_eps": EPS_PAPER, "adversarial": "pgd"},
    "trades": {"adversarial_eps": EPS_PAPER, "adversarial": "trades", "trades_beta": 6.0},
}


def _accuracy(attack: str, run: Path, out: str, test_size: int, **options) -> float:
    result = zoo.run(attack, target=[str(run)], epsilons=(EPS_UNIT,), scale="unit",
                     modes=("standard",), test_size=test_size, out=out, progress=False,
                     **options)  # fmt: skip
    report = json.loads((result.path / "robustness.json").read_text())
    return report["targets"][0]["curves"]["standard"][0]["accuracy"]


def _masked_curve(run: Path, out: str, test_size: int) -> dict[str, float]:
    """The paper's FGSM curve: masked mode, epsilons in its [-1, 1] scale."""
    result = zoo.run("fgsm", target=[str(run)], modes=("masked",), test_size=test_size,
                     out=out, progress=False)  # fmt: skip
    report = json.loads((result.path / "robustness.json").read_text())
    return {f"{p['eps']:g}": p["accuracy"] for p in report["targets"][0]["curves"]["masked"]}


def _train(classifier: str, name: str, epochs: int, steps: int, out: str, **sizes) -> dict:
    started = time.perf_counter()
    options = DEFENCES[name] | ({"adversarial_steps": steps} if name in ("pgd", "trades") else {})
    result = zoo.run(classifier, epochs=epochs, out=out, progress=False, **options, **sizes)
    row = _trained_row(result.path, options)
    row["train_s"] = round(time.perf_counter() - started, 1)
    return row


def _trained_row(run: Path, options: dict) -> dict:
    """What a run's own files say of its training (epoch seconds from metrics.jsonl; the
    median too, as an epoch slowed by other work on the machine shifts only the mean)."""
    history = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    seconds = [r["seconds"] for r in history]
    plugin = json.loads((run / "config.json").read_text())["plugin"]
    return {"classifier": plugin, "run": str(run), "options": options, "epochs": len(history),
            "train_s": round(sum(seconds), 1),
            "s_per_epoch": round(sum(seconds) / len(seconds), 1),
            "s_per_epoch_median": round(statistics.median(seconds), 1),
            "collapsed": any(r.get("catastrophic_overfitting") for r in history)}  # fmt: skip


def _existing(run: Path) -> dict:
    """A row for a run trained before (``--existing``): its defence from its config."""
    config = json.loads((run / "config.json").read_text())["config"]
    adversarial = config.get("adversarial") if config.get("adversarial_eps", 0) > 0 else None
    keys = ("adversarial_eps", "adversarial", "adversarial_steps", "trades_beta")
    options = {k: config[k] for k in keys if adversarial and k in config}
    return {"defence": adversarial or "plain", **_trained_row(run, options)}


def _measure(row: dict, out: str, test_size: int, autoattack_size: int) -> dict:
    run = Path(row["run"])
    started = time.perf_counter()
    row["clean"] = zoo.evaluate(run, test_size=test_size)["accuracy"]
    row["fgsm"] = _accuracy("fgsm", run, out, test_size)
    row["pgd20"] = _accuracy("pgd", run, out, test_size, steps=20)
    if row["defence"] == "plain":  # the paper's measurement: FGSM noise on the garment only
        row["masked_fgsm_paper_scale"] = _masked_curve(run, out, test_size)
    if autoattack_size:
        row["autoattack"] = _accuracy("autoattack", run, out, autoattack_size)
        row["pgd20_on_autoattack_images"] = _accuracy("pgd", run, out, autoattack_size, steps=20)
    row["attack_s"] = round(time.perf_counter() - started, 1)
    return row


@click.command()
@click.option("--classifier", default="cnn", show_default=True, help="Any classify plugin.")
@click.option("--epochs", default=10, show_default=True)
@click.option("--defences", default="plain,fgsm,pgd,trades", show_default=True)
@click.option("--test-size", default=10_000, show_default=True)
@click.option("--autoattack-size", default=1000, show_default=True)
@click.option("--adversarial-steps", default=7, show_default=True)
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--train-size", type=int, default=None, help="Fewer training images (dry runs).")
@click.option("--existing", multiple=True, help="Measure this trained run too (repeat).")
@click.option("--name", default="defences", show_default=True, help="results/NAME.json")
def main(classifier, epochs, defences, test_size, autoattack_size, adversarial_steps, out,
         train_size, existing, name) -> None:  # fmt: skip
    rows = []
    trainings = [lambda d=d: {"defence": d, **_train(classifier, d, epochs, adversarial_steps,
                 out, train_size=train_size)} for d in defences.split(",") if d]  # fmt: skip
    for row_of in [lambda r=r: _existing(Path(r)) for r in existing] + trainings:
        rows.append(_measure(row_of(), out, test_size, autoattack_size))
        print(json.dumps(rows[-1]), flush=True)
        payload = {
            "command": " ".join(sys.argv),
            "eps_unit": EPS_UNIT,
            "test_images": test_size,
            "autoattack_images": autoattack_size,
            "train_images": train_size or 60_000,
            "rows": rows,
        }
        write_result(name, payload)  # after every defence: a long run keeps its rows
    headers = [
        "classifier",
        "defence",
        "epochs",
        "s/epoch",
        "clean",
        "FGSM",
        "PGD-20",
        f"AutoAttack ({autoattack_size})",
        f"PGD-20 ({autoattack_size})",
    ]
    cells = [
        [
            r["classifier"],
            r["defence"],
            r["epochs"],
            r["s_per_epoch"],
            f"{r['clean']:.4f}",
            f"{r['fgsm']:.4f}",
            f"{r['pgd20']:.4f}",
            f"{r.get('autoattack', float('nan')):.4f}",
            f"{r.get('pgd20_on_autoattack_images', float('nan')):.4f}",
        ]
        for r in rows
    ]
    print(markdown_table(headers, cells))  # fmt: skip


if __name__ == "__main__":
    main()
