"""Run outputs become a named group with a styled change layer and a pseudocolor probability raster."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.inference.pipeline import detect
from backend.params import DetectParams
from tests.test_pipeline import difference_model, square_pair

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

from qgis_clipcd.detection.layers import ALIASES, add_results, run_name  # noqa: E402


@pytest.fixture
def outputs(tmp_path: Path) -> dict[str, str]:
    before, after = square_pair(tmp_path)
    result = detect(DetectParams(before=before, after=after, out_dir=tmp_path / "out"), loaded=difference_model())
    return {name: str(path) for name, path in result.outputs.items()}


def test_results_go_into_a_group_with_styles(outputs: dict[str, str], qgis_new_project: None) -> None:
    project = qgis_core.QgsProject.instance()
    group, layers = add_results("ClipCD — run 1", outputs)

    assert project.layerTreeRoot().findGroup("ClipCD — run 1") is group
    assert [child.layer() for child in group.findLayers()] == layers
    changes, probability = layers
    assert isinstance(changes, qgis_core.QgsVectorLayer) and changes.featureCount() == 1
    symbol = changes.renderer().symbol()
    assert symbol.color().alpha() < 255
    assert symbol.symbolLayer(0).strokeColor().alpha() == 255
    for field, alias in ALIASES.items():
        assert changes.attributeAlias(changes.fields().indexOf(field)) == alias
    assert changes.attributeDisplayName(changes.fields().indexOf("area_m2")) == "Area (m²)"
    assert changes.attributeDisplayName(changes.fields().indexOf("mean_prob")) == "Confidence"

    assert isinstance(probability.renderer(), qgis_core.QgsSingleBandPseudoColorRenderer)
    assert probability.renderer().classificationMax() == 255.0  # uint8 probability.tif
    assert project.mapLayer(changes.id()) is changes


def test_probability_is_optional_and_missing_files_are_skipped(
    outputs: dict[str, str], tmp_path: Path, qgis_new_project: None
) -> None:
    _, layers = add_results("no probability", outputs, probability=False)
    assert [type(layer).__name__ for layer in layers] == ["QgsVectorLayer"]
    _, none = add_results("gone", {"changes": str(tmp_path / "missing.gpkg")})
    assert none == []


def test_run_name_uses_the_output_folder() -> None:
    assert run_name(Path("/tmp/clipcd-abc/")) == "ClipCD — clipcd-abc"
    assert run_name("before → after (12:30)") == "ClipCD — before → after (12:30)"


def test_labelled_changes_are_coloured_by_label(tmp_path: Path, qgis_new_project: None) -> None:
    from qgis_clipcd.detection.layers import LABEL_ALIASES, OTHER_COLOUR
    from tests.labels.colour_clip import change_model, colour_labeller, colour_pair

    before, after = colour_pair(tmp_path / "pair")
    params = DetectParams(before=before, after=after, out_dir=tmp_path / "labelled")
    result = detect(params, loaded=change_model(), labeller=colour_labeller())
    _, (changes,) = add_results("labelled", {"changes": str(result.outputs["changes"])}, probability=False)
    renderer = changes.renderer()
    assert isinstance(renderer, qgis_core.QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "label"
    colours = {c.value(): c.symbol().color().name() for c in renderer.categories()}
    assert set(colours) == {"vegetation → building", "water", "building → water"}
    grey = "#{:02x}{:02x}{:02x}".format(*(int(v) for v in OTHER_COLOUR.split(",")))
    assert colours["water"] == grey  # both dates agree: likely a false alarm
    assert grey not in (colours["vegetation → building"], colours["building → water"])
    assert colours["vegetation → building"] != colours["building → water"]
    for field, alias in LABEL_ALIASES.items():
        assert changes.attributeDisplayName(changes.fields().indexOf(field)) == alias
    assert changes.displayExpression().startswith('"label"')
