"""Download the default model in the background (a QgsTask), alone or before a detection run.

Recommended wiring in the dock: ONE task in the task manager. Build the run with
:func:`qgis_clipcd.models.store.model_for_run`, which already names the file the download will
write; when it says a download is needed, :func:`attach_download` adds a :class:`DownloadTask` as a
subtask the detection depends on (``QgsTask.SubTaskDependency.ParentDependsOnSubTask``)::

    model, missing = model_store.model_for_run(self.model_path())
    task = DetectTask(dataclasses.replace(self.run_params(), model=model), iface=self.iface)
    download = attach_download(task) if missing else None
    QgsApplication.taskManager().addTask(task)

QGIS then runs the download first and the detection only once it completed; the parent's progress
is the mean of both (0-50 % downloading, 50-100 % detecting) and canceling the parent cancels the
download (its partial file is kept for the next try). When the download fails, QGIS cancels the
parent: its ``finished(False)`` runs with ``isCanceled()`` True, then the download's ``finished``
reports the error (message log and message bar). Chaining two top-level tasks on ``taskCompleted``
works too, but the dock then has to track two tasks, two cancels and two progress ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsTask

from qgis_clipcd.models import store as model_store
from qgis_clipcd.models.download import MODEL_OFFLINE_HINT, DownloadCanceled, DownloadError, download

LOG_TAG = "ClipCD"


class DownloadTask(QgsTask):  # type: ignore[misc]
    """Downloads the default model (or a given url/dest/sha256) off the main thread.

    Attributes:
        path: The verified file once the task succeeded (None before or on failure).
        error: Why it failed or was canceled ("" on success).
        canceled: True when the download was canceled (the partial file is kept).
    """

    def __init__(
        self,
        url: str | None = None,
        dest: str | Path | None = None,
        sha256: str | None = None,
        *,
        iface: Any = None,
        description: str = "ClipCD: download the default model",
        report: bool = True,
    ) -> None:
        """Prepare the download; nothing starts until the task manager runs it.

        Args:
            url: What to download; None (with ``dest`` and ``sha256`` None) fetches the default model
                into the QGIS profile (:func:`qgis_clipcd.models.store.fetch_default_model`).
            dest: The final file (required with ``url``).
            sha256: The expected digest (required with ``url``).
            iface: The QGIS interface for the message bar (None: ``qgis.utils.iface``; none in tests).
            description: The task manager's label.
            report: Push a failure to the message bar (False when a parent task reports it).
        """
        super().__init__(description, QgsTask.Flag.CanCancel)
        if url is not None and (dest is None or not sha256):
            raise ValueError("DownloadTask needs dest and sha256 together with url")
        self.url = url
        self.dest = Path(dest) if dest is not None else None
        self.sha256 = sha256 or ""
        self.iface = iface
        self.report = report
        self.path: Path | None = None
        self.error = ""
        self.canceled = False

    def run(self) -> bool:
        """Task thread: download with ``setProgress`` and ``isCanceled``; never raises."""
        try:
            if self.url is None or self.dest is None:
                self.path = model_store.fetch_default_model(self._on_progress, self.isCanceled)
            else:
                self.path = download(
                    self.url,
                    self.dest,
                    self.sha256,
                    on_progress=self._on_progress,
                    is_canceled=self.isCanceled,
                    offline_hint=MODEL_OFFLINE_HINT,
                )
            return True
        except DownloadCanceled as exc:
            self.canceled = True
            self.error = str(exc)
        except DownloadError as exc:
            self.error = str(exc)
        except Exception as exc:  # never let an exception escape into the task manager's thread
            self.error = f"{type(exc).__name__}: {exc}"
        return False

    def _on_progress(self, done: int, total: int | None) -> None:
        total = total or model_store.DEFAULT_MODEL_SIZE
        self.setProgress(max(0.0, min(100.0, 100.0 * done / total)) if total else 0.0)

    def finished(self, result: bool) -> None:
        """Main thread: log the outcome; a failure also goes to the message bar."""
        if result:
            QgsMessageLog.logMessage(f"Model downloaded to {self.path}", LOG_TAG, Qgis.MessageLevel.Info)
            return
        if self.canceled or (self.isCanceled() and not self.error):
            QgsMessageLog.logMessage("Model download canceled.", LOG_TAG, Qgis.MessageLevel.Info)
            return
        QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.MessageLevel.Critical)
        if not self.report:
            return
        iface = self.iface
        if iface is None:
            from qgis.utils import iface as qgis_iface

            iface = qgis_iface
        if iface is not None:
            iface.messageBar().pushMessage("Model download failed", self.error, Qgis.MessageLevel.Critical, 0)


def attach_download(task: QgsTask, download_task: DownloadTask | None = None) -> DownloadTask:
    """Make ``task`` (e.g. a DetectTask, before it is added to the task manager) wait for a download.

    Returns:
        The download subtask (its ``path`` and ``error`` are readable once it ended; keep a
        reference: QGIS owns and deletes the C++ task).
    """
    subtask = download_task or DownloadTask(report=False)
    task.addSubTask(subtask, [], QgsTask.SubTaskDependency.ParentDependsOnSubTask)
    return subtask
