"""Raw Sentinel-2 bands reach the 10 m model with the look of the previews it was trained on (saclay_w)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rasterio.windows import Window

from backend.model import read_card
from backend.raster.io import RasterPair
from backend.raster.stack import stack_bands
from tests.conftest import REPO_ROOT, SAMPLES

SACLAY = (SAMPLES or Path("/absent")) / "oscd-release" / "saclay_w"
S2_MODEL = REPO_ROOT / "resources" / "models" / "clipcd-s2.safetensors"
#: The stated tolerance: per channel, the mean within 0.02 and the spread within 10 % of the preview's.
MEAN_TOLERANCE = 0.02
SPREAD_TOLERANCE = 0.10

pytestmark = pytest.mark.skipif(not SACLAY.is_dir(), reason="../shared/data/oscd-release/saclay_w is absent")


def engine_input(tmp_path: Path, stretch: str, input_stretch: dict[str, object] | None) -> np.ndarray:
    """Date 1 of saclay_w as the engine feeds it to the model, from the raw band files, ``(3, h, w)``."""
    for date in (1, 2):
        stack_bands(SACLAY / f"imgs_{date}", tmp_path / f"d{date}.tif", ["B04", "B03", "B02"])
    with RasterPair(
        tmp_path / "d1.tif",
        tmp_path / "d2.tif",
        stretch=stretch,
        input_stretch=input_stretch,  # type: ignore[arg-type]
    ) as pair:
        image, _, _ = pair.read(Window(0, 0, pair.grid.width, pair.grid.height))
    return image


def preview() -> np.ndarray:
    return np.asarray(Image.open(SACLAY / "pair" / "img1.png"))[..., :3].transpose(2, 0, 1).astype(np.float32) / 255


def look_gaps(image: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """The largest per-channel gap in mean, and in spread relative to the reference's."""
    means = max(abs(float(image[c].mean()) - float(reference[c].mean())) for c in range(3))
    spreads = max(abs(float(image[c].std()) / float(reference[c].std()) - 1) for c in range(3))
    return means, spreads


def test_the_cards_rule_gives_raw_bands_the_previews_look(tmp_path: Path) -> None:
    card = read_card(S2_MODEL)
    assert card.input_stretch == {"rule": "sentinel-2", "white": 0.7}
    image = engine_input(tmp_path, "auto", card.input_stretch)
    means, spreads = look_gaps(image, preview())
    assert means < MEAN_TOLERANCE and spreads < SPREAD_TOLERANCE, (means, spreads)


def test_a_per_date_percentile_stretch_fails_the_same_check(tmp_path: Path) -> None:
    image = engine_input(tmp_path, "percentile", None)
    means, spreads = look_gaps(image, preview())
    assert means > MEAN_TOLERANCE and spreads > SPREAD_TOLERANCE, (means, spreads)
