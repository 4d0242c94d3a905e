"""training.data.imageio: format sniffing, band counts, data types, labels and the rasterio fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from backend.errors import InputError, RasterError
from tests.rasters import write_raster
from training.data.imageio import read_image, read_label, read_rgb, sniff

RNG = np.random.default_rng(0)


def _rgb(h: int = 12, w: int = 10) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_jpeg_named_png_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "0.png"
    Image.fromarray(_rgb()).save(path, format="JPEG")
    assert sniff(path) == "jpeg"
    image = read_image(path)
    assert image.shape == (3, 12, 10) and image.dtype == np.uint8


@pytest.mark.parametrize(
    ("fmt", "kind"), [("PNG", "png"), ("JPEG", "jpeg"), ("BMP", "bmp"), ("WEBP", "webp"), ("TIFF", "tiff")]
)
def test_sniff_and_read_rgb_formats(tmp_path: Path, fmt: str, kind: str) -> None:
    data = _rgb()
    path = tmp_path / "image.bin"  # the extension says nothing
    Image.fromarray(data).save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    assert sniff(path) == kind
    image = read_rgb(path)
    assert image.shape == (3, 12, 10) and image.dtype == np.uint8
    if fmt != "JPEG":
        assert np.array_equal(image, data.transpose(2, 0, 1))


def test_grey(tmp_path: Path) -> None:
    grey = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").shape == (1, 5, 7)
    rgb = read_rgb(tmp_path / "g.png")
    assert rgb.shape == (3, 5, 7) and all(np.array_equal(band, grey) for band in rgb)


def test_grey_with_alpha(tmp_path: Path) -> None:
    data = RNG.integers(0, 256, (5, 7, 2), dtype=np.uint8)
    Image.fromarray(data, mode="LA").save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").shape == (2, 5, 7)
    assert np.array_equal(read_rgb(tmp_path / "la.png"), np.repeat(data[None, :, :, 0], 3, axis=0))


def test_rgba(tmp_path: Path) -> None:
    data = RNG.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    Image.fromarray(data, mode="RGBA").save(tmp_path / "rgba.png")
    assert read_image(tmp_path / "rgba.png").shape == (4, 6, 4)
    assert np.array_equal(read_rgb(tmp_path / "rgba.png"), data[..., :3].transpose(2, 0, 1))
    assert np.array_equal(read_label(tmp_path / "rgba.png"), data[..., :3].max(axis=2))


def test_sixteen_bit_png_keeps_its_dtype(tmp_path: Path) -> None:
    data = RNG.integers(0, 65536, (5, 6), dtype=np.uint16)
    Image.fromarray(data).save(tmp_path / "u16.png")
    image = read_image(tmp_path / "u16.png")
    assert image.dtype == np.uint16 and np.array_equal(image[0], data)


def test_one_bit_png_is_0_255(tmp_path: Path) -> None:
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "bits.png")
    image = read_image(tmp_path / "bits.png")
    assert image.dtype == np.uint8 and set(np.unique(image).tolist()) == {0, 255}


def test_palette_label_gives_indices_and_image_gives_colours(tmp_path: Path) -> None:
    indices = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    img = Image.fromarray(indices, mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    img.save(tmp_path / "p.png")
    assert np.array_equal(read_label(tmp_path / "p.png"), indices)
    colours = read_image(tmp_path / "p.png")
    assert colours.shape == (3, 2, 2) and np.array_equal(colours[0], indices * 255)


def test_rgb_label_takes_the_maximum(tmp_path: Path) -> None:
    data = np.zeros((3, 3, 3), dtype=np.uint8)
    data[0, 0, 2] = 200
    data[1, 1, 0] = 255
    Image.fromarray(data).save(tmp_path / "rgb_label.png")
    label = read_label(tmp_path / "rgb_label.png")
    assert label.shape == (3, 3) and label.dtype == np.uint8
    assert label[0, 0] == 200 and label[1, 1] == 255 and label.sum() == 455


def test_geotiff_that_pil_cannot_read(tmp_path: Path) -> None:
    data = RNG.integers(0, 4000, (6, 9, 8), dtype=np.uint16)
    path = write_raster(tmp_path / "six.tif", data)
    assert sniff(path) == "tiff"
    image = read_image(path)
    assert image.dtype == np.uint16 and np.array_equal(image, data)
    with pytest.raises(InputError, match=r"has 6 bands"):
        read_rgb(path)
    assert np.array_equal(read_rgb(path, bands=(3, 2, 1)), data[[2, 1, 0]])
    with pytest.raises(InputError, match=r"bands=\(7, 2, 1\)"):
        read_rgb(path, bands=(7, 2, 1))
    label = write_raster(tmp_path / "label.tif", np.array([[0, 1], [300, 2]], dtype=np.uint16))
    assert read_label(label).tolist() == [[0, 1], [255, 2]]


def test_envi_goes_through_rasterio(tmp_path: Path) -> None:
    data = RNG.integers(0, 256, (3, 5, 4), dtype=np.uint8)
    path = tmp_path / "scene"
    profile = {
        "driver": "ENVI",
        "width": 4,
        "height": 5,
        "count": 3,
        "dtype": "uint8",
        "transform": from_origin(0, 5, 1, 1),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    assert sniff(path) == "other"
    assert np.array_equal(read_image(path), data)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match=r"does not exist"):
        read_image(tmp_path / "missing.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(RasterError, match=r"broken\.png"):
        read_image(broken)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(RasterError, match=r"notes\.png"):
        read_label(text)
