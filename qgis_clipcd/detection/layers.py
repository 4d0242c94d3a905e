"""Add a run's outputs to the project: a group named after the run, styled layers inside it.

Runs on the main thread only (``DetectTask.finished``): it touches the project.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsEditorWidgetSetup,
    QgsFillSymbol,
    QgsLayerTreeGroup,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

#: Field name -> label shown in the attribute table and the identify/form view.
ALIASES = {"area_m2": "Area (m²)", "mean_prob": "Confidence", "max_prob": "Peak confidence"}
#: The CLIP label fields (present when the engine had CLIP weights) -> their labels.
LABEL_ALIASES = {
    "label": "What changed",
    "class_before": "Before",
    "class_after": "After",
    "score_before": "Before (CLIP probability)",
    "score_after": "After (CLIP probability)",
}

CHANGE_FILL = "255,64,0,90"  # semi-transparent orange
CHANGE_OUTLINE = "230,40,0,255"
#: The most frequent labels get these colours (ColorBrewer Set1, semi-transparent); the rest are grey.
LABEL_COLOURS = ("228,26,28", "55,126,184", "77,175,74", "152,78,163", "255,127,0", "166,86,40", "247,129,191")
OTHER_COLOUR = "150,150,150"


def style_changes(layer: QgsVectorLayer) -> None:
    """Fill by label when CLIP labelled the changes (else one orange fill); aliases and two-decimal widgets."""
    fields = layer.fields()
    if fields.indexOf("label") >= 0:
        layer.setRenderer(_label_renderer(layer))
    else:
        layer.setRenderer(QgsSingleSymbolRenderer(_fill(CHANGE_FILL, CHANGE_OUTLINE)))
    for name, alias in ALIASES.items():
        index = fields.indexOf(name)
        if index >= 0:
            layer.setFieldAlias(index, alias)
            layer.setEditorWidgetSetup(index, QgsEditorWidgetSetup("Range", {"Precision": 2}))
    for name, alias in LABEL_ALIASES.items():
        index = fields.indexOf(name)
        if index >= 0:
            layer.setFieldAlias(index, alias)
    area = "'Area ' || format_number(\"area_m2\", 0) || ' m², confidence ' || format_number(\"mean_prob\", 2)"
    layer.setDisplayExpression(f"\"label\" || ', ' || {area}" if fields.indexOf("label") >= 0 else area)
    layer.triggerRepaint()


def _fill(colour: str, outline: str) -> QgsFillSymbol:
    return QgsFillSymbol.createSimple(
        {"color": colour, "outline_color": outline, "outline_width": "0.5", "outline_style": "solid"}
    )


def _label_renderer(layer: QgsVectorLayer) -> QgsCategorizedSymbolRenderer:
    """One category per label, most frequent first: changed labels coloured, the rest and "no change" labels grey."""
    counts = Counter(str(feature["label"]) for feature in layer.getFeatures())
    changed = [label for label, _ in counts.most_common() if "→" in label]
    coloured = dict(zip(changed, LABEL_COLOURS, strict=False))
    categories = []
    for label, count in counts.most_common():
        colour = coloured.get(label, OTHER_COLOUR)
        symbol = _fill(f"{colour},110", f"{colour},255")
        categories.append(QgsRendererCategory(label, symbol, f"{label} ({count})"))
    return QgsCategorizedSymbolRenderer("label", categories)


def style_probability(layer: QgsRasterLayer) -> None:
    """Pseudocolor ramp over the probability band: transparent at no change, red at certain change.

    probability.tif is uint8 ``round(p * 255)`` or float16 ``p``; the ramp spans the band's range.
    """
    provider = layer.dataProvider()
    top = 1.0 if provider.dataType(1) in _FLOAT_TYPES else 255.0
    ramp = QgsColorRampShader(0.0, top)
    ramp.setColorRampType(QgsColorRampShader.Type.Interpolated)
    ramp.setColorRampItemList(
        [
            QgsColorRampShader.ColorRampItem(0.0, QColor(255, 255, 178, 0), "0"),
            QgsColorRampShader.ColorRampItem(top * 0.5, QColor(253, 141, 60, 160), "0.5"),
            QgsColorRampShader.ColorRampItem(top, QColor(189, 0, 38, 220), "1"),
        ]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(provider, 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(top)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def _float_types() -> tuple[int, ...]:
    from qgis.core import Qgis

    return tuple(int(getattr(Qgis.DataType, name)) for name in ("Float32", "Float64") if hasattr(Qgis.DataType, name))


_FLOAT_TYPES = _float_types()


def add_results(
    name: str,
    outputs: dict[str, str],
    *,
    probability: bool = True,
    project: QgsProject | None = None,
) -> tuple[QgsLayerTreeGroup, list[QgsVectorLayer | QgsRasterLayer]]:
    """Put the run's layers into a new top-level group ``name``.

    Args:
        name: The group's name (the run's name, e.g. "ClipCD 2026-11-26 15:40").
        outputs: The worker's outputs, name -> path ("changes", "probability", ...).
        probability: Also add the probability raster.
        project: Target project (default: the current one).

    Returns:
        The group and the layers added to it (invalid files are skipped and logged by QGIS).
    """
    project = project or QgsProject.instance()
    group = project.layerTreeRoot().insertGroup(0, name)
    added: list[QgsVectorLayer | QgsRasterLayer] = []
    changes = outputs.get("changes")
    if changes:
        layer = QgsVectorLayer(f"{changes}|layername=changes", f"{name} — changes", "ogr")
        if layer.isValid():
            style_changes(layer)
            added.append(layer)
    chosen = outputs.get("probability")
    if probability and chosen:
        raster = QgsRasterLayer(chosen, f"{name} — probability")
        if raster.isValid():
            style_probability(raster)
            added.append(raster)
    for layer in added:
        project.addMapLayer(layer, False)
        group.addLayer(layer)
    return group, added


def run_name(name: str | Path) -> str:
    """A group name for a run: "ClipCD — <name>" (a path gives its last part)."""
    return f"ClipCD — {Path(name).name if isinstance(name, Path) else name}"
