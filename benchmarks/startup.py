"""Time the CLI's start-up: ``zoo --help`` and ``zoo list`` (neither may import torch).

    .venv/bin/python benchmarks/startup.py [--repeat 7]

Reports the first run (cold-ish: page cache may already be warm) and the median of the
repeats, and writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_result

ZOO = str(Path(sys.executable).with_name("zoo"))
COMMANDS = {
    "zoo --help": [ZOO, "--help"],
    "zoo list": [ZOO, "list"],
    "zoo info cnn": [ZOO, "info", "cnn"],
}


def _time(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


@click.command()
@click.option("--repeat", default=7, show_default=True)
def main(repeat: int) -> None:
    rows = []
    for label, argv in COMMANDS.items():
        first = _time(argv)
        times = [_time(argv) for _ in range(repeat)]
        rows.append(
            {
                "command": label,
                "first_s": round(first, 3),
                "median_s": round(statistics.median(times), 3),
                "max_s": round(max(times), 3),
            }
        )
    path = write_result("startup", {"command": " ".join(sys.argv), "rows": rows})
    print(f"wrote {path}")
    cells = [
        [
            f"`{r['command']}`",
            f"{r['first_s']:.3f} s",
            f"{r['median_s']:.3f} s",
            f"{r['max_s']:.3f} s",
        ]
        for r in rows
    ]
    print(markdown_table(["command", "first run", "median", "max"], cells))


if __name__ == "__main__":
    main()
