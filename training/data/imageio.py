"""Read the image and label files of change-detection datasets as numpy arrays, rows first.

The decoder is chosen from the file's first bytes, not its extension (one DSIFN ``.png`` is a
JPEG): PNG, JPEG, BMP, GIF and WebP go through PIL; TIFF through PIL when PIL can represent it
and rasterio otherwise; anything else (ENVI, other GDAL formats) through rasterio, imported only
when needed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from backend.errors import InputError, RasterError

_PIL_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# PIL modes whose pixels are not stored values: convert to a mode that is.
_CONVERT = {"1": "L", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB", "PA": "RGBA"}


def sniff(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its first bytes: png, jpeg, bmp, gif, webp, tiff or other."""
    try:
        with Path(path).open("rb") as handle:
            head = handle.read(12)
    except FileNotFoundError as exc:
        raise RasterError(f"Image file {path} does not exist. Check the dataset folder.") from exc
    except OSError as exc:
        raise RasterError(f"Cannot read image file {path}: {exc.strerror or exc}.") from exc
    for magic, kind in _PIL_MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in _TIFF_MAGIC:
        return "tiff"
    return "other"


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Every band of an image file as ``(bands, h, w)`` in the file's own data type.

    Grey images give 1 band, grey+alpha 2, RGB 3, RGBA 4; palette images are expanded to their
    colours; 1-bit images become uint8 0/255.

    Raises:
        RasterError: The file is missing or no reader understands it.
    """
    kind = sniff(path)
    if kind != "other":
        pil = _read_pil(path, keep_palette=False, strict=kind != "tiff")
        if pil is not None:
            return pil
    return _read_rasterio(path)


def read_rgb(path: str | os.PathLike[str], bands: Sequence[int] | None = None) -> np.ndarray:
    """Three bands ``(3, h, w)`` in the file's data type: grey repeated, alpha dropped.

    Args:
        path: The image file.
        bands: 1-based band numbers for red, green and blue (e.g. ``(3, 2, 1)`` for Landsat TM);
            needed for files with more than four bands.

    Raises:
        InputError: The file has more than four bands and ``bands`` is not given, or a band
            number is out of range.
    """
    data = read_image(path)
    count = data.shape[0]
    if bands is not None:
        if len(bands) != 3 or not all(1 <= b <= count for b in bands):
            raise InputError(f"bands={tuple(bands)} for {path}: give three band numbers between 1 and {count}.")
        return np.ascontiguousarray(data[[b - 1 for b in bands]])
    if count in (1, 2):  # grey, grey + alpha
        return np.repeat(data[:1], 3, axis=0)
    if count in (3, 4):  # RGB, RGBA
        return data[:3]
    raise InputError(
        f"{path} has {count} bands; say which are red, green and blue (read_rgb(path, bands=(r, g, b)), 1-based)."
    )


def read_label(path: str | os.PathLike[str]) -> np.ndarray:
    """A label image as ``(h, w)`` uint8: the first band, or the maximum over the colour bands of an RGB label.

    Palette PNGs give their palette indices (0/1 labels stay 0/1). Other data types are clipped
    into 0..255.
    """
    kind = sniff(path)
    data = _read_pil(path, keep_palette=True, strict=kind != "tiff") if kind != "other" else None
    if data is None:
        data = _read_rasterio(path)
    label: np.ndarray = data[:3].max(axis=0) if data.shape[0] in (3, 4) else data[0]
    if label.dtype != np.uint8:
        label = np.clip(label, 0, 255).astype(np.uint8)
    return label


def _read_pil(path: str | os.PathLike[str], *, keep_palette: bool, strict: bool) -> np.ndarray | None:
    """Decode with PIL; None when PIL cannot represent the file and ``strict`` is False (rasterio's turn)."""
    try:
        with Image.open(path) as opened:
            opened.load()
            img: Image.Image = opened
            if img.mode == "P" and not keep_palette:
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in _CONVERT:
                img = img.convert(_CONVERT[img.mode])
            array = np.asarray(img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if not strict:
            return None
        raise RasterError(f"Cannot decode image file {path}: {exc}. Is it a complete image?") from exc
    if array.ndim == 2:
        return array[None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _read_rasterio(path: str | os.PathLike[str]) -> np.ndarray:
    try:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    except ImportError as exc:  # pragma: no cover - rasterio is a dependency of the backend
        raise RasterError(f"{path} needs rasterio to be read, and rasterio is not installed.") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain images need no georeference here
            with rasterio.open(path) as src:
                data: np.ndarray = src.read()
    except RasterioIOError as exc:
        raise RasterError(f"Cannot read image file {path}: {exc}. Use PNG, JPEG, TIFF or a GDAL format.") from exc
    return data
