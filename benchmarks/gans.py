"""Leaderboard: all ten GAN variants under one equal budget, judged by the zoo's cnn.

    .venv/bin/python benchmarks/gans.py [--epochs 1] [--classifier RUN]

Each variant trains ``--epochs`` epochs on the 60,000 training images (batch 64, the
reference settings); then ``zoo eval`` draws 10,000 samples and reports the Fréchet
distance and classifier score in the feature space of a trained cnn run (default: the
cnn recorded by benchmarks/classifiers.py), plus conditional accuracy where it applies.
Writes benchmarks/results/gans.json and copies each final grid to
benchmarks/results/gans/<name>.png for docs/RESULTS.md.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, markdown_table, write_result

import zoo

NAMES = ("gan", "cgan", "infogan", "acgan", "ebgan", "began", "wgan", "wgan_gp", "dragan", "lsgan")


@click.command()
@click.option("--epochs", default=1, show_default=True)
@click.option("--max-steps", type=int, help="Budget in steps instead of whole epochs.")
@click.option("--names", default=",".join(NAMES), show_default=True)
@click.option("--classifier", help="cnn run for the features (default: classifiers.json's).")
@click.option("--samples", default=10000, show_default=True)
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--name", "result_name", default="gans", show_default=True, help="Result file.")
def main(
    epochs: int,
    max_steps: int | None,
    names: str,
    classifier: str | None,
    samples: int,
    out: str,
    result_name: str,
) -> None:
    if classifier is None:
        rows = json.loads((RESULTS / "classifiers.json").read_text())["rows"]
        classifier = next(r["run"] for r in rows if r["model"] == "cnn")
    grids = RESULTS / "gans"
    grids.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names.split(","):
        started = time.perf_counter()
        result = zoo.run(name, epochs=epochs, max_steps=max_steps, out=out, progress=False)
        train_s = time.perf_counter() - started
        metrics = zoo.evaluate(result.path, classifier=classifier, samples=samples)
        last_grid = sorted((result.path / "samples").glob("epoch_*.png"))[-1]
        shutil.copyfile(last_grid, grids / f"{name}.png")
        rows.append(
            {
                "name": name,
                "run": str(result.path),
                "epochs": epochs,
                "seconds_per_epoch": round(
                    sum(r["seconds"] for r in result.history) / len(result.history), 1
                ),
                "wall_s": round(train_s, 1),
                "images_per_s": result.history[-1]["images_per_s"],
                "frechet_distance": metrics["frechet_distance"],
                "classifier_score": metrics["classifier_score"],
                "conditional_accuracy": metrics.get("conditional_accuracy"),
                "real_classifier_score": metrics["real_classifier_score"],
            }
        )
    payload = {
        "command": " ".join(sys.argv),
        "classifier": classifier,
        "samples": samples,
        "rows": rows,
    }
    print(f"wrote {write_result(result_name, payload)}")
    cells = [
        [
            r["name"],
            f"{r['frechet_distance']:.3f}",
            f"{r['classifier_score']:.2f}",
            "-" if r["conditional_accuracy"] is None else f"{r['conditional_accuracy']:.3f}",
            f"{r['seconds_per_epoch']:.0f}",
            f"![{r['name']}](../benchmarks/results/gans/{r['name']}.png)",
        ]
        for r in sorted(rows, key=lambda r: r["frechet_distance"])
    ]
    print(
        markdown_table(
            [
                "variant",
                "Fréchet distance",
                "classifier score",
                "conditional accuracy",
                "s/epoch",
                "final grid",
            ],
            cells,
        )
    )


if __name__ == "__main__":
    main()
