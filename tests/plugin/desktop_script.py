"""Drives the real QGIS desktop (``qgis --code desktop_script.py``) the way a new user would.

Reads its instructions from the JSON file named by ``$CLIPCD_E2E``: the before and after rasters,
where to write screenshots and the result. It loads both rasters, opens the ClipCD dock from its
toolbar action, picks the layers, presses Run, waits for the change layer, zooms to it, takes
screenshots, writes ``result.json`` and quits QGIS. Everything runs from QTimer callbacks so the
event loop keeps turning (the task, the download and the worker run as they would for a user).
"""

import json
import os
import time
import traceback
from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QAction, QApplication
from qgis.utils import iface, plugins

CONFIG = json.loads(Path(os.environ["CLIPCD_E2E"]).read_text(encoding="utf-8"))
OUT = Path(CONFIG["artifacts"])
OUT.mkdir(parents=True, exist_ok=True)
STARTED = time.monotonic()
STATE = {"steps": [], "ok": False}
TIMEOUT = float(CONFIG.get("timeout", 600))


def note(text):
    STATE["steps"].append([round(time.monotonic() - STARTED, 1), text])
    (OUT / "result.json").write_text(json.dumps(STATE, indent=2), encoding="utf-8")


def shot(name):
    QApplication.processEvents()
    path = OUT / name
    QApplication.primaryScreen().grabWindow(0).save(str(path))
    note(f"screenshot {path.name}")


def finish(ok):
    STATE["ok"] = ok
    note("finished" if ok else "failed")
    QTimer.singleShot(200, lambda: QApplication.instance().exit(0 if ok else 1))


def guarded(function):
    def run(*args):
        try:
            function(*args)
        except Exception:
            STATE["error"] = traceback.format_exc()
            shot("error.png")
            finish(False)

    return run


@guarded
def start():
    note(f"plugins loaded: {sorted(plugins)}")
    if "qgis_clipcd" not in plugins:
        from qgis.core import QgsSettings
        from qgis.utils import available_plugins, plugin_paths

        enabled = QgsSettings().value("PythonPlugins/qgis_clipcd")
        note(f"available: {available_plugins}; paths: {plugin_paths}; enabled: {enabled!r}")
        import qgis_clipcd  # noqa: F401  (an import error is the most useful message)

        raise RuntimeError("the ClipCD plugin is not loaded")
    window = iface.mainWindow()
    screen = QApplication.primaryScreen().geometry()
    window.setGeometry(screen)  # Xvfb has no window manager to maximise it
    before = QgsRasterLayer(CONFIG["before"], "before (2012)")
    after = QgsRasterLayer(CONFIG["after"], "after (2016)")
    if not (before.isValid() and after.isValid()):
        raise RuntimeError("the rasters did not load")
    QgsProject.instance().addMapLayers([after, before])
    iface.mapCanvas().setExtent(before.extent())
    action = window.findChild(QAction, "clipcd_toggle_dock")
    if action is None:
        raise RuntimeError("no ClipCD toolbar action")
    action.trigger()
    dock = plugins["qgis_clipcd"].dock
    dock.form.before.setLayer(before)
    dock.form.after.setLayer(after)
    note(f"dock open; check: {dock.form.check_label.text()}")
    QTimer.singleShot(1500, lambda: press_run(dock))


@guarded
def press_run(dock):
    shot("1-dock.png")
    STATE["run_pressed"] = time.monotonic()
    dock.run_button.click()
    note(f"Run pressed; status: {dock.status.text()}")
    QTimer.singleShot(500, lambda: wait_for_layer(dock))


@guarded
def wait_for_layer(dock):
    layers = [
        layer
        for layer in QgsProject.instance().mapLayers().values()
        if isinstance(layer, QgsVectorLayer) and layer.name().startswith("ClipCD")
    ]
    if layers:
        seconds = time.monotonic() - STATE["run_pressed"]
        STATE["run_to_layer_s"] = round(seconds, 1)
        STATE["features"] = layers[0].featureCount()
        STATE["status"] = dock.status.text()
        note(f"layer {layers[0].name()!r} with {layers[0].featureCount()} polygons after {seconds:.1f} s")
        QTimer.singleShot(1000, zoom)
        QTimer.singleShot(5000, lambda: done(dock))
        return
    if time.monotonic() - STATE["run_pressed"] > TIMEOUT:
        STATE["status"] = dock.status.text()
        raise RuntimeError(f"no change layer after {TIMEOUT:.0f} s; status: {dock.status.text()}")
    STATE["status"] = dock.status.text()
    QTimer.singleShot(500, lambda: wait_for_layer(dock))


@guarded
def zoom():
    iface.mapCanvas().setExtent(QgsProject.instance().mapLayersByName("before (2012)")[0].extent())
    iface.mapCanvas().refresh()


@guarded
def done(dock):
    canvas = iface.mapCanvas()
    note(f"canvas {canvas.width()}x{canvas.height()} px, extent {canvas.extent().toString(1)}")
    shot("2-result.png")
    finish(True)


QTimer.singleShot(3000, start)
