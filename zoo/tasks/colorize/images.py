"""Turn a photo or drawing of a garment into a 28x28 image that looks like Fashion-MNIST.

Fashion-MNIST was made from product photos on a light background by: trimming the
border that has the corner colour, resizing the longest edge to 28, sharpening,
centring on a 28x28 canvas, negating (garment bright, background black) and storing
8-bit gray (Xiao et al. 2017). :func:`read_garment` follows the same steps for any
image Pillow reads (PNG and JPEG above all), of any size or mode:

1. EXIF rotation applied; transparency flattened onto white; converted to gray.
2. The background level is the median of the border pixels. A light background is
   negated so the garment is bright on black; a dark one is kept.
3. Trimmed to the box of pixels more than 5% of the range away from the background.
4. Longest edge resized to 28 (Lanczos), sharpened, centred on a 28x28 canvas.
5. Levels stretched so the background is 0 and the brightest pixel 255.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.core.errors import DataError

if TYPE_CHECKING:
    import torch
    from PIL import Image

SIZE = 28
TRIM_TOLERANCE = 0.05 * 255


def read_garment(path: str | os.PathLike) -> torch.Tensor:
    """uint8 (28, 28) tensor, Fashion-MNIST style, from an image file; DataError if the
    file is missing, not an image or damaged."""
    return _converted(Path(path), _open(Path(path)), to_fashion_mnist)


def open_for_display(path: str | os.PathLike) -> Image.Image:
    """The image as a person sees it: EXIF rotation applied, transparency on white, RGB."""
    return _converted(Path(path), _open(Path(path)), _for_display)


def load_garment(path: str | os.PathLike) -> tuple[torch.Tensor, Image.Image]:
    """:func:`read_garment` and :func:`open_for_display` of one file, read once."""
    path = Path(path)
    image = _open(path)
    return _converted(path, image, to_fashion_mnist), _converted(path, image, _for_display)


def _converted(path: Path, image: Image.Image, convert):
    try:
        return convert(image)
    except (OSError, ValueError) as error:  # e.g. broken EXIF data, odd modes
        raise DataError(f"{path}: cannot convert this image ({error})") from None


def _for_display(image: Image.Image) -> Image.Image:
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "PA"):
        return _flatten_to_gray(image).convert("RGB")
    return _on_white(image).convert("RGB")


def _open(path: Path) -> Image.Image:
    """Read the whole file now, so damage shows here as one DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.copy()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read (use PNG or JPEG)") from None
    except Image.DecompressionBombError:
        raise DataError(f"{path}: too many pixels to be a garment photo") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise DataError(f"{path}: damaged image ({error})") from None


def to_fashion_mnist(image: Image.Image) -> torch.Tensor:
    """The conversion of :func:`read_garment` for an image already in memory."""
    import numpy as np
    import torch
    from PIL import ImageFilter, ImageOps

    gray = _flatten_to_gray(ImageOps.exif_transpose(image))
    pixels = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = float(np.median(border))
    if background > 127.5:
        pixels, background = 255.0 - pixels, 255.0 - background
    rows, cols = np.nonzero(np.abs(pixels - background) > TRIM_TOLERANCE)
    if len(rows):
        pixels = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    pixels = np.clip(pixels - background, 0, None)

    height, width = pixels.shape
    scale = SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = ImageOps.autocontrast(_from_array(pixels))  # 0..255 before resampling
    small = small.resize(size, resample=_lanczos()).filter(ImageFilter.SHARPEN)

    canvas = np.zeros((SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - size[1]) // 2, (SIZE - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = np.asarray(small, dtype=np.float32)
    peak = canvas.max()
    if peak > 0:
        canvas = canvas * (255.0 / peak)
    return torch.from_numpy(np.round(canvas).astype(np.uint8))


def _flatten_to_gray(image: Image.Image) -> Image.Image:

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = _on_white(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float images
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        span = array.max() - array.min()
        array = (array - array.min()) / span * 255 if span else np.zeros_like(array)
        return _from_array(array)
    return image.convert("L")


def _on_white(image: Image.Image) -> Image.Image:
    """RGBA composited onto an opaque white background."""
    from PIL import Image

    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)


def _from_array(array) -> Image.Image:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8), mode="L")


def _lanczos():
    from PIL import Image

    return Image.Resampling.LANCZOS
