"""Colorizer benchmark: the GAN against its baselines on the 10,000 unseen test images.

    .venv/bin/python benchmarks/colorizer.py [--epochs 3]
    .venv/bin/python benchmarks/colorizer.py --rows l1_only,gan --epochs 22 \
        --max-steps 20000 --name colorizer_20k --out runs/benchmarks/colorizer_20k

Rows: gray copied into R, G and B (no training); the same U-Net trained on L1 alone
(``--adversarial-weight 0``); the GAN (adversarial + L1, the default); and the
colour-conditioned GAN (``--mode color``, judged on requested colours). Every trained
row has the same budget. Writes benchmarks/results/NAME.json, copies each final
epoch sheet to benchmarks/results/NAME/<row>.png, and colours one garment per
class in six requested colours (colorizer/requested_colors.png).

``--rows`` picks rows. Each trained row trains in its own folder, OUT/<row>/, and a
re-run with the same command resumes each row's newest checkpoint there (``--resume
auto``), so a budget of hours (the paper's 20,000 iterations) can span several sittings;
Ctrl-C checkpoints the running row. The table also gives the colour accuracy per
class, each row's loss curve is copied beside its sheet (NAME/<row>_loss.png), and
NAME/test_curves.png draws every trained row's test L1 and PSNR after each epoch.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, budget_reached, markdown_table, write_result

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
@click.option("--rows", "row_names", default="gray_copy," + ",".join(ROWS), show_default=True,
              help="Comma-separated rows to run.")  # fmt: skip
@click.option("--epochs", default=3, show_default=True)
@click.option("--max-steps", type=int, help="Budget in steps instead of whole epochs.")
@click.option("--test-size", type=int, help="Evaluate on the first N test images.")
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--name", "result_name", default="colorizer", show_default=True)
def main(
    row_names: str,
    epochs: int,
    max_steps: int | None,
    test_size: int | None,
    out: str,
    result_name: str,
) -> None:
    wanted = [name.strip() for name in row_names.split(",") if name.strip()]
    unknown = sorted(set(wanted) - {"gray_copy", *ROWS})
    if unknown:
        raise click.BadParameter(f"unknown row {unknown[0]} (rows: gray_copy, {', '.join(ROWS)})")
    sheets = RESULTS / result_name  # colorizer/ for the default name
    sheets.mkdir(parents=True, exist_ok=True)
    rows = []
    if "gray_copy" in wanted:
        rows.append({"row": "gray_copy", "run": None, **gray_copy_row(test_size)})
    for row, options in ROWS.items():
        if row not in wanted:
            continue
        started = time.perf_counter()
        result = _train_row(row, options, epochs, max_steps, test_size, out)
        wall = time.perf_counter() - started
        history = result.history
        train_s = sum(r["seconds"] for r in history)
        metrics = zoo.evaluate(result.path)
        last_sheet = sorted((result.path / "samples").glob("epoch_*.png"))[-1]
        shutil.copyfile(last_sheet, sheets / f"{row}.png")
        shutil.copyfile(result.path / "loss.png", sheets / f"{row}_loss.png")
        if options.get("mode") == "color":
            requested_colors_sheet(result.path, sheets / "requested_colors.png")
        rows.append(
            {
                "row": row,
                "run": str(result.path),
                "options": options,
                "epochs": len(history),
                "steps": history[-1]["step"],
                # per whole epoch's steps: a --max-steps budget ends inside an epoch
                "seconds_per_epoch": round(train_s * history[0]["step"] / history[-1]["step"], 1),
                "images_per_s": history[-1]["images_per_s"],
                "wall_s_this_sitting": round(wall, 1),
                "train_s": round(train_s, 1),
                **metrics,
            }
        )
    write_result(result_name, {"command": " ".join(sys.argv), "rows": rows})
    trained = [r for r in rows if r["run"]]
    if trained:
        _test_curves(trained, sheets / "test_curves.png")
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
    print(_per_class_table(rows))


def _train_row(row: str, options: dict, epochs: int, max_steps, test_size, out: str):
    """The row's run in OUT/<row>/: resumed from its newest checkpoint if it has one."""
    from zoo.core.runs import read_run

    folder = Path(out) / row
    budget = {"epochs": epochs, "max_steps": max_steps, "test_size": test_size}
    runs = sorted(p.parent for p in folder.glob("colorizer-*/state.safetensors"))
    if not runs:
        return zoo.run("colorizer", out=str(folder), progress=False, **budget, **options)
    history = read_run(runs[-1]).history
    if budget_reached(history, epochs, max_steps):
        return zoo.RunResult(runs[-1], history[-1])  # done in an earlier sitting
    return zoo.run("colorizer", resume="auto", out=str(folder), progress=False, **budget)


def _test_curves(rows: list[dict], path: Path) -> None:
    """Each trained row's per-epoch test L1 and PSNR against the step: does one catch up?"""
    from zoo.reports.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for row in rows:
        history = zoo.RunResult(Path(row["run"]), {}).history
        steps = [record["step"] for record in history]
        for ax, key in zip(axes, ("test_l1", "test_psnr"), strict=True):
            ax.plot(steps, [record[key] for record in history], marker=".", label=row["row"])
    for ax, label in zip(axes, ("test L1 (lower is better)", "test PSNR dB"), strict=True):
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)
    plt.close(fig)


def _per_class_table(rows: list[dict]) -> str:
    """Colour accuracy per garment class, one column per row."""
    from zoo.core.data import CLASSES

    header = ["class", *(r["row"] for r in rows)]
    cells = [[name, *(f"{r['per_class_color_accuracy'][name]:.3f}" for r in rows)]
             for name in CLASSES]  # fmt: skip
    return markdown_table(header, cells)


if __name__ == "__main__":
    main()
