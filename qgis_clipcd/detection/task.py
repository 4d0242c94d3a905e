"""The background task of one detection run: the worker subprocess off the main thread.

``run()`` (a worker thread) only drives the subprocess and reports progress; ``finished()``
(the main thread) adds the layers to the project or reports the error. QGIS never waits on it.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsProject, QgsRasterBlockFeedback, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from qgis_clipcd.detection.layer_export import ExportError, RasterExport, write_export
from qgis_clipcd.detection.layers import add_results, run_name
from qgis_clipcd.detection.run_inputs import INPUTS
from qgis_clipcd.engine.environment import find_python
from qgis_clipcd.engine.worker import Worker, WorkerResult
from qgis_clipcd.params import RunParams

LOG_TAG = "ClipCD"

NO_PYTHON = (
    "No Python with torch, open_clip and rasterio was found for the ClipCD engine. Press "
    '"Install backend" in the ClipCD panel, or set the interpreter in the setting "clipcd/python" '
    "(docs/install.md gives the commands for each system)."
)


class DetectTask(QgsTask):  # type: ignore[misc]
    """Runs ``python -m backend detect --json-progress`` and publishes its outputs.

    Attributes:
        result: The worker's result once ``run()`` returned (None before, or when no Python).
        layers: The layers added to the project on success.
    """

    #: The worker's latest progress message (emitted from the task thread; connect queued).
    status = pyqtSignal(str)

    def __init__(
        self,
        params: RunParams,
        *,
        python: str | None = None,
        iface: Any = None,
        worker: Worker | None = None,
        add_probability: bool = True,
        remove_out_dir_on_failure: bool = False,
        project: QgsProject | None = None,
        exports: Sequence[RasterExport] = (),
        output: str | None = None,
        name: str | None = None,
    ) -> None:
        """Prepare a run; nothing starts until the task manager runs it.

        Args:
            params: What to run.
            python: The interpreter for the worker; None looks it up in ``run()`` (off the main thread).
            iface: The QGIS interface for the message bar (None: ``qgis.utils.iface``).
            worker: The worker (tests pass their own).
            add_probability: Also add the probability raster.
            remove_out_dir_on_failure: Delete ``params.out_dir`` when the run fails or is canceled
                (for a temporary folder the dock made for this run).
            project: Where the layers go (default: the current project).
            exports: Layers that are not files, written to GeoTIFFs (in ``out_dir/inputs``) first.
            output: A GeoPackage for the change polygons; the other outputs go beside it as
                ``<name>_probability.tif``, ``<name>_mask.tif`` and ``<name>_preview.png``, and
                ``out_dir`` (a staging folder) is removed. None keeps everything in ``out_dir``.
            name: The run's name, for the task list and the layer group (default: the GeoPackage's
                or the output folder's name).
        """
        self.name = name or (Path(output).stem if output else Path(params.out_dir).name)
        super().__init__(f"ClipCD: detect change ({self.name})", QgsTask.Flag.CanCancel)
        self.params = params
        self.python = python
        self.iface = iface
        self.worker = worker or Worker()
        self.add_probability = add_probability
        self.remove_out_dir_on_failure = remove_out_dir_on_failure
        self.project = project
        self.exports = list(exports)
        self.output = output
        self.result: WorkerResult | None = None
        self.error: str = ""
        self.layers: list[Any] = []
        self._export_feedback: QgsRasterBlockFeedback | None = None
        #: A download subtask this run waits for (see :func:`qgis_clipcd.models.download_task.attach_download`).
        self.download: Any = None

    def run(self) -> bool:
        """Drive the worker (task thread): progress to ``setProgress``, cancel from ``isCanceled``."""
        try:
            python = self.python or find_python()
            if python is None:
                self.error = NO_PYTHON
                return False
            if not self._write_exports():
                return False
            self.result = self.worker.run(self.params, python, self._on_progress, self.isCanceled)
            if not self.result.ok:
                self.error = self.result.message or f"the engine stopped with exit code {self.result.exit_code}"
            elif self.output and not self.isCanceled():
                self.result.outputs = deliver(self.result.outputs, self.output)
                shutil.rmtree(self.params.out_dir, ignore_errors=True)
            return bool(self.result.ok) and not self.isCanceled()
        except Exception as exc:  # never let an exception escape into the task manager's thread
            self.error = f"{type(exc).__name__}: {exc}"
            if self.result is not None:
                self.result.ok = False
            return False
        finally:
            shutil.rmtree(Path(self.params.out_dir) / INPUTS, ignore_errors=True)
            if (self.result is None or not self.result.ok) and self.remove_out_dir_on_failure:
                shutil.rmtree(self.params.out_dir, ignore_errors=True)

    def _write_exports(self) -> bool:
        """Write the layers that are not files (the first tenth of the progress bar)."""
        for index, plan in enumerate(self.exports):
            feedback = QgsRasterBlockFeedback()
            share = 10.0 / len(self.exports)
            feedback.progressChanged.connect(
                lambda value, i=index, part=share: self.setProgress(part * (i + value / 100.0))
            )
            self._export_feedback = feedback
            self.status.emit(f"Writing the {plan.role} layer {plan.layer_name!r} to a temporary GeoTIFF…")
            try:
                write_export(plan, feedback)
            except ExportError as exc:
                self.error = "Canceled." if self.isCanceled() else str(exc)
                return False
            finally:
                self._export_feedback = None
        return not self.isCanceled()

    def cancel(self) -> None:
        """Stop the run: an export in progress stops too; the worker is stopped by ``run``."""
        feedback = self._export_feedback
        if feedback is not None:
            feedback.cancel()
        super().cancel()

    def _on_progress(self, fraction: float, message: str) -> None:
        start = 10.0 if self.exports else 0.0
        self.setProgress(max(0.0, min(100.0, start + fraction * (100.0 - start))))
        if message:
            self.status.emit(message)

    def finished(self, result: bool) -> None:
        """Main thread: add the layers, or tell the user what went wrong."""
        if not result and self.remove_out_dir_on_failure:  # also when canceled before run() started
            shutil.rmtree(self.params.out_dir, ignore_errors=True)
        download = self.download
        failed_download = download is not None and download.error and not download.canceled
        if result and self.result is not None:
            self._publish(self.result)
        elif failed_download:  # QGIS cancels a task whose subtask failed: say why
            self.error = f"The default model could not be downloaded: {download.error}"
            self._report_failure()
        elif self.isCanceled() or (self.result is not None and self.result.error_kind == "canceled"):
            QgsMessageLog.logMessage("Run canceled; partial outputs were removed.", LOG_TAG, Qgis.MessageLevel.Info)
            self._message_bar_push("Change detection canceled", "Partial outputs were removed.", None, False)
        else:
            self._report_failure()

    def _publish(self, result: WorkerResult) -> None:
        _, self.layers = add_results(
            run_name(self.name), result.outputs, probability=self.add_probability, project=self.project
        )
        polygons = result.summary.get("polygons", len(self.layers))
        area = result.summary.get("changed_area_m2")
        text = f"{polygons} change polygon(s)" + (f", {float(area):,.0f} m²" if area is not None else "")
        text += labels_text(result.summary)
        where = self.output or self.params.out_dir
        QgsMessageLog.logMessage(f"Done: {text}; outputs in {where}", LOG_TAG, Qgis.MessageLevel.Success)
        self._message_bar_push("Change detection finished", text, None, False)
        self._push_warnings(result)

    def _push_warnings(self, result: WorkerResult) -> None:
        """The engine's warnings (e.g. pixels outside the model's range) stay on the message bar until closed."""
        for warning in result.warnings:
            QgsMessageLog.logMessage(warning, LOG_TAG, Qgis.MessageLevel.Warning)
            self._message_bar_push("ClipCD", warning, None, False, Qgis.MessageLevel.Warning)

    def _report_failure(self) -> None:
        log = list(self.result.log) if self.result is not None else []
        message = self.error or "the engine failed without a message"
        QgsMessageLog.logMessage(message, LOG_TAG, Qgis.MessageLevel.Critical)
        for line in log:
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)
        self._message_bar_push("Change detection failed", message, "\n".join(log) or None, True)

    def _message_bar_push(self, title: str, text: str, more: str | None, critical: bool, level: Any = None) -> None:
        iface = self.iface
        if iface is None:
            from qgis.utils import iface as qgis_iface

            iface = qgis_iface
        if iface is None:
            return
        if level is None:
            level = Qgis.MessageLevel.Critical if critical else Qgis.MessageLevel.Success
        duration = 5 if level == Qgis.MessageLevel.Success else 0
        bar = iface.messageBar()
        if more:
            bar.pushMessage(title, text, more, level, duration)
        else:
            bar.pushMessage(title, text, level, duration)


#: Output name -> suffix of the file written beside a chosen GeoPackage.
_BESIDE = {"probability": "_probability.tif", "mask": "_mask.tif", "preview": "_preview.png"}


def deliver(outputs: dict[str, str], gpkg: str) -> dict[str, str]:
    """Move the worker's outputs to the chosen GeoPackage and files beside it; return the new paths.

    Each move is a rename within one file system (the staging folder sits beside the GeoPackage),
    so a reader never sees a half-written file.
    """
    target = Path(gpkg)
    target.parent.mkdir(parents=True, exist_ok=True)
    moved: dict[str, str] = {}
    for name, path in outputs.items():
        if name == "changes":
            destination = target
        elif name in _BESIDE:
            destination = target.with_name(target.stem + _BESIDE[name])
        else:
            continue
        Path(path).replace(destination)
        moved[name] = str(destination)
    return moved


def labels_text(summary: dict[str, Any]) -> str:
    """The labels of a run's ``done`` event in words ("; labels by X: a → b (3), c (1)"), or ""."""
    labels = summary.get("labels")
    if not isinstance(labels, dict):
        return ""
    top = ", ".join(f"{label} ({count})" for label, count in list(labels.items())[:3])
    more = f", {len(labels) - 3} more" if len(labels) > 3 else ""
    dropped = summary.get("dropped_by_prompts") or 0
    kept = f"; {dropped} dropped by the prompts" if dropped else ""
    return f"; labels by {summary.get('labelled_with')}: {top or 'none'}{more}{kept}"
