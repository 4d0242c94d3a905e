"""The background task behind "Install backend": runs the install plan off the main thread.

``run()`` (a worker thread) drives the plan's child processes; ``finished()`` (the main thread)
points the plugin at the new environment (QgsSettings ``clipcd/python``) only once its last step,
the import check, passed; a canceled or failed install leaves the settings as they were.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsSettings, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from qgis_clipcd.engine.environment import SETTINGS_KEY, can_run_backend
from qgis_clipcd.engine.pip_run import InstallResult, run_plan

_log = logging.getLogger(__name__)

LOG_TAG = "ClipCD"


class InstallTask(QgsTask):  # type: ignore[misc]
    """Creates the engine's environment and installs its requirements.

    Attributes:
        result: How the plan ended (None until ``run()`` returned).
    """

    #: The current step and pip's latest line (emitted from the task thread: connect to a QObject's slot).
    status = pyqtSignal(str)
    #: Emitted on the main thread (from ``finished``) with the InstallResult.
    installed = pyqtSignal(object)

    def __init__(self, plan: Sequence[Sequence[str]], python: Path, venv: Path | None = None) -> None:
        """Prepare the install; nothing starts until the task manager runs it.

        Args:
            plan: The steps (see :func:`installer.install_plan`).
            python: The new environment's interpreter, stored in the settings on success.
            venv: The environment's folder: removed again if creating it failed and it was not there before.
        """
        super().__init__("ClipCD: installing the engine", QgsTask.Flag.CanCancel)
        self.plan = [list(step) for step in plan]
        self.python = python
        self.venv = venv
        self._venv_existed = venv is not None and venv.exists()
        self.result: InstallResult | None = None

    def run(self) -> bool:
        """Task thread: run the plan; progress to ``setProgress``; cancel from ``isCanceled``."""
        cwd = self.venv.parent if self.venv is not None else None
        try:
            if cwd is not None:
                cwd.mkdir(parents=True, exist_ok=True)
            self.result = run_plan(self.plan, self._on_progress, self.isCanceled, cwd=cwd)
        except OSError as exc:
            self.result = InstallResult(ok=False, message=f"Cannot create the folder {cwd}: {exc}.")
        if not self.result.ok and self.result.failed_step == 0 and self.venv is not None and not self._venv_existed:
            shutil.rmtree(self.venv, ignore_errors=True)  # no half-made environment left behind
        return self.result.ok

    def _on_progress(self, fraction: float, message: str) -> None:
        self.setProgress(max(0.0, min(100.0, fraction * 100.0)))
        if message:
            self.status.emit(message)

    def finished(self, result: bool) -> None:
        """Main thread: on success point the plugin at the environment; log what happened; emit ``installed``."""
        outcome = self.result or InstallResult(ok=False, message="The installation was canceled.", canceled=True)
        if result and outcome.ok:
            QgsSettings().setValue(SETTINGS_KEY, str(self.python))
            can_run_backend.cache_clear()
            outcome.message = f"The engine was installed; ClipCD now uses {self.python}."
            QgsMessageLog.logMessage(outcome.message, LOG_TAG, Qgis.MessageLevel.Success)
        else:
            QgsMessageLog.logMessage(outcome.message, LOG_TAG, Qgis.MessageLevel.Warning)
            for line in outcome.log[-40:]:
                QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)
        self.installed.emit(outcome)
