"""The OSCD release layout: generated cities on two grids, and the real Saclay-West city when ../shared is here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from backend.errors import InputError
from backend.raster.stack import band_files
from tests.conftest import SAMPLES
from tests.sentinel import write_oscd_city
from training.datasets import get_dataset
from training.datasets.oscd import OSCD

SACLAY = (SAMPLES or Path("/absent")) / "oscd-release" / "saclay_w"


def test_generated_city_lands_on_date_1s_10m_grid(tmp_path: Path) -> None:
    write_oscd_city(tmp_path, "alpha", height=60, width=80)
    write_oscd_city(tmp_path, "beta", height=40, width=50)
    (tmp_path / "train.txt").write_text("beta,alpha\n", encoding="utf-8")
    ds = get_dataset("oscd", tmp_path, "train")
    assert [f.name for f in ds.files] == ["beta", "alpha"]
    raw_a, raw_b, label = ds.raw_pair(1)
    assert raw_a.shape == raw_b.shape == (3, 60, 80) and label.shape == (60, 80)
    sample = ds[1]
    assert sample["image_a"].shape == (3, 60, 80) and sample["mask"].shape == (60, 80)
    # the changed block is bright in date 2 only, and lies where the label says
    change = label > 0
    assert raw_b[:, change].mean() - raw_a[:, change].mean() > 1000
    assert abs(raw_b[:, ~change].mean() - raw_a[:, ~change].mean()) < 150
    # date 2 (a grid of 77 x 58 larger pixels) was resampled onto date 1's grid: its last columns are outside
    assert (raw_b[:, :, -1] == 0).all() and (raw_a[:, :, -1] > 0).all()


def test_bands_are_read_by_code_and_missing_ones_named(tmp_path: Path) -> None:
    write_oscd_city(tmp_path, "alpha")
    ds = OSCD(tmp_path, "all", bands=("B08", "B11", "B8A"))
    raw_a, _, _ = ds.raw_pair(0)
    assert raw_a.shape == (3, 60, 80)  # the 20 m bands are resampled to 10 m
    with pytest.raises(InputError, match=r"no band B09; it has B01, B02, B03, B04, B05, B08, B8A, B11, B12"):
        OSCD(tmp_path, "all", bands=("B09", "B03", "B02")).raw_pair(0)


def test_a_label_off_the_grid_is_refused(tmp_path: Path) -> None:
    folder = write_oscd_city(tmp_path, "alpha")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(folder / "cm" / "cm.png")
    with pytest.raises(InputError, match="must lie on date 1's 10 m grid"):
        OSCD(tmp_path, "all")[0]


def test_missing_split_list_draws_the_layout(tmp_path: Path) -> None:
    write_oscd_city(tmp_path, "alpha")
    with pytest.raises(InputError, match=r"test\.txt is missing"):
        OSCD(tmp_path, "test")


@pytest.mark.skipif(not SACLAY.is_dir(), reason="../shared/data/oscd-release/saclay_w is absent")
def test_real_saclay_west_dates_on_two_grids() -> None:
    files_1, files_2 = band_files(SACLAY / "imgs_1"), band_files(SACLAY / "imgs_2")
    with rasterio.open(files_1["B02"]) as first, rasterio.open(files_2["B02"]) as second:
        assert first.shape != second.shape, "the two dates of saclay_w lie on different grids"
        grid_shape = first.shape
    ds = OSCD(SACLAY.parent, "all")
    raw_a, raw_b, label = ds.raw_pair(0)
    assert label.shape == grid_shape == raw_a.shape[1:] == raw_b.shape[1:]
    assert 0.005 < (label > 0).mean() < 0.05
    # the resampled second date matches the first where nothing changed
    still = (label == 0) & (raw_b > 0).all(axis=0)
    correlation = np.corrcoef(raw_a[0][still], raw_b[0][still])[0, 1]
    assert correlation > 0.5
