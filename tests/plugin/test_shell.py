"""The plugin shell in real QGIS: load and unload are clean; every module is Qt6-ready and engine-free."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

qgis_core = pytest.importorskip("qgis.core", reason="QGIS (python3-qgis) is not installed")
pytestmark = pytest.mark.qgis

PACKAGE = REPO_ROOT / "qgis_clipcd"
MODULES = sorted(f"qgis_clipcd.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")
# Qt.AlignLeft (unscoped, gone in PyQt6) but not Qt.AlignmentFlag.AlignLeft: a capitalised name after
# "Qt." that is not itself followed by ".Member".
UNSCOPED_QT = re.compile(r"\bQt\.[A-Z][A-Za-z0-9_]*\b(?!\.)")


def registry() -> object:
    return qgis_core.QgsApplication.processingRegistry()


def our_actions(window: object) -> list[object]:
    from qgis.PyQt.QtWidgets import QAction

    from qgis_clipcd.plugin import ACTION_NAME

    return window.findChildren(QAction, ACTION_NAME)


def flush_deletes() -> None:
    from qgis.PyQt.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def test_load_and_unload_are_clean(qgis_iface: object) -> None:
    import qgis_clipcd
    from qgis_clipcd.plugin import MENU

    assert registry().providerById("clipcd") is None
    plugin = qgis_clipcd.classFactory(qgis_iface)
    plugin.initGui()
    action = plugin.action
    assert registry().providerById("clipcd") is plugin.provider
    assert registry().algorithmById("clipcd:detect_change") is not None
    qgis_iface.addPluginToRasterMenu.assert_called_with(MENU, action)
    qgis_iface.addRasterToolBarIcon.assert_called_with(action)
    assert our_actions(qgis_iface.mainWindow()) == [action]
    assert action.text() == "CLIP Change Detection" and not action.icon().isNull()

    action.trigger()  # shows the dock (or logs that it is not there yet)
    dock = plugin.dock
    if dock is not None:
        from qgis.gui import QgsDockWidget

        assert isinstance(dock, QgsDockWidget) and action.isChecked()
        action.trigger()
        assert not dock.isVisible()
    plugin.unload()
    flush_deletes()
    assert registry().providerById("clipcd") is None
    assert registry().algorithmById("clipcd:detect_change") is None
    qgis_iface.removePluginRasterMenu.assert_called_with(MENU, action)
    qgis_iface.removeRasterToolBarIcon.assert_called_with(action)
    from qgis.PyQt import sip

    assert sip.isdeleted(action)
    assert dock is None or sip.isdeleted(dock)
    assert plugin.action is None and plugin.dock is None and plugin.provider is None
    assert our_actions(qgis_iface.mainWindow()) == []


def test_plugin_loads_twice(qgis_iface: object) -> None:
    import qgis_clipcd

    for _ in range(2):
        plugin = qgis_clipcd.classFactory(qgis_iface)
        plugin.initGui()
        assert registry().providerById("clipcd") is not None
        plugin.unload()
    assert registry().providerById("clipcd") is None


def test_the_dock_shows_the_check_made_on_load(qgis_iface: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """One engine check per start: the dock opened later reuses the plugin's instead of running its own."""
    import qgis_clipcd
    from qgis_clipcd.dock import engine_panel
    from tests.plugin.helpers import wait_for_task

    monkeypatch.setenv("CLIPCD_PYTHON", sys.executable)
    plugin = qgis_clipcd.classFactory(qgis_iface)
    plugin.initGui()
    assert plugin.engine_check is not None
    assert wait_for_task(plugin.engine_check, timeout=120)
    assert plugin.engine_status is not None and plugin.engine_status.ok
    started: list[object] = []
    monkeypatch.setattr(engine_panel.EnginePanel, "refresh", lambda self: started.append(self))
    plugin.action.trigger()
    assert started == [] and plugin.dock.engine.status is plugin.engine_status
    assert plugin.dock.engine_status is plugin.engine_status  # the dock heard it too (devices, Run)
    plugin.unload()
    flush_deletes()


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports(module: str, qgis_app: object) -> None:
    importlib.import_module(module)


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_source_is_ready_for_qt6(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())
    assert not UNSCOPED_QT.findall(code), f"{path.name}: unscoped Qt enums {UNSCOPED_QT.findall(code)}"
    assert "exec_(" not in code, f"{path.name}: use exec(), not exec_()"
    assert not re.search(r"\b(from|import)\s+PyQt[56]\b", code), f"{path.name}: import from qgis.PyQt only"
    assert not re.search(r"^\s*(from|import)\s+(torch|rasterio|backend)\b", code, re.MULTILINE), (
        f"{path.name}: the engine runs in the worker process, never inside QGIS"
    )


def test_unscoped_pattern() -> None:
    assert UNSCOPED_QT.findall("x = Qt.AlignLeft | Qt.AlignmentFlag.AlignTop") == ["Qt.AlignLeft"]
    assert not UNSCOPED_QT.findall("Qt.DockWidgetArea.RightDockWidgetArea, QtCore.Qt.ItemDataRole.UserRole")


def test_importing_the_plugin_loads_no_engine() -> None:
    """Inside QGIS no module may bring in torch, rasterio or the backend (QGIS's GDAL/PROJ/NumPy clash)."""
    code = (
        "import sys, importlib\n"
        f"for name in {[*MODULES, 'qgis_clipcd']!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'rasterio', 'backend', 'open_clip'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
