"""Does bf16 keep quality? A plugin after the same steps in fp32 and in bf16 autocast.

    .venv/bin/python benchmarks/precision.py [--plugin cnn --steps 300 --seeds 0,1]
    python benchmarks/precision.py --plugin gan --epochs 1 --seeds 0,1,2 --device cuda
    .venv/bin/python benchmarks/precision.py --plugin gan --epochs 1 --seeds 0,1,2 \
        --variants fp32,bf16,bf16-fp32=generator,bf16-fp32=discriminator

Same seed, data order and step count for both precisions; every evaluation runs in
fp32, so the difference comes from training. The cnn is judged by its test accuracy on
all 10,000 test images; the gan by the Fréchet distance of 10,000 samples to the test
images in the pinned evaluator's features (or those of ``--classifier RUN``), so that
bf16's FD can be set against the fp32 seed-to-seed spread. ``--variants`` adds mixed
settings: bf16 with some networks kept in fp32 (``--fp32-modules``), to find which
network needs fp32. Also records the training
images/s of each, which shows whether the hardware has fast bf16 at all. Writes
benchmarks/results/NAME.json (default precision[_PLUGIN]).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_result

import zoo


@click.command()
@click.option("--plugin", type=click.Choice(["cnn", "gan"]), default="cnn", show_default=True)
@click.option("--steps", type=int, help="Optimizer steps per run (default: 300 for the cnn).")
@click.option("--epochs", type=int, help="Full epochs per run instead of --steps.")
@click.option("--seeds", default="0,1", show_default=True)
@click.option(
    "--variants",
    default="fp32,bf16",
    show_default=True,
    help="Comma-separated: fp32, bf16, or bf16 with networks kept in fp32, e.g. "
    "bf16-fp32=generator (several: bf16-fp32=generator+discriminator).",
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--classifier", help="gan: judge in this cnn run's features, not the pinned ones.")
@click.option("--out", default="runs/benchmarks", show_default=True)
@click.option("--name", help="Result file name (default: precision, precision_gan).")
def main(
    plugin: str,
    steps: int | None,
    epochs: int | None,
    seeds: str,
    variants: str,
    device: str,
    classifier: str | None,
    out: str,
    name: str | None,
) -> None:
    from zoo.engine.devices import bf16_is_fast, resolve_device

    if steps is None and epochs is None:
        steps = 300
    budget = {"max_steps": steps} if epochs is None else {"epochs": epochs, "max_steps": steps}
    rows = []
    names = [v.strip() for v in variants.split(",") if v.strip()]
    for seed in (int(s) for s in seeds.split(",")):
        for precision in names:
            result = zoo.run(
                plugin,
                **budget,
                **_variant(precision),
                seed=seed,
                device=device,
                out=out,
                progress=False,
            )
            record = result.history[-1]
            row = {
                "seed": seed,
                "precision": precision,
                "run": str(result.path),
                "steps": record["step"],
                "images_per_s": record["images_per_s"],
            }
            if plugin == "cnn":
                row["test_accuracy"] = record["test_accuracy"]
            else:
                metrics = zoo.evaluate(result.path, device=device, classifier=classifier)
                row["frechet_distance"] = metrics["frechet_distance"]
                row["classifier_score"] = metrics["classifier_score"]
            rows.append(row)
    metric = "test_accuracy" if plugin == "cnn" else "frechet_distance"
    spread = {
        p: [
            min(r[metric] for r in rows if r["precision"] == p),
            max(r[metric] for r in rows if r["precision"] == p),
        ]
        for p in names
    }
    write_result(
        name or ("precision" if plugin == "cnn" else f"precision_{plugin}"),
        {
            "command": " ".join(sys.argv),
            "plugin": plugin,
            "classifier": classifier,
            "bf16_hardware": bf16_is_fast(resolve_device(device)),
            "range": spread,
            "rows": rows,
        },
    )
    cells = [
        [r["seed"], r["precision"], r["steps"], f"{r['images_per_s']:.0f}", f"{r[metric]:.4f}"]
        for r in rows
    ]
    print(markdown_table(["seed", "precision", "steps", "images/s", metric], cells))
    for precision, (low, high) in spread.items():
        print(f"{precision}: {metric} from {low:.4f} to {high:.4f} across seeds")


def _variant(name: str) -> dict:
    """'bf16-fp32=generator+discriminator' -> bf16 with those networks in fp32."""
    precision, _, kept = name.partition("-fp32=")
    return {"precision": precision, "fp32_modules": tuple(filter(None, kept.split("+")))}


if __name__ == "__main__":
    main()
