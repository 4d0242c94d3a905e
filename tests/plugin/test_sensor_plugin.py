"""The plugin shows what the engine knows of the sensor: pixel size, the range warning, bands by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from tests.conftest import REPO_ROOT
from tests.plugin import write_pair
from tests.plugin.helpers import wait_for_task
from tests.rasters import utm_transform, write_raster

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

from qgis_clipcd.detection.pixel_size import describe, layer_pixel_size_m  # noqa: E402

ARC_SECOND = 1 / 3600
AERIAL = REPO_ROOT / "resources" / "models" / "clipcd-default.safetensors"


class Feedback(qgis_core.QgsProcessingFeedback):  # type: ignore[misc]
    """Keeps what the algorithm pushes as warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []

    def pushWarning(self, warning: str) -> None:
        self.warnings.append(warning)
        super().pushWarning(warning)


def layer(path: Path, name: str) -> object:
    loaded = qgis_core.QgsRasterLayer(str(path), name)
    assert loaded.isValid()
    return loaded


@pytest.mark.parametrize("latitude", [0.0, 45.0, 70.0])
def test_plugin_and_engine_agree_on_pixel_size(tmp_path: Path, latitude: float) -> None:
    from backend.raster.pixel_size import raster_pixel_size_m

    transform = Affine(ARC_SECOND, 0, 10.0, 0, -ARC_SECOND, latitude + 50 * ARC_SECOND)
    path = write_raster(tmp_path / "geo.tif", np.zeros((3, 100, 100), np.uint8), crs="EPSG:4326", transform=transform)
    ours = layer_pixel_size_m(layer(path, "geo"))
    engine = raster_pixel_size_m(path)
    assert ours is not None and engine is not None
    assert ours == pytest.approx(engine, rel=1e-4)
    feet = write_raster(
        tmp_path / "ft.tif", np.zeros((3, 8, 8), np.uint8), crs="EPSG:2263", transform=Affine(3, 0, 1e6, 0, -3, 2e5)
    )
    assert layer_pixel_size_m(layer(feet, "ft")) == pytest.approx((3 * 1200 / 3937,) * 2, rel=1e-9)
    assert (
        describe(None) == "unknown" and describe((10.0, 10.0)) == "10.0 m" and describe((8.46, 12.8)) == "8.46 x 12.8 m"
    )


def test_the_dock_shows_pixel_sizes_and_picks_bands_by_name(qgis_iface, qgis_new_project: None, tmp_path: Path) -> None:
    from qgis_clipcd.dock.widget import ClipCDDock

    four = write_raster(
        tmp_path / "four.tif",
        np.zeros((4, 16, 16), np.uint16),
        transform=utm_transform(res=10.0),
        descriptions=["B02", "B03", "B04", "B08"],
    )
    fine = write_pair(tmp_path / "fine")[0]
    layers = [layer(four, "four"), layer(fine, "fine")]
    qgis_core.QgsProject.instance().addMapLayers(layers)
    qgis_core.QgsSettings().remove("clipcd/band_mode")
    dock = ClipCDDock(qgis_iface, check_engine=False)
    dock.form.before.setLayer(layers[0])
    dock.form.after.setLayer(layers[1])
    assert dock.form.pixel_note.text() == "before 10.0 m, after 10.0 m"
    # by band name is the default: no --bands, the engine matches B04, B03, B02
    assert not dock.form.bands_row.isHidden() and dock.form.bands_row.mode_key() == "name"
    assert dock.form.bands() is None and dock.run_params().bands is None
    dock.form.bands_row.set_mode("chosen")
    assert dock.form.bands() == (1, 2, 3)
    dock.form.bands_row.blue.setBand(4)
    assert dock.run_params().bands == (1, 2, 4)


def test_the_range_warning_reaches_the_message_bar_and_the_feedback(
    tmp_path: Path, provider: object, qgis_iface, qgis_new_project: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import processing

    from qgis_clipcd.dock.widget import ClipCDDock

    before, after = write_pair(tmp_path)  # 10 m pixels; the aerial model knows 0.3-1.5 m
    feedback = Feedback()
    processing.run(
        "clipcd:detect_change",
        {"BEFORE": str(before), "AFTER": str(after), "DEVICE": "cpu", "MODEL": str(AERIAL),
         "OUTPUT_POLYGONS": str(tmp_path / "p.gpkg")},
        feedback=feedback,
    )  # fmt: skip
    assert len(feedback.warnings) == 1, feedback.warnings
    assert "10.0 m" in feedback.warnings[0] and "0.3-1.5 m" in feedback.warnings[0]

    layers = [layer(path, path.stem) for path in (before, after)]
    qgis_core.QgsProject.instance().addMapLayers(layers)
    for key in ("model", "extent", "auto_prompts", "band_mode"):
        qgis_core.QgsSettings().remove(f"clipcd/{key}")
    dock = ClipCDDock(qgis_iface, check_engine=False)
    dock.form.before.setLayer(layers[0])
    dock.form.after.setLayer(layers[1])
    dock.form.device.setCurrentIndex(dock.form.device.findData("cpu"))
    dock.form.model.setFilePath(str(AERIAL))  # chosen: the picked 10 m model would not warn
    dock.form.output.setFilePath(str(tmp_path / "dock.gpkg"))
    dock.start()
    assert dock.task is not None and wait_for_task(dock.task, timeout=300)
    warnings = qgis_iface.messageBar().get_messages(qgis_core.Qgis.MessageLevel.Warning)
    assert [m for m in warnings if "0.3-1.5 m" in m and "10.0 m" in m], warnings


def test_no_warning_for_half_metre_pixels(tmp_path: Path, provider: object) -> None:
    import processing

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(3, 64, 64), dtype=np.uint8)
    paths = [
        write_raster(tmp_path / name, data, transform=utm_transform(res=0.5))
        for name, data in (("a.tif", image), ("b.tif", image[::-1].copy()))
    ]
    feedback = Feedback()
    processing.run(
        "clipcd:detect_change",
        {"BEFORE": str(paths[0]), "AFTER": str(paths[1]), "DEVICE": "cpu", "OUTPUT_POLYGONS": str(tmp_path / "p.gpkg")},
        feedback=feedback,
    )
    assert feedback.warnings == []
