"""The zoo's training loop against the reference collection's, timed in one run.

    .venv/bin/python benchmarks/speed.py [--steps 30 --windows 5]

Baseline: the networks of the zoo's `gan` and `cnn` trained the way
znxlwm/pytorch-generative-model-collections does: torchvision's FashionMNIST dataset
with per-image PIL transforms (Resize 28, ToTensor, Normalize 0.5/0.5), a DataLoader with
shuffling, fp32, batch 64, and its step order (the GAN's generator runs again for the G
update; D ends in a sigmoid with BCELoss). The zoo side is `zoo bench` of the same
plugins at the same batch size, with each layout / compile setting. Each figure is the
median images/s over timed windows after a warm-up; everything runs in this one process,
one thing at a time. Writes benchmarks/results/speed.json.
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, write_result

import zoo
from zoo.core import data
from zoo.engine.bench import bench

BATCH = 64


def torchvision_dataset(root: Path):
    """torchvision's FashionMNIST over the same IDX files the zoo reads (decompressed)."""
    from torchvision import datasets, transforms

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    source = data.find_data_dir()
    for spec in data.FILES.values():
        target = raw / spec.stem
        if not target.exists():
            gz = source / f"{spec.stem}.gz"
            with gzip.open(gz) if gz.exists() else open(source / spec.stem, "rb") as handle:
                target.write_bytes(handle.read())
    transform = transforms.Compose(
        [transforms.Resize((28, 28)), transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]
    )
    return datasets.FashionMNIST(str(root), train=True, download=False, transform=transform)


def timed(step, loader, steps: int, windows: int, warmup: int) -> list[float]:
    """images/s of ``step(images, labels)`` over ``windows`` windows of ``steps`` batches."""
    batches = _forever(loader)
    for _ in range(warmup):
        step(*next(batches))
    rates = []
    for _ in range(windows):
        started = time.perf_counter()
        for _ in range(steps):
            step(*next(batches))
        rates.append(steps * BATCH / (time.perf_counter() - started))
    return rates


def _forever(loader):
    while True:
        for images, labels in loader:
            if len(images) == BATCH:
                yield images, labels


def reference_gan_step():
    import torch
    from torch import nn

    from zoo_plugins.gans.networks import Discriminator, Generator

    G, D = Generator(62), nn.Sequential(Discriminator(1, 1), nn.Sigmoid())
    g_opt = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    real, fake = torch.ones(BATCH, 1), torch.zeros(BATCH, 1)

    def step(x, _labels):
        z = torch.rand(BATCH, 62)
        d_opt.zero_grad()
        d_loss = bce(D(x), real) + bce(D(G(z)), fake)
        d_loss.backward()
        d_opt.step()
        g_opt.zero_grad()
        g_loss = bce(D(G(z)), real)
        g_loss.backward()
        g_opt.step()
        g_loss.item()  # the reference logs both losses every step
        d_loss.item()

    return step


def reference_cnn_step():
    import torch

    net = zoo.get_plugin("cnn")().build_network()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, labels):
        optimizer.zero_grad()
        loss = loss_fn(net(x), labels)
        loss.backward()
        optimizer.step()
        loss.item()

    return step


@click.command()
@click.option("--steps", default=30, show_default=True, help="Steps per timed window.")
@click.option("--windows", default=5, show_default=True)
@click.option("--warmup", default=5, show_default=True)
@click.option("--plugins", default="gan,cnn", show_default=True)
@click.option("--compile/--no-compile", "try_compile", default=True, help="Also time --compile.")
@click.option("--name", "result_name", default="speed", show_default=True)
def main(
    steps: int, windows: int, warmup: int, plugins: str, try_compile: bool, result_name: str
) -> None:
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as root:
        loader = torch.utils.data.DataLoader(
            torchvision_dataset(Path(root)), batch_size=BATCH, shuffle=True
        )
        for name in plugins.split(","):
            torch.manual_seed(0)
            step = {"gan": reference_gan_step, "cnn": reference_cnn_step}[name]()
            rates = timed(step, loader, steps, windows, warmup)
            baseline = statistics.median(rates)
            rows.append({"plugin": name, "setting": "reference loop", "images_per_s": baseline})
            print(f"{name} reference: {baseline:.0f} img/s", file=sys.stderr)
            settings = [(False, False), (True, False)]
            if try_compile:
                settings += [(False, True), (True, True)]
            for channels_last, compiled in settings:
                prepared = zoo.api.prepare(
                    name,
                    {
                        "batch_size": BATCH,
                        "channels_last": channels_last,
                        "compile": compiled,
                        "device": "cpu",
                    },
                )
                result = bench(
                    prepared.plugin(prepared.config),
                    prepared.settings,
                    steps=steps,
                    windows=windows,
                    warmup=warmup if not compiled else warmup + 5,
                )
                label = (
                    f"zoo {result.precision}"
                    + (", channels-last" if channels_last else "")
                    + (", compile" if compiled else "")
                )
                rows.append(
                    {
                        "plugin": name,
                        "setting": label,
                        **result.to_dict(),
                        "speedup": round(result.images_per_s / baseline, 2),
                    }
                )
                print(f"{name} {label}: {result.images_per_s:.0f} img/s", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    write_result(result_name, {"command": " ".join(sys.argv), "batch_size": BATCH, "rows": rows})
    cells = [
        [
            r["plugin"],
            r["setting"],
            f"{r['images_per_s']:.0f}",
            f"{r['speedup']:.2f}x" if "speedup" in r else "1.00x",
            f"{r['achieved_gflops']:.0f} of {r['peak_gflops']:.0f}" if "peak_gflops" in r else "-",
        ]
        for r in rows
    ]
    print(markdown_table(["plugin", "loop", "images/s", "vs reference", "GFLOP/s"], cells))


if __name__ == "__main__":
    main()
