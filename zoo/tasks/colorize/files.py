"""`zoo colorize`: image files in, colourised PNGs and a side-by-side sheet out.

Each file is read on its own, so one bad file is reported and the rest still get
coloured. For every input ``NAME.ext`` the output folder gets ``NAME.png`` (28x28, what
the model made), ``NAME_xS.png`` (the same, scaled up S times so a person can see it)
and, for the whole call, ``sheet.png``: original, model input and result side by side.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from zoo.core.errors import ZooError

THUMB = 28  # sheet cells are THUMB * scale pixels square


@attrs.frozen
class ColorizeResult:
    outputs: list[Path]  # the 28x28 PNGs, in input order (failed inputs skipped)
    failures: list[tuple[str, str]]  # (input, one-line reason)
    sheet: Path | None


def colorize_files(
    plugin: Any,
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    color: tuple[float, float, float] | None = None,
    scale: int = 8,
) -> ColorizeResult:
    """Colourise image files with a loaded colorizer plugin (see module docstring)."""
    import torch
    from PIL import Image

    from zoo.core.data import to_float
    from zoo.reports.plots import to_pil
    from zoo.tasks.colorize.images import load_garment

    out = Path(out)
    taken = {Path(path).resolve() for path in paths}
    sheet_path = out / "sheet.png"
    for number in range(2, len(paths) + 3):  # never over an input
        if sheet_path.resolve() not in taken:
            break
        sheet_path = out / f"sheet_{number}.png"
    taken.add(sheet_path.resolve())
    grays, originals, names, failures = [], [], [], []
    for path in paths:
        try:
            gray, original = load_garment(path)
            grays.append(gray)
            originals.append(original)
        except ZooError as error:
            failures.append((str(path), str(error)))
            continue
        names.append(_unique_name(Path(path), out, scale, taken))
    if not grays:
        return ColorizeResult([], failures, None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ZooError(f"cannot create {out}: {error.strerror or error}") from None

    gray = to_float(torch.stack(grays).to(plugin.device), plugin.pixel_range)
    colors = None
    if color is not None:
        colors = torch.tensor([color], device=plugin.device).expand(len(gray), 3)
    with torch.no_grad():
        rgb = ((plugin.colorize(gray, colors).float() + 1) / 2).clamp(0, 1).cpu()

    outputs = []
    for name, image in zip(names, rgb, strict=True):
        small = to_pil(image)
        outputs.append(_save(small, out / f"{name}.png"))
        large = small.resize((THUMB * scale,) * 2, Image.Resampling.NEAREST)
        _save(large, out / f"{name}_x{scale}.png")
    sheet = _save(_sheet(originals, grays, rgb, scale), sheet_path)
    return ColorizeResult(outputs, failures, sheet)


def _unique_name(path: Path, out: Path, scale: int, taken: set[Path]) -> str:
    """The input's stem, numbered where its two output files would hit a file already
    taken: another output, sheet.png or any input (inputs are never overwritten)."""
    base = path.stem or "image"
    name, number = base, 1
    while True:
        files = {(out / f"{name}.png").resolve(), (out / f"{name}_x{scale}.png").resolve()}
        if not files & taken:
            taken |= files
            return name
        number += 1
        name = f"{base}_{number}"


def _save(image, path: Path) -> Path:
    from zoo.reports.plots import save_image

    try:
        save_image(image, path)
    except OSError as error:
        raise ZooError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def _sheet(originals, grays, rgb, scale: int):
    """One row per image: the original (fitted), the 28x28 gray input, the result."""
    from PIL import Image, ImageOps

    from zoo.reports.plots import to_pil

    cell, gap = THUMB * scale, 4
    sheet = Image.new("RGB", (3 * cell + 4 * gap, len(grays) * (cell + gap) + gap), "white")
    for row, (original, gray, image) in enumerate(zip(originals, grays, rgb, strict=True)):
        top = gap + row * (cell + gap)
        fitted = ImageOps.pad(original, (cell, cell), color="white")
        sheet.paste(fitted, (gap, top))
        gray_image = Image.fromarray(gray.numpy()).convert("RGB")
        for column, picture in ((1, gray_image), (2, to_pil(image))):
            enlarged = picture.resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(enlarged, (column * (cell + gap) + gap, top))
    return sheet
