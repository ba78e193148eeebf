"""Colours and class palettes for colour Fashion-MNIST.

A colour is written the way people write colours: a CSS name (``navy``) or hex
(``#1e90ff``); Pillow's ImageColor parses both, so no colour table lives here. A
palette gives each of the ten classes one colour. The default follows the paper
(ankle boots brown, dresses red) and gives the other classes distinct hues.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from zoo.core.data import CLASSES, parse_label
from zoo.core.errors import ConfigError

RGB = tuple[float, float, float]  # each channel in [0, 1]

DEFAULT_COLORS: dict[str, str] = {
    "T-shirt/top": "dodgerblue",
    "Trouser": "navy",
    "Pullover": "forestgreen",
    "Dress": "red",  # the paper's example
    "Coat": "orange",
    "Sandal": "gold",
    "Shirt": "darkviolet",
    "Sneaker": "deeppink",
    "Bag": "teal",
    "Ankle boot": "saddlebrown",  # the paper's example
}

# Requested colours for the colour-conditioned mode's evaluation: well apart in RGB.
TEST_COLORS: tuple[str, ...] = (
    "red",
    "orange",
    "gold",
    "limegreen",
    "darkgreen",
    "teal",
    "deepskyblue",
    "navy",
    "darkviolet",
    "deeppink",
    "saddlebrown",
    "white",
)


def parse_color(text: str) -> RGB:
    """``"navy"``, ``"#000080"`` or ``"rgb(0,0,128)"`` -> (r, g, b) in [0, 1]."""
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(str(text).strip())
        if not all(0 <= channel <= 255 for channel in rgb[:3]):
            raise ValueError(f"channel outside 0-255 in {text!r}")
    except ValueError:
        raise ConfigError(
            f"unknown colour '{text}': use a CSS colour name (navy, tomato, ...) or hex "
            "such as #1e90ff"
        ) from None
    return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0)


@attrs.frozen
class Palette:
    """One colour per class, in class-index order, with the names it was written as."""

    colors: tuple[RGB, ...]
    names: tuple[str, ...]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, source: str = "palette") -> Palette:
        """class name (any spelling ``zoo sample --label`` takes) -> colour name or hex."""
        by_index: dict[int, str] = {}
        for key, value in mapping.items():
            try:
                index = parse_label(key)
            except ConfigError as error:
                raise ConfigError(f"{source}: {error}") from None
            if not isinstance(value, str):
                raise ConfigError(
                    f"{source}: the colour of '{key}' must be a name or hex string, not {value!r}"
                )
            by_index[index] = value
        missing = [CLASSES[i] for i in range(len(CLASSES)) if i not in by_index]
        if missing:
            raise ConfigError(
                f"{source}: no colour for {', '.join(repr(m) for m in missing)}; a palette "
                "names all ten classes"
            )
        colors = []
        for index in range(len(CLASSES)):
            try:
                colors.append(parse_color(by_index[index]))
            except ConfigError as error:
                raise ConfigError(f"{source}: {CLASSES[index]}: {error}") from None
        return cls(tuple(colors), tuple(by_index[i] for i in range(len(CLASSES))))

    def tensor(self, device=None):
        """(10, 3) float tensor of the class colours (made once per device: read-only)."""
        return _color_table(self.colors, str(device or "cpu"))

    def to_mapping(self) -> dict[str, str]:
        return dict(zip(CLASSES, self.names, strict=True))


@functools.cache
def _color_table(colors: tuple[tuple[float, float, float], ...], device: str):
    import torch

    return torch.tensor(colors, dtype=torch.float32, device=device)


def test_color_table(device=None):
    """(len(TEST_COLORS), 3) tensor of the colours requested of test image i, in turn."""
    return _color_table(tuple(parse_color(c) for c in TEST_COLORS), str(device or "cpu"))


@functools.cache
def default_palette() -> Palette:
    """The built-in palette (built on first use: Pillow stays out of `zoo --help`)."""
    return Palette.from_mapping(DEFAULT_COLORS, source="default palette")


def load_palette(path: str | os.PathLike | None) -> Palette:
    """A palette from a TOML file of ``"class name" = "colour"`` lines (or a [palette]
    table); the default palette when ``path`` is empty."""
    if not path:
        return default_palette()
    from zoo.core.config import read_toml

    file = Path(path)
    try:
        table = read_toml(file)
    except ConfigError as error:
        raise ConfigError(str(error).replace("config file", "palette file", 1)) from None
    if isinstance(table.get("palette"), dict):
        table = table["palette"]
    return Palette.from_mapping(table, source=str(file))


def palette_spec(palette: Palette) -> str:
    """The inline form ``"T-shirt/top=dodgerblue; Trouser=navy; ..."`` of a palette."""
    return "; ".join(f"{name}={color}" for name, color in palette.to_mapping().items())


def resolve_palette(text: str | None) -> Palette:
    """Empty: the default palette; ``class=colour; ...``: inline; else a TOML file path."""
    text = (text or "").strip()
    if not text:
        return default_palette()
    if "=" not in text:
        return load_palette(text)
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"palette entry '{item}': write it as class=colour")
        mapping[key.strip()] = value.strip()
    return Palette.from_mapping(mapping, source="inline palette")


def canonical_palette(text: str | None) -> str:
    """Config converter: a palette file becomes its inline form, so a run's config.json
    still describes its palette after the file has moved."""
    if not (text or "").strip():
        return ""
    return palette_spec(resolve_palette(text))
