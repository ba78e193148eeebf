"""Colorizer benchmark: the GAN against its baselines on the 10,000 unseen test images.

    .venv/bin/python benchmarks/colorizer.py [--epochs 3]

Rows: gray copied into R, G and B (no training); the same U-Net trained on L1 alone
(``--adversarial-weight 0``); the GAN (adversarial + L1, the default); and the
colour-conditioned GAN (``--mode color``, judged on requested colours). Every trained
row has the same budget. Writes benchmarks/results/colorizer.json, copies each final
epoch sheet to benchmarks/results/colorizer/<row>.png, and colours one garment per
class in six requested colours (colorizer/requested_colors.png).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, markdown_table, write_result

import zoo

ROWS = {
    "l1_only": {"adversarial_weight": 0.0},
    "gan": {},
    "gan_color_mode": {"mode": "color"},
}
DEMO_COLORS = ("red", "gold", "limegreen", "deepskyblue", "navy", "deeppink")


def gray_copy_row(test_size: int | None) -> dict:
    import torch

    from zoo.core import data
    from zoo.engine.evaluator import evaluate
    from zoo.tasks.colorize.metrics import ColorizationEvidence
    from zoo_plugins.colorizer.baseline import GrayCopy

    split = data.load().test.head(test_size)
    evidence = ColorizationEvidence(GrayCopy(), split, device=torch.device("cpu"))
    return evaluate(evidence, ["colorization_error", "color_accuracy"])


def requested_colors_sheet(run_dir: Path, path: Path) -> None:
    """Rows: one test garment per class; columns: gray, then each of DEMO_COLORS."""
    import torch

    from zoo.core import data
    from zoo.core.data import to_float
    from zoo.reports.plots import save_grid
    from zoo.tasks.colorize.palette import parse_color

    plugin = zoo.load(run_dir).plugin
    test = data.load().test
    picks = [int(torch.nonzero(test.labels == k)[0]) for k in range(len(data.CLASSES))]
    gray = to_float(test.images[picks], plugin.pixel_range)
    columns = [gray.expand(-1, 3, -1, -1)]
    with torch.no_grad():
        for name in DEMO_COLORS:
            colors = torch.tensor([parse_color(name)]).expand(len(picks), 3)
            columns.append(plugin.colorize(gray, colors))
    grid = torch.stack(columns, dim=1).flatten(0, 1)
    save_grid(grid, path, nrow=len(columns), pixel_range=plugin.pixel_range)


@click.command()
@click.option("--epochs", default=3, show_default=True)
@click.option("--max-steps", type=int, help="Budget in steps instead of whole epochs.")
@click.option("--test-size", type=int, help="Evaluate on the first N test images.")
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--name", "result_name", default="colorizer", show_default=True)
def main(
    epochs: int, max_steps: int | None, test_size: int | None, out: str, result_name: str
) -> None:
    sheets = RESULTS / "colorizer"
    sheets.mkdir(parents=True, exist_ok=True)
    rows = [{"row": "gray_copy", "run": None, **gray_copy_row(test_size)}]
    for row, options in ROWS.items():
        started = time.perf_counter()
        result = zoo.run(
            "colorizer",
            epochs=epochs,
            max_steps=max_steps,
            test_size=test_size,
            out=out,
            progress=False,
            **options,
        )
        wall = time.perf_counter() - started
        history = result.history
        metrics = zoo.evaluate(result.path)
        last_sheet = sorted((result.path / "samples").glob("epoch_*.png"))[-1]
        shutil.copyfile(last_sheet, sheets / f"{row}.png")
        if options.get("mode") == "color":
            requested_colors_sheet(result.path, sheets / "requested_colors.png")
        rows.append(
            {
                "row": row,
                "run": str(result.path),
                "options": options,
                "epochs": len(history),
                "steps": history[-1]["step"],
                "seconds_per_epoch": round(sum(r["seconds"] for r in history) / len(history), 1),
                "images_per_s": history[-1]["images_per_s"],
                "wall_s": round(wall, 1),
                **metrics,
            }
        )
    write_result(result_name, {"command": " ".join(sys.argv), "rows": rows})
    cells = [
        [
            r["row"],
            f"{r['l1']:.4f}",
            f"{r['psnr']:.2f}",
            f"{r['ssim']:.4f}",
            f"{r['color_accuracy']:.4f}",
            f"{r['color_error']:.3f}",
            r.get("seconds_per_epoch", "-"),
        ]
        for r in rows
    ]
    header = ["row", "L1", "PSNR dB", "SSIM", "colour accuracy", "colour error", "s/epoch"]
    print(markdown_table(header, cells))


if __name__ == "__main__":
    main()
