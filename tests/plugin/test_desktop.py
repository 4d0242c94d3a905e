"""Desktop end to end: the built zip installed into a fresh profile of the real QGIS, run under Xvfb.

What a new user does: install ``dist/qgis_clipcd-<version>.zip``, open the dock from the toolbar,
choose the two dates, press Run. The plugin downloads the default model on first use (here from a
local HTTP server standing in for the release URL) and adds the change polygons to the map. The
screenshots and ``result.json`` stay in ``out/test-artifacts/desktop/`` (or ``$CLIPCD_ARTIFACTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT, _samples
from tests.plugin.helpers import raster_pair
from tests.plugin.release_server import REAL_MODEL, Server, url_of

pytestmark = [
    pytest.mark.qgis,
    pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("qgis") is None, reason="needs qgis and Xvfb"),
]

MODEL = REAL_MODEL
SCRIPT = Path(__file__).with_name("desktop_script.py")


@pytest.fixture
def release_server(server: Server) -> str:
    """The local release server (tests/plugin/release_server.py) serving the default model."""
    server.served.data = MODEL.read_bytes()
    return url_of(server, MODEL.name)


def artifacts() -> Path:
    folder = Path(os.environ.get("CLIPCD_ARTIFACTS") or REPO_ROOT / "out" / "test-artifacts" / "desktop")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def the_pair(folder: Path) -> tuple[Path, Path]:
    """LEVIR-CD test_1 as GeoTIFFs when the real samples are here, else a generated pair."""
    samples = _samples()
    if samples is not None:
        from backend.commands.demo import levir_geotiffs

        pair = levir_geotiffs(samples, "test_1", folder)
        if pair is not None:
            return pair
    return raster_pair(folder, size=(512, 512))


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


def test_a_new_user_installs_the_zip_and_gets_polygons_on_the_map(tmp_path: Path, release_server: str) -> None:
    out = artifacts()
    run([sys.executable, "-m", "tools.package_plugin", "--out", str(tmp_path / "dist")], cwd=REPO_ROOT)
    (zipped,) = (tmp_path / "dist").glob("qgis_clipcd-*.zip")
    home = tmp_path / "home"
    profile = home / ".local" / "share" / "QGIS" / "QGIS3" / "profiles" / "default"
    run(
        [sys.executable, "-m", "tools.deploy_plugin", "--profile-dir", str(profile), "--zip", str(zipped)],
        cwd=REPO_ROOT,
    )
    plugin = profile / "python" / "plugins" / "qgis_clipcd"
    assert not (plugin / "resources" / "models").exists()  # the model comes by download
    with (profile / "QGIS" / "QGIS3.ini").open("a", encoding="utf-8") as ini:
        ini.write(f"\n[clipcd]\npython={sys.executable}\n")  # the engine's interpreter, as set in the settings

    before, after = the_pair(tmp_path / "pair")
    config = tmp_path / "e2e.json"
    config.write_text(json.dumps({"before": str(before), "after": str(after), "artifacts": str(out), "timeout": 400}))
    # pytest-qgis points QGIS_CUSTOM_CONFIG_PATH at its own profile: the desktop gets a clean environment
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLIPCD_", "QT_QPA", "QGIS_"))}
    env.update(HOME=str(home), CLIPCD_E2E=str(config), CLIPCD_MODEL_URL=release_server)
    screen = ["-s", "-screen 0 1400x900x24"]
    argv = ["xvfb-run", "-a", *screen, "qgis", "--nologo", "--noversioncheck", "--code", str(SCRIPT)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    (out / "qgis.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert result["ok"], json.dumps(result, indent=2) + done.stderr[-3000:]
    assert result["features"] >= 1
    assert (profile / "clipcd" / "models" / MODEL.name).read_bytes() == MODEL.read_bytes()  # downloaded, verified

    image = np.asarray(Image.open(out / "2-result.png").convert("RGB")).astype(int)
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    change_coloured = (red > 180) & (green < 110) & (blue < 90)  # the orange-red change polygons
    assert change_coloured.sum() > 500, "no change polygons visible on the map canvas"
    assert image.std() > 20  # a real window, not a blank screen
