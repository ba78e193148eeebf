"""Fashion-MNIST from its standard IDX files, held in memory as uint8 tensors.

Why not torchvision's dataset class: it converts every image through PIL in the hot
loop. Here the whole set is four tensors (about 55 MB), batches are taken by index,
and scaling to float happens on the device, once per batch.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import attrs

from zoo.core.errors import ConfigError, DataError

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


@attrs.frozen
class IdxFile:
    """One of the four files: its name, expected shape and SHA-256 of its decompressed bytes."""

    stem: str
    shape: tuple[int, ...]
    sha256: str


FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte",
        (60000, 28, 28),
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte",
        (60000,),
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte",
        (10000, 28, 28),
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte",
        (10000,),
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}

HOW_TO_GET = (
    "get Fashion-MNIST with `sudo apt-get install dataset-fashion-mnist` "
    f"(installs into {DEBIAN_DIR}), or put the four IDX files (.gz or not) in a folder "
    "and pass --data-dir DIR or set ZOO_DATA_DIR, or set ZOO_DOWNLOAD=1 on a machine "
    "with network access so torchvision downloads it into the user cache"
)


def user_cache_dir() -> Path:
    """Where torchvision downloads the set for the zoo: ``$XDG_CACHE_HOME/zoo``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The folders searched, in order, each with the reason it is searched."""
    found: list[tuple[str, Path]] = []
    if data_dir is not None:
        return [("--data-dir", Path(data_dir))]
    if os.environ.get("ZOO_DATA_DIR"):
        found.append(("ZOO_DATA_DIR", Path(os.environ["ZOO_DATA_DIR"])))
    cache = user_cache_dir()
    found.append(("user cache", cache / "FashionMNIST" / "raw"))
    found.append(("Debian package dataset-fashion-mnist", DEBIAN_DIR))
    return found


def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def find_data_dir(data_dir: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """First folder that holds all four files; else download if allowed; else a DataError."""
    searched = candidate_dirs(data_dir)
    for _, folder in searched:
        if all(_locate(folder, spec.stem) for spec in FILES.values()):
            return folder
    if download and data_dir is None:
        return _download_to_cache()
    where = "; ".join(f"{folder} ({why})" for why, folder in searched)
    raise DataError(f"Fashion-MNIST not found (looked in: {where}); {HOW_TO_GET}")


def _download_to_cache() -> Path:
    try:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        TorchvisionFashionMNIST(str(user_cache_dir()), download=True)
    except Exception as error:  # no network, a proxy, a half-written file...
        raise DataError(f"Fashion-MNIST could not be downloaded ({error}); {HOW_TO_GET}") from None
    return user_cache_dir() / "FashionMNIST" / "raw"


def read_idx(path: Path, spec: IdxFile, *, verify: bool = True) -> bytes:
    """Return the decompressed IDX bytes after checking header, size and digest."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path} is unreadable or truncated ({error}); {HOW_TO_GET}") from None
    ndim = len(spec.shape)
    header = 4 + 4 * ndim
    magic = bytes((0, 0, 0x08, ndim))
    if len(raw) < header or raw[:4] != magic:
        raise DataError(f"{path} does not have an IDX header for {spec.stem}; {HOW_TO_GET}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header + _product(spec.shape)
    if dims != spec.shape or len(raw) != expected_size:
        raise DataError(
            f"{path} has shape {dims} and {len(raw)} bytes, expected {spec.shape} and "
            f"{expected_size} (truncated or not Fashion-MNIST); {HOW_TO_GET}"
        )
    if verify and hashlib.sha256(raw).hexdigest() != spec.sha256:
        raise DataError(
            f"{path} does not match the known Fashion-MNIST digest (altered or corrupt); "
            f"{HOW_TO_GET}"
        )
    return raw[header:]


def _product(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


@attrs.frozen
class Split:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one split."""

    images: object  # torch.Tensor; typed loosely so this module imports without torch
    labels: object

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (all when ``n`` is None): deterministic small subsets."""
        if n is None or n >= len(self):
            return self
        return Split(self.images[:n], self.labels[:n])

    def to(self, device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@attrs.frozen
class FashionMNIST:
    train: Split
    test: Split
    source: Path

    classes: tuple[str, ...] = CLASSES


def download_allowed() -> bool:
    """Downloading is opt-in (``ZOO_DOWNLOAD=1``): offline machines must fail fast, not hang."""
    return os.environ.get("ZOO_DOWNLOAD", "").strip().lower() in ("1", "true", "yes")


def load(
    data_dir: str | os.PathLike | None = None, *, verify: bool = True, download: bool | None = None
) -> FashionMNIST:
    """Load both splits, checked, into memory (cached while the files are unchanged).

    Callers must treat the tensors as read-only: they are shared between loads.
    """
    allowed = download_allowed() if download is None else download
    folder = find_data_dir(data_dir, download=allowed)
    stamps = tuple(
        (str(path), path.stat().st_mtime_ns, path.stat().st_size)
        for path in (_locate(folder, spec.stem) for spec in FILES.values())
    )
    return _load_folder(folder, stamps, verify)


@functools.lru_cache(maxsize=2)
def _load_folder(folder: Path, stamps: tuple, verify: bool) -> FashionMNIST:
    import torch

    arrays = {}
    for key, spec in FILES.items():
        payload = read_idx(_locate(folder, spec.stem), spec, verify=verify)
        tensor = torch.frombuffer(bytearray(payload), dtype=torch.uint8).reshape(spec.shape)
        arrays[key] = tensor.long() if key.endswith("labels") else tensor
    return FashionMNIST(
        train=Split(arrays["train_images"], arrays["train_labels"]),
        test=Split(arrays["test_images"], arrays["test_labels"]),
        source=folder,
    )


@attrs.frozen
class Batch:
    """What a plugin's train_step receives: float images in its pixel range, and labels."""

    images: object
    labels: object

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def to_float(images, pixel_range: tuple[float, float]):
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) scaled to ``pixel_range``."""
    low, high = pixel_range
    scaled = images.unsqueeze(1).float() * ((high - low) / 255.0)
    return scaled + low if low else scaled


def iterate_batches(
    split: Split,
    batch_size: int,
    pixel_range: tuple[float, float],
    *,
    generator=None,
    shuffle: bool = True,
    drop_singleton: bool = False,
    shard: tuple[int, int] = (0, 1),
    skip: int = 0,
) -> Iterator[Batch]:
    """Batches by index from an in-memory split (already on its device).

    The last, smaller batch is kept, unless it holds one image and ``drop_singleton`` is
    set. Shuffling draws from ``generator`` on the CPU, so the order is the same whatever
    the device. ``shard=(rank, size)`` keeps every size-th image of that order, starting
    at rank: with the same generator on every process, the shards split each epoch
    evenly and without overlap. ``skip`` leaves out the first batches of that order (a
    run resumed in the middle of an epoch)."""
    import torch

    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    rank, size = shard
    if size > 1:
        order = order[rank : (n // size) * size : size]
        n = len(order)
    order = order.to(split.images.device)
    for start in range(skip * batch_size, n, batch_size):
        index = order[start : start + batch_size]
        if drop_singleton and len(index) == 1 and n > 1:
            break  # batch norm cannot train on one image
        yield Batch(to_float(split.images[index], pixel_range), split.labels[index])


def parse_label(label: str | int) -> int:
    """A class index (0-9) or a class name such as ``"Ankle boot"`` or ``ankle-boot``."""
    if isinstance(label, int) or str(label).strip().isdigit():
        index = int(label)
        if 0 <= index < len(CLASSES):
            return index
        raise ConfigError(f"label {label}: class indices are 0 to {len(CLASSES) - 1}")
    wanted = _simplify(str(label))
    for index, name in enumerate(CLASSES):
        if wanted in (_simplify(name), _simplify(name.split("/")[0])):
            return index
    raise ConfigError(f"unknown class '{label}' (one of: {', '.join(CLASSES)}, or 0-9)")


def _simplify(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())
