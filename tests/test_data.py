"""Fashion-MNIST loading: identical to torchvision, searched in order, checked for damage."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from zoo.core import data
from zoo.core.errors import DataError


def _copy_raw(source: Path, target: Path, *, decompress: bool) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for spec in data.FILES.values():
        found = next(source / n for n in (spec.stem, spec.stem + ".gz") if (source / n).exists())
        raw = gzip.decompress(found.read_bytes()) if found.suffix == ".gz" else found.read_bytes()
        if decompress:
            (target / spec.stem).write_bytes(raw)
        else:
            (target / (spec.stem + ".gz")).write_bytes(gzip.compress(raw, compresslevel=1))
    return target


def test_pixels_and_labels_match_torchvision(fashion_dir, tmp_path):
    from torchvision.datasets import FashionMNIST

    _copy_raw(fashion_dir, tmp_path / "FashionMNIST" / "raw", decompress=True)
    ours = data.load(tmp_path / "FashionMNIST" / "raw")
    for train, split in ((True, ours.train), (False, ours.test)):
        reference = FashionMNIST(str(tmp_path), train=train, download=False)
        assert split.images.dtype == torch.uint8
        assert torch.equal(split.images, reference.data)
        assert torch.equal(split.labels, reference.targets)
    assert len(ours.train) == 60000 and len(ours.test) == 10000


def test_gzip_and_plain_files_load_the_same(fashion_dir, tmp_path):
    plain = data.load(_copy_raw(fashion_dir, tmp_path / "plain", decompress=True))
    zipped = data.load(_copy_raw(fashion_dir, tmp_path / "gz", decompress=False))
    assert torch.equal(plain.test.images, zipped.test.images)
    assert torch.equal(plain.train.labels, zipped.train.labels)


def _linked(source: Path, target: Path) -> Path:
    """A folder holding the four files as links: a competing copy at no cost."""
    target.mkdir(parents=True)
    for spec in data.FILES.values():
        found = next(source / n for n in (spec.stem, spec.stem + ".gz") if (source / n).exists())
        (target / found.name).symlink_to(found.resolve())
    return target


def test_search_order_prefers_env_over_caches(fashion_dir, tmp_path, monkeypatch):
    debian = _linked(fashion_dir, tmp_path / "debian")
    cache = _linked(fashion_dir, tmp_path / "cache" / "zoo" / "FashionMNIST" / "raw")
    mine = _linked(fashion_dir, tmp_path / "mine")
    explicit = _linked(fashion_dir, tmp_path / "explicit")
    monkeypatch.setattr(data, "DEBIAN_DIR", debian)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    assert data.find_data_dir() == cache  # the user cache before Debian's package
    monkeypatch.setenv("ZOO_DATA_DIR", str(mine))
    assert data.find_data_dir() == mine  # the environment before both
    assert data.find_data_dir(explicit) == explicit  # --data-dir before everything
    next(mine.iterdir()).unlink()  # an incomplete folder is passed over
    assert data.find_data_dir() == cache
    next(cache.iterdir()).unlink()
    assert data.find_data_dir() == debian


def test_missing_data_names_every_way_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError) as error:
        data.find_data_dir()
    message = str(error.value)
    for way in (
        "apt-get install dataset-fashion-mnist",
        "--data-dir",
        "ZOO_DATA_DIR",
        "ZOO_DOWNLOAD",
    ):
        assert way in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda raw: raw[: len(raw) // 2], "expected"),  # truncated
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "digest"),  # one pixel altered
        (lambda raw: b"\x00\x00\x08\x01" + raw[4:], "IDX header"),  # wrong magic
    ],
    ids=["truncated", "altered", "bad-header"],
)
def test_damaged_file_is_named(fashion_dir, tmp_path, damage, expected):
    folder = _copy_raw(fashion_dir, tmp_path, decompress=True)
    victim = folder / data.FILES["test_images"].stem
    victim.write_bytes(damage(victim.read_bytes()))
    with pytest.raises(DataError, match=expected) as error:
        data.load(folder)
    assert str(victim) in str(error.value)


def test_batches_cover_the_split_once_in_the_requested_range(fashion_dir):
    split = data.load().test.head(250)
    generator = torch.Generator().manual_seed(0)
    batches = list(data.iterate_batches(split, 64, (-1.0, 1.0), generator=generator))
    assert [len(b) for b in batches] == [64, 64, 64, 58]
    images = torch.cat([b.images for b in batches])
    assert images.shape == (250, 1, 28, 28)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert sorted(torch.cat([b.labels for b in batches]).tolist()) == sorted(split.labels.tolist())


def test_to_float_maps_extremes_to_range():
    pixels = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    assert data.to_float(pixels, (-1.0, 1.0)).flatten().tolist() == [-1.0, 1.0]
    assert data.to_float(pixels, (0.0, 1.0)).flatten().tolist() == [0.0, 1.0]
