"""The recipe of zoo's pinned evaluator (zoo/tasks/generate/feature_network.py): train,
test and write it.

    .venv/bin/python benchmarks/evaluator.py [--epochs 12] [--out FILE] [--force]

Fixed seed, fp32 throughout, all 60,000 training images, AdamW with a one-cycle learning
rate, random shifts of up to 2 pixels (garments are centred, but generated ones need not
be exactly); no flips, since Fashion-MNIST's shoes all point one way and a feature
network blind to direction would not see a generator get it wrong. It writes the
weights as safetensors (metadata: name, recipe, test accuracy) and
benchmarks/results/evaluator.json; releasing them means copying the file into
zoo/tasks/generate/weights and its SHA-256 into ``PINNED`` in zoo/tasks/generate/feature_network.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_result

from zoo.core import data
from zoo.tasks.generate.feature_network import PINNED, FeatureNetwork, file_sha256

SHIFT = 2  # pixels, each way


def shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random offset of up to SHIFT pixels; the uncovered
    border is background (-1)."""
    n, _, height, width = images.shape
    padded = F.pad(images, (SHIFT,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * SHIFT + 1, (2, n, 1), generator=generator)
    rows = (dy + torch.arange(height))[:, :, None]
    cols = (dx + torch.arange(width))[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def accuracy(network: FeatureNetwork, split: data.Split) -> float:
    network.eval()
    correct = 0
    with torch.no_grad():
        for batch in data.iterate_batches(split, 1000, PINNED.pixel_range, shuffle=False):
            correct += int((network(batch.images).argmax(1) == batch.labels).sum())
    return correct / len(split)


def train(epochs: int, batch_size: int, lr: float, seed: int) -> tuple[FeatureNetwork, list]:
    torch.manual_seed(seed)
    fmnist = data.load()
    network = FeatureNetwork().to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * -(-len(fmnist.train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    order, noise = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    history = []
    for epoch in range(1, epochs + 1):
        network.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        for batch in data.iterate_batches(
            fmnist.train, batch_size, PINNED.pixel_range, generator=order, drop_singleton=True
        ):
            images = shifted(batch.images, noise).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(network(images), batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, seen = total + float(loss.detach()) * len(batch), seen + len(batch)
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch,
            "train_loss": round(total / seen, 4),
            "test_accuracy": accuracy(network, fmnist.test),
            "seconds": round(seconds, 1),
        }
        history.append(record)
        print(
            f"epoch {epoch}/{epochs}  loss {record['train_loss']:.4f}  test accuracy "
            f"{record['test_accuracy']:.4f}  {seen / seconds:.0f} img/s  "
            f"ETA {seconds * (epochs - epoch) / 60:.1f} min",
            flush=True,
        )
    return network.to(memory_format=torch.contiguous_format), history


@click.command()
@click.option("--epochs", default=12, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--lr", default=3e-3, show_default=True, help="Peak of the one-cycle schedule.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=str(PINNED.path), show_default=True, type=click.Path())
@click.option("--force", is_flag=True, help="Overwrite an existing weights file.")
def main(epochs: int, batch_size: int, lr: float, seed: int, out: str, force: bool) -> None:
    from safetensors.torch import save_file

    path = Path(out)
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to replace it")
    torch.set_float32_matmul_precision("highest")
    network, history = train(epochs, batch_size, lr, seed)
    state = {k: v.contiguous() for k, v in network.state_dict().items()}
    metadata = {
        "name": PINNED.name,
        "recipe": f"benchmarks/evaluator.py --epochs {epochs} --batch-size {batch_size} "
        f"--lr {lr} --seed {seed}",
        "test_accuracy": f"{history[-1]['test_accuracy']:.4f}",
        "torch": torch.__version__,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    digest = file_sha256(path)
    result = {"command": " ".join(sys.argv), **metadata, "sha256": digest, "history": history}
    if path.resolve() == PINNED.path:  # the release: its record sits with the results
        record = write_result("evaluator", result)
    else:  # a trial: its record beside its weights, the release's left as it is
        record = path.with_suffix(".json")
        record.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes), sha256 {digest}, and {record}")


if __name__ == "__main__":
    main()
