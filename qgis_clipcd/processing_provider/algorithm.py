"""The Processing algorithm ``clipcd:detect_change``: the same worker as the dock, driven by Processing.

The algorithm only prepares a :class:`RunParams`, runs :class:`Worker` into a temporary folder and
moves the outputs to the requested destinations. The model runs in a child process, so nothing here
touches QGIS objects from another thread in an unsafe way: the algorithm keeps Processing's default
flags and runs in a background thread (toolbox, modeler, qgis_process alike).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
    QgsRasterBlockFeedback,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QCoreApplication

from qgis_clipcd.detection.layer_export import ExportError, write_export
from qgis_clipcd.detection.pixel_size import layer_pixel_size_m
from qgis_clipcd.detection.run_inputs import PreparedRun, prepare_run
from qgis_clipcd.engine.environment import find_python
from qgis_clipcd.engine.worker import Worker
from qgis_clipcd.metadata import homepage
from qgis_clipcd.models.choice import choose_model
from qgis_clipcd.params import DEVICES, PROMPT_MATCHES, TTA_MODES, RunParams, parse_bands, split_prompts
from qgis_clipcd.processing_provider.model_fetch import fetch_default_model


def _tr(text: str) -> str:
    return str(QCoreApplication.translate("ClipCD", text))


def _advanced() -> Any:
    """The "advanced parameter" flag (``Qgis.ProcessingParameterFlag`` from 3.36, else the 3.22 name)."""
    scoped = getattr(Qgis, "ProcessingParameterFlag", None)
    return scoped.Advanced if scoped is not None else QgsProcessingParameterDefinition.Flag.FlagAdvanced


def _choice(name: str, description: str, options: tuple[str, ...]) -> QgsProcessingParameterEnum:
    """An enum parameter of fixed strings (stable in scripts and models), defaulting to the first option."""
    parameter = QgsProcessingParameterEnum(name, _tr(description), list(options), defaultValue=options[0])
    parameter.setUsesStaticStrings(True)
    return parameter


def _vector_type_polygon() -> Any:
    """``QgsProcessing.SourceType.TypeVectorPolygon`` (scoped in newer sip), else the flat 3.22 name."""
    scoped = getattr(QgsProcessing, "SourceType", None)
    return scoped.TypeVectorPolygon if scoped is not None else QgsProcessing.TypeVectorPolygon


class DetectChangeAlgorithm(QgsProcessingAlgorithm):  # type: ignore[misc]
    """Detects change between two rasters and writes the change polygons (and optionally probabilities)."""

    BEFORE, AFTER, PROMPTS, AUTO_PROMPTS, MODEL = "BEFORE", "AFTER", "PROMPTS", "AUTO_PROMPTS", "MODEL"
    THRESHOLD, MIN_AREA, DEVICE, EXTENT, BANDS = "THRESHOLD", "MIN_AREA", "DEVICE", "EXTENT", "BANDS"
    TTA, PROMPT_MATCH = "TTA", "PROMPT_MATCH"
    OUTPUT_POLYGONS, OUTPUT_PROBABILITY = "OUTPUT_POLYGONS", "OUTPUT_PROBABILITY"
    POLYGONS, CHANGED_AREA_M2 = "POLYGONS", "CHANGED_AREA_M2"

    def name(self) -> str:
        """Algorithm id inside the provider; stored in scripts and models, never renamed."""
        return "detect_change"

    def displayName(self) -> str:
        """Name in the toolbox."""
        return _tr("Detect change (CLIP)")

    def shortHelpString(self) -> str:
        """Help shown beside the dialog."""
        return _tr(
            "Compares a before and an after raster with a deep-learning change detection model and writes "
            "the changed areas as polygons (GeoPackage: area_m2, mean_prob, max_prob and, where CLIP weights are "
            'present, class_before, class_after, score_before, score_after and label: "bare land → building"), '
            "optionally with the change probability raster. Prompts name what to look for (e.g. building,road): "
            "CLIP-labelled changes are kept by them, and a model with a text side conditions on them; with "
            "automatic prompts the model chooses. The model runs in a separate Python with torch (see the plugin's "
            "settings or $CLIPCD_PYTHON)."
        )

    def helpUrl(self) -> str:
        """The homepage from metadata.txt."""
        return homepage()

    #: Set by prepareAlgorithm (main thread) for processAlgorithm (task thread).
    _work: Path
    _prepared: PreparedRun
    _failure: str

    def createInstance(self) -> DetectChangeAlgorithm:
        """A new instance (Processing runs each copy separately)."""
        return DetectChangeAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare the parameters and outputs."""
        number = QgsProcessingParameterNumber.Type.Double
        self.addParameter(QgsProcessingParameterRasterLayer(self.BEFORE, _tr("Before raster (earlier date)")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.AFTER, _tr("After raster (later date)")))
        self.addParameter(
            QgsProcessingParameterString(
                self.PROMPTS, _tr("Prompts (comma separated, e.g. building,road)"), multiLine=True, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.AUTO_PROMPTS, _tr("Automatic prompts (ignore the prompts above)"), False)
        )
        self.addParameter(
            _choice(
                self.PROMPT_MATCH,
                "Prompts keep the CLIP-labelled changes whose after class (appeared), before class or either is one",
                PROMPT_MATCHES,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                _tr("Model file (empty: the shipped model that fits the rasters' pixel size)"),
                extension="safetensors",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.THRESHOLD, _tr("Change probability threshold (empty: the model's)"), number, None, True, 0.0, 1.0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.MIN_AREA, _tr("Minimum polygon area (m²)"), number, 0.0, False, 0.0)
        )
        self.addParameter(_choice(self.DEVICE, "Device", DEVICES))
        tta = _choice(self.TTA, "Test-time augmentation (model: the card's; flips: 4x, d4: 8x time)", TTA_MODES)
        tta.setFlags(tta.flags() | _advanced())
        self.addParameter(tta)
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, _tr("Extent (empty: the overlap)"), optional=True))
        self.addParameter(
            QgsProcessingParameterString(
                self.BANDS,
                _tr("Bands for red,green,blue by number or name (4,3,2 / B04,B03,B02; empty: by band name)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.OUTPUT_POLYGONS, _tr("Change polygons"), _vector_type_polygon(), "TEMPORARY_OUTPUT"
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                self.OUTPUT_PROBABILITY, _tr("Change probability"), None, optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.POLYGONS, _tr("Number of change polygons")))
        self.addOutput(QgsProcessingOutputNumber(self.CHANGED_AREA_M2, _tr("Changed area (m²)")))

    def prepareAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> bool:
        """Main thread: read the layers and options; plan the export of layers that are not files.

        A problem is kept and raised by processAlgorithm: QGIS turns exceptions raised here into a
        generic "There were errors executing the algorithm" for ``processing.run`` callers.
        """
        self._failure = ""
        self._pick_note = ""
        self._work = Path(tempfile.mkdtemp(prefix="clipcd-", dir=QgsProcessingUtils.tempFolder()))
        try:
            before = self.parameterAsRasterLayer(parameters, self.BEFORE, context)
            after = self.parameterAsRasterLayer(parameters, self.AFTER, context)
            for key, layer in ((self.BEFORE, before), (self.AFTER, after)):
                if layer is None or not layer.isValid():
                    raise QgsProcessingException(
                        _tr(f"{key}: {parameters.get(key)!r} is not a raster layer QGIS can open.")
                    )
            params = self._params(parameters, context, str(self._work / "out"), layer_pixel_size_m(before))
            extent = self._extent(parameters, context, before.crs())
            self._prepared = prepare_run(before, after, params, extent=extent, project=context.project())
        except (ExportError, QgsProcessingException) as exc:
            self._failure = str(exc)
        return True

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Write layers that are not files, run the worker into a temporary folder, move its outputs."""
        try:
            if self._failure:
                raise QgsProcessingException(self._failure)
            return self._process(parameters, context, feedback)
        finally:
            shutil.rmtree(self._work, ignore_errors=True)

    def _process(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        python = find_python()
        if python is None:
            raise QgsProcessingException(
                _tr(
                    "No Python with torch, open_clip and rasterio was found for the ClipCD engine. Use "
                    '"Install backend" in the ClipCD panel, or set one in the plugin\'s settings (clipcd/python) '
                    "or in the CLIPCD_PYTHON environment variable."
                )
            )
        params = self._prepared.params
        if params.model is None:
            params = dataclasses.replace(params, model=fetch_default_model(feedback))
        for plan in self._prepared.exports:
            feedback.setProgressText(_tr(f"Writing the {plan.role} layer {plan.layer_name!r} to a GeoTIFF"))
            raster_feedback = QgsRasterBlockFeedback()
            feedback.canceled.connect(raster_feedback.cancel)
            try:
                write_export(plan, raster_feedback)
            except ExportError as exc:
                raise QgsProcessingException(str(exc)) from None
        if self._pick_note:
            feedback.pushInfo(self._pick_note)
        feedback.pushInfo(_tr("Engine command: ") + params.command_line(python))

        def progress(fraction: float, message: str) -> None:
            feedback.setProgress(100.0 * fraction)
            feedback.setProgressText(message)

        result = Worker().run(params, python, progress, feedback.isCanceled)
        for line in result.log:
            feedback.pushDebugInfo(line)
        for warning in result.warnings:  # e.g. pixels outside the model's range: the engine decides, we show it
            feedback.pushWarning(warning)
        if not result.ok:
            raise QgsProcessingException(result.message or _tr("The change detection failed."))

        polygons = self.parameterAsOutputLayer(parameters, self.OUTPUT_POLYGONS, context)
        _move(result.outputs["changes"], polygons)
        outputs: dict[str, Any] = {
            self.OUTPUT_POLYGONS: polygons,
            self.OUTPUT_PROBABILITY: None,
            self.POLYGONS: result.summary.get("polygons"),
            self.CHANGED_AREA_M2: result.summary.get("changed_area_m2"),
        }
        probability = self.parameterAsOutputLayer(parameters, self.OUTPUT_PROBABILITY, context)
        if probability:
            _move(result.outputs["probability"], probability)
            outputs[self.OUTPUT_PROBABILITY] = probability
        return outputs

    def _params(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        out_dir: str,
        pixel_size: tuple[float, float] | None = None,
    ) -> RunParams:
        """The options (the layers' paths are filled in by :func:`prepare_run`)."""
        try:
            bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context) or "")
        except ValueError as exc:
            raise QgsProcessingException(str(exc)) from None
        auto = self.parameterAsBoolean(parameters, self.AUTO_PROMPTS, context)
        prompts = () if auto else split_prompts(self.parameterAsString(parameters, self.PROMPTS, context) or "")
        chosen = self.parameterAsFile(parameters, self.MODEL, context) or None
        choice = choose_model(chosen, pixel_size)
        if choice.reason:
            self._pick_note = f"Model: {Path(choice.path).name}, picked because {choice.reason}"
        threshold = None
        if parameters.get(self.THRESHOLD) not in (None, ""):
            threshold = self.parameterAsDouble(parameters, self.THRESHOLD, context)
        return RunParams(
            before="",
            after="",
            out_dir=out_dir,
            model=None if choice.missing else choice.path,  # None: processAlgorithm downloads the default model
            prompts=prompts,
            threshold=threshold,
            min_area=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            device=self.parameterAsEnumString(parameters, self.DEVICE, context) or "auto",
            bands=bands,
            tta=self.parameterAsEnumString(parameters, self.TTA, context) or "model",
            prompt_match=self.parameterAsEnumString(parameters, self.PROMPT_MATCH, context) or "appeared",
        )

    def _extent(
        self, parameters: dict[str, Any], context: QgsProcessingContext, crs: QgsCoordinateReferenceSystem
    ) -> QgsRectangle | None:
        """The EXTENT parameter in the before raster's CRS, or None when not set."""
        if parameters.get(self.EXTENT) in (None, ""):
            return None
        rect = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
        if rect.isNull() or rect.isEmpty():
            return None
        return rect


def _move(source: str, target: str) -> None:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).unlink(missing_ok=True)
    shutil.move(source, target)
