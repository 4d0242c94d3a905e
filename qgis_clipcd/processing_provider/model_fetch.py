"""The default model for a Processing run: downloaded once into the QGIS profile, progress to the feedback."""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import QCoreApplication

from qgis_clipcd.models import store as model_store
from qgis_clipcd.models.download import DownloadCanceled, DownloadError


def _tr(text: str) -> str:
    return str(QCoreApplication.translate("ClipCD", text))


def fetch_default_model(feedback: QgsProcessingFeedback) -> str:
    """Download the default model (once; it is kept in the QGIS profile) with progress to ``feedback``.

    Raises:
        QgsProcessingException: canceled, or the download failed; the message says what to do.
    """
    feedback.pushInfo(
        _tr(f"Downloading the default model from {model_store.model_url()} into {model_store.models_dir()}")
    )
    shown = [-1]

    def progress(done: int, total: int | None) -> None:
        total = total or model_store.DEFAULT_MODEL_SIZE
        percent = int(100 * done / total) if total else 0
        if percent == shown[0]:
            return
        if percent // 10 != shown[0] // 10:  # the text every 10 % (qgis_process prints each one)
            feedback.setProgressText(_tr(f"Downloading the default model: {done / 1e6:.1f} of {total / 1e6:.1f} MB"))
        shown[0] = percent
        feedback.setProgress(percent)

    try:
        path = model_store.fetch_default_model(progress, feedback.isCanceled)
    except DownloadCanceled:
        raise QgsProcessingException(_tr("Canceled while downloading the default model.")) from None
    except DownloadError as exc:
        raise QgsProcessingException(str(exc)) from None
    feedback.setProgress(0)
    return str(path)
