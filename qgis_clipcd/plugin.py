"""The plugin shell: Processing provider, Raster menu entry and toolbar button that toggle the dock."""

from __future__ import annotations

from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from qgis_clipcd.metadata import icon_path
from qgis_clipcd.processing_provider.provider import ClipCDProvider

MENU = "&CLIP Change Detection"
ACTION_TEXT = "CLIP Change Detection"
ACTION_NAME = "clipcd_toggle_dock"
LOG_TAG = "ClipCD"


class ClipCDPlugin:
    """What QGIS loads: ``initGui`` adds the provider, menu entry and button; ``unload`` removes them."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: ClipCDProvider | None = None
        self.action: QAction | None = None
        self.dock: Any = None
        self.engine_check: Any = None
        self.engine_status: Any = None

    def initProcessing(self) -> None:
        """Register the Processing provider (also called by qgis_process, which has no GUI)."""
        if self.provider is None:
            provider = ClipCDProvider()
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider
            else:  # the registry has deleted it
                message = "A Processing provider 'clipcd' is already registered"
                QgsMessageLog.logMessage(message, LOG_TAG, Qgis.MessageLevel.Warning)

    def initGui(self) -> None:
        """Add the provider, the Raster menu entry and the toolbar button."""
        self.initProcessing()
        self.action = QAction(QIcon(str(icon_path())), ACTION_TEXT, self.iface.mainWindow())
        self.action.setObjectName(ACTION_NAME)
        self.action.setCheckable(True)
        self.action.setToolTip("Show or hide the CLIP change detection panel")
        self.action.toggled.connect(self.toggle_dock)
        self.iface.addPluginToRasterMenu(MENU, self.action)
        self.iface.addRasterToolBarIcon(self.action)
        self._check_engine()

    def _check_engine(self) -> None:
        """Look for the engine's Python in the background; say so on the message bar when there is none."""
        from qgis_clipcd.engine.check import EngineCheckTask

        task = EngineCheckTask()
        task.checked.connect(self._engine_checked)
        self.engine_check = task
        QgsApplication.taskManager().addTask(task)

    def _engine_checked(self, status: Any) -> None:
        self.engine_check = None
        self.engine_status = status
        if status.ok or self.action is None:  # fine, or unloaded meanwhile
            return
        QgsMessageLog.logMessage(status.message, LOG_TAG, Qgis.MessageLevel.Warning)
        self.iface.messageBar().pushWarning(
            "ClipCD",
            "the change detection engine (a Python with torch, open_clip and rasterio) is not installed yet: "
            "open Raster ▸ CLIP Change Detection and press Install backend.",
        )

    def unload(self) -> None:
        """Remove everything initGui added."""
        if self.dock is not None:
            cancel = getattr(self.dock, "cancel", None)
            if callable(cancel):
                cancel()  # a run in progress stops its worker; its temporary outputs are removed
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginRasterMenu(MENU, self.action)
            self.iface.removeRasterToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def toggle_dock(self, visible: bool) -> None:
        """Show or hide the dock, creating it on first use."""
        if self.dock is None:
            if not visible:
                return
            self.dock = self._create_dock()
            if self.dock is None:
                if self.action is not None:
                    self.action.setChecked(False)
                return
        self.dock.setVisible(visible)

    def _create_dock(self) -> Any:
        try:
            from qgis_clipcd.dock.widget import ClipCDDock
        except ImportError as exc:
            QgsMessageLog.logMessage(f"The ClipCD panel is not available yet: {exc}", LOG_TAG, Qgis.MessageLevel.Info)
            return None
        # the dock shows the on-load check (finished or still running) instead of running a second one
        known, running = self.engine_status, self.engine_check
        dock = ClipCDDock(self.iface, check_engine=known is None and running is None)
        if known is not None:
            dock.engine.show_status(known)
        elif running is not None:
            running.checked.connect(dock.engine.show_status)
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        dock.visibilityChanged.connect(self._dock_visibility_changed)
        return dock

    def _dock_visibility_changed(self, visible: bool) -> None:
        if self.action is not None and self.action.isChecked() != visible:
            self.action.setChecked(visible)
