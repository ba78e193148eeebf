"""Does bf16 keep quality? The cnn after the same steps in fp32 and in bf16 autocast.

    .venv/bin/python benchmarks/precision.py [--steps 300 --seeds 0,1]

Same seed, data order and step count for both precisions; the test accuracy is measured
on all 10,000 test images in the precision the run trained in. Also records the
training images/s of each, which shows whether this CPU has fast bf16 at all.
Writes benchmarks/results/precision.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_result

import zoo


@click.command()
@click.option("--steps", default=300, show_default=True)
@click.option("--seeds", default="0,1", show_default=True)
@click.option("--out", default="runs/benchmarks", show_default=True)
def main(steps: int, seeds: str, out: str) -> None:
    import torch

    from zoo.devices import bf16_is_fast

    rows = []
    for seed in (int(s) for s in seeds.split(",")):
        for precision in ("fp32", "bf16"):
            result = zoo.run(
                "cnn", max_steps=steps, seed=seed, precision=precision, out=out, progress=False
            )
            record = result.history[-1]
            rows.append(
                {
                    "seed": seed,
                    "precision": precision,
                    "run": str(result.path),
                    "steps": record["step"],
                    "images_per_s": record["images_per_s"],
                    "test_accuracy": record["test_accuracy"],
                }
            )
    write_result(
        "precision",
        {
            "command": " ".join(sys.argv),
            "bf16_hardware": bf16_is_fast(torch.device("cpu")),
            "rows": rows,
        },
    )
    cells = [
        [r["seed"], r["precision"], r["steps"], f"{r['images_per_s']:.0f}", r["test_accuracy"]]
        for r in rows
    ]
    print(markdown_table(["seed", "precision", "steps", "images/s", "test accuracy"], cells))


if __name__ == "__main__":
    main()
