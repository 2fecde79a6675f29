"""Decoding one image file: any PIL mode to 8-bit RGB, within a pixel budget, damaged files named.

Memory per image stays bounded: a JPEG is decoded at 1/2, 1/4 or 1/8 scale straight from the DCT when that is
enough (PIL's ``draft``), an image still over ``MAX_PIXELS`` is refused with a DatasetError (reported as a skip by
ImageFolder and embed), and extreme aspect ratios are center-cropped to at most ``MAX_ASPECT``:1 before any
resize, so a 20000x1 strip cannot become a 1,280,000-pixel-wide thumbnail.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embedlab.datasets.errors import DatasetError

MAX_PIXELS = 64_000_000  # per decoded image (about 190 MB as RGB); raise it for huge scans
MAX_ASPECT = 8.0  # longer side at most 8x the shorter one; the center is kept


def _scale_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16/32-bit integer or float image to 0..255 by its type's range (8-bit data stays as is)."""
    data = np.nan_to_num(array.astype(np.float64))
    peak = float(data.max()) if data.size else 0.0
    if mode == "F":  # floats: 0..1 images as is, anything else by its maximum
        top = max(1.0, peak)
    else:  # integers: 8-bit data in a wide container stays, 16-bit uses the full 16-bit range
        top = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
    data = data / top * 255.0
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: EXIF rotation applied, transparency on white, 16-bit scaled (not clipped)."""
    if image.getexif().get(0x0112, 1) != 1:  # EXIF Orientation: rotate/flip the pixels upright
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image), mode), mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "1":
        image = image.convert("L")
    return image.convert("RGB")


def _draft_scale(image: Image.Image, size: int | None, max_pixels: int) -> None:
    """Let a JPEG decode at reduced scale: enough for ``size`` px on the short side, and within the budget."""
    if image.format != "JPEG":
        return
    width, height = image.size
    factor = 1
    if size is not None and min(width, height) >= 2 * size:
        factor = min(8, 2 ** int(math.log2(min(width, height) / size)))
    if width * height > max_pixels:  # the smallest power of two that brings it under the budget (at most 8)
        needed = math.sqrt(width * height / max_pixels)
        factor = max(factor, min(8, 2 ** math.ceil(math.log2(needed))))
    if factor > 1:
        image.draft(None, (math.ceil(width / factor), math.ceil(height / factor)))


def _budget_problem(width: int, height: int, max_pixels: int) -> str | None:
    """Why an image of width x height is too large to decode (None when it fits)."""
    if width * height <= max_pixels:
        return None
    return (
        f"{width}x{height} = {width * height / 1e6:.0f} Mpx is over the per-image budget of "
        f"{max_pixels / 1e6:.0f} Mpx (embedlab.datasets.images.MAX_PIXELS)"
    )


def limit_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """Center-crop the longer side to ``max_aspect`` times the shorter one (unchanged when already within)."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short < 1 or long <= max_aspect * short:
        return image
    keep = max(1, int(max_aspect * short))
    offset = (long - keep) // 2
    box = (offset, 0, offset + keep, height) if width > height else (0, offset, width, offset + keep)
    return image.crop(box)


class _OverBudget(Exception):
    """An image is larger than the pixel budget (the message says by how much)."""


def _decode(path: str | os.PathLike[str], size: int | None, budget: int) -> Image.Image:
    """Decode within the budget (JPEG at reduced scale when it helps); PIL's own errors pass through."""
    with Image.open(path) as image:
        _draft_scale(image, size, budget)
        problem = _budget_problem(*image.size, budget)
        if problem:
            raise _OverBudget(problem)
        image.load()
        return limit_aspect(to_rgb(image))


def open_rgb(path: str | os.PathLike[str], size: int | None = None, *, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode an image file as RGB (see to_rgb), within the pixel budget; extreme aspect cropped.

    ``size`` (the short side the caller will resize to) lets a big JPEG decode at reduced scale. A file that
    fails to decode, or is over ``max_pixels`` (default MAX_PIXELS), raises DatasetError naming it.
    """
    try:
        return _decode(path, size, MAX_PIXELS if max_pixels is None else max_pixels)
    except (_OverBudget, Image.DecompressionBombError) as exc:  # too large, not damaged
        raise DatasetError(f"cannot decode image {path}: {exc}; resize the file or raise the budget") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(
            f"cannot decode image {path}: {exc}. The file is damaged: delete or replace it "
            "(verify='full' finds all such files up front)."
        ) from exc


def _probe(path: str, full: bool, max_pixels: int | None = None) -> str | None:
    """Return why ``path`` is not a usable image (None when it is): header and size check, or a full decode."""
    budget = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(path) as image:
            if image.width < 1 or image.height < 1:
                return "image has no pixels"
            scale = 8 if image.format == "JPEG" else 1  # a JPEG can decode at 1/8 scale per side
            problem = _budget_problem(math.ceil(image.width / scale), math.ceil(image.height / scale), budget)
            if problem:
                return problem + (" even at 1/8 scale" if scale > 1 else "")
        if full:
            _decode(path, None, budget)
        return None
    except UnidentifiedImageError:
        return "not an image PIL can read"
    except _OverBudget as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip and report"
        return f"unreadable: {type(exc).__name__}: {exc}"


def _image_extensions() -> frozenset[str]:
    """File extensions PIL can open (lower case, with dot)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _visible(name: str) -> bool:
    """True for names that are not hidden files/folders or macOS archive litter."""
    return not name.startswith(".") and name != "__MACOSX"
