"""Train dense and cnn on the full 60,000 training images and evaluate on the 10,000
test images, with the paper's settings (Adam 1e-3, batch 32, 10 epochs).

    .venv/bin/python benchmarks/classifiers.py [--epochs 10] [--models dense,cnn]

Writes benchmarks/results/classifiers.json and prints a Markdown table for
docs/RESULTS.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_result

import zoo

PAPER = {"dense": 0.88, "cnn": 0.90}


@click.command()
@click.option("--epochs", default=10, show_default=True)
@click.option("--models", default="dense,cnn", show_default=True)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds per model.")
@click.option(
    "--extra", multiple=True, help="name:key=value overrides, e.g. dense:lr_schedule=cosine"
)
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--name", default="classifiers", show_default=True, help="Result file name.")
def main(epochs: int, models: str, seeds: str, extra: tuple[str, ...], out: str, name: str) -> None:
    overrides: dict[str, dict[str, str]] = {}
    for item in extra:
        model, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        overrides.setdefault(model, {})[key] = value
    rows = []
    for model, seed in [(m, int(s)) for m in models.split(",") for s in seeds.split(",")]:
        started = time.perf_counter()
        options = overrides.get(model, {})
        result = zoo.run(model, epochs=epochs, seed=seed, out=out, progress=False, **options)
        wall = time.perf_counter() - started
        evaluated = zoo.evaluate(result.path)
        history = result.history
        rows.append(
            {
                "model": model,
                "seed": seed,
                "options": options,
                "epochs": epochs,
                "batch_size": zoo.get_plugin(model).defaults.get("batch_size"),
                "wall_s": round(wall, 1),
                "train_s": round(sum(r["seconds"] for r in history), 1),
                "train_accuracy": round(history[-1]["accuracy"], 4),
                "test_accuracy": evaluated["accuracy"],
                "trainer_test_accuracy": history[-1]["test_accuracy"],
                "paper": PAPER.get(model),
                "run": str(result.path),
            }
        )
    path = write_result(name, {"command": " ".join(sys.argv), "rows": rows})
    print(f"wrote {path}")
    header = ["model", "seed", "epochs", "wall time", "train acc", "test acc", "paper"]
    cells = [
        [
            r["model"] + "".join(f" {k}={v}" for k, v in r["options"].items()),
            r["seed"],
            r["epochs"],
            f"{r['wall_s']:.0f} s",
            f"{r['train_accuracy']:.4f}",
            f"{r['test_accuracy']:.4f}",
            r["paper"],
        ]
        for r in rows
    ]
    print(markdown_table(header, cells))


if __name__ == "__main__":
    main()
