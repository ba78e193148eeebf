"""Leaderboard: all ten GAN variants under one equal budget, judged by the pinned evaluator.

    .venv/bin/python benchmarks/gans.py [--epochs 1] [--reuse] [--classifier RUN]

Each variant trains ``--epochs`` epochs on the 60,000 training images (batch 64, the
reference settings); then ``zoo eval`` draws 10,000 samples and reports FD, KID and
precision/recall in the features of zoo's pinned evaluator (or of ``--classifier RUN``),
the classifier score and, where it applies, conditional accuracy, with the real-data
floor (10,000 training images against the 10,000 test images) as the last row.
Writes benchmarks/results/gans.json and copies each final grid to
benchmarks/results/gans/<name>.png for docs/RESULTS.md.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, markdown_table, write_result

import zoo
from zoo.core.runs import read_run

NAMES = ("gan", "cgan", "infogan", "acgan", "ebgan", "began", "wgan", "wgan_gp", "dragan", "lsgan")


METRICS = ("frechet_distance", "kid", "kid_std", "precision", "recall", "classifier_score")
FLOOR = ("frechet_distance", "kid", "precision", "recall", "classifier_score")


def _finished_run(out: str, name: str, epochs: int) -> Path | None:
    """The newest run of ``name`` in ``out`` that trained ``epochs`` epochs (--reuse)."""
    for path in sorted(Path(out).glob(f"{name}-*"), reverse=True):
        history = read_run(path).history if (path / "config.json").is_file() else []
        if history and history[-1]["epoch"] == epochs and (path / "model.safetensors").is_file():
            return path
    return None


def _row(name: str, path: Path, epochs: int, metrics: dict) -> dict:
    history = read_run(path).history
    return {
        "name": name,
        "run": str(path),
        "epochs": epochs,
        "seconds_per_epoch": round(sum(r["seconds"] for r in history) / len(history), 1),
        "images_per_s": history[-1]["images_per_s"],
        **{key: metrics[key] for key in METRICS},
        "conditional_accuracy": metrics.get("conditional_accuracy"),
    }


@click.command()
@click.option("--epochs", default=1, show_default=True)
@click.option("--max-steps", type=int, help="Budget in steps instead of whole epochs.")
@click.option("--names", default=",".join(NAMES), show_default=True)
@click.option("--classifier", help="Judge with this classifier run instead of the pinned one.")
@click.option("--samples", default=10000, show_default=True)
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--reuse", is_flag=True, help="Re-evaluate finished runs in --out, train the rest.")
@click.option("--name", "result_name", default="gans", show_default=True, help="Result file.")
def main(
    epochs: int,
    max_steps: int | None,
    names: str,
    classifier: str | None,
    samples: int,
    out: str,
    reuse: bool,
    result_name: str,
) -> None:
    grids = RESULTS / "gans"
    grids.mkdir(parents=True, exist_ok=True)
    rows, metrics = [], {}
    for name in names.split(","):
        path = _finished_run(out, name, epochs) if reuse else None
        if path is None:
            path = zoo.run(name, epochs=epochs, max_steps=max_steps, out=out, progress=False).path
        metrics = zoo.evaluate(path, classifier=classifier, samples=samples)
        last_grid = sorted((path / "samples").glob("epoch_*.png"))[-1]
        shutil.copyfile(last_grid, grids / f"{name}.png")
        rows.append(_row(name, path, epochs, metrics))
        print(f"{name}: FD {metrics['frechet_distance']:.4f}", flush=True)
    floor = {key: metrics[f"real_{key}"] for key in FLOOR}
    payload = {
        "command": " ".join(sys.argv),
        "evaluator": metrics["evaluator"],
        "judged_by": metrics["judged_by"],
        "samples": samples,
        "sampling_seed": metrics["sampling_seed"],
        "real_images": metrics["real_images"],
        "real_floor": {**floor, "images": metrics["floor_images"], "split": "train"},
        "rows": rows,
    }
    print(f"wrote {write_result(result_name, payload)}")
    print(markdown_table(*_table(rows, floor)))


def _table(rows: list[dict], floor: dict) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "FD", "KID x 1000", "precision", "recall", "classifier score",
              "conditional accuracy", "s/epoch", "final grid"]  # fmt: skip
    cells = [
        [
            r["name"],
            f"{r['frechet_distance']:.3f}",
            f"{1000 * r['kid']:.2f} ± {1000 * r['kid_std']:.2f}",
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            f"{r['classifier_score']:.2f}",
            "-" if r["conditional_accuracy"] is None else f"{r['conditional_accuracy']:.3f}",
            f"{r['seconds_per_epoch']:.0f}",
            f"![{r['name']}](../benchmarks/results/gans/{r['name']}.png)",
        ]
        for r in sorted(rows, key=lambda r: r["frechet_distance"])
    ]
    real = [f"{floor['frechet_distance']:.3f}", f"{1000 * floor['kid']:.2f}"]
    real += [f"{floor[key]:.3f}" for key in ("precision", "recall")]
    cells.append(["real data (floor)", *real, f"{floor['classifier_score']:.2f}", "-", "-", "-"])
    return header, cells


if __name__ == "__main__":
    main()
