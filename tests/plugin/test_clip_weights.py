"""The "CLIP weights" dialog in real QGIS: it lists through the engine, downloads from a local server, cancels."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.plugin.helpers import wait_for_task
from tests.plugin.release_server import DATA, DATA_SHA, Server, base_url

REMOTECLIP_PATH = "/chendelong/RemoteCLIP/resolve/main/RemoteCLIP-ViT-B-32.pt"


@pytest.fixture
def mirror(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The local server in the publishers' URL layout, as the engine's CLIP mirror."""
    monkeypatch.setenv("CLIPCD_CLIP_MIRROR", base_url(server))
    server.served.files = {REMOTECLIP_PATH: DATA}
    return server


def _row(dialog: object, name: str) -> object:
    return next(row for row in dialog.rows if row.name == name)  # type: ignore[attr-defined]


@pytest.mark.qgis
def test_the_dialog_lists_downloads_with_progress_and_removes(
    mirror: Server, private_clip_folder: Path, qgis_new_project: None
) -> None:
    from qgis_clipcd.dock.clip_dialog import ClipWeightsDialog

    dialog = ClipWeightsDialog(sys.executable, start=False)
    assert wait_for_task(dialog.refresh(), 120)
    assert dialog.table.rowCount() >= 8 and not _row(dialog, "openai-vit-b-16").present  # type: ignore[attr-defined]
    assert str(private_clip_folder) in dialog.status.text()

    dialog.table.selectRow([row.name for row in dialog.rows].index("remoteclip-vit-b-32"))
    assert dialog.download_button.isEnabled() and not dialog.remove_button.isEnabled()
    progress: list[float] = []
    task = dialog.download("remoteclip-vit-b-32")
    task.progressChanged.connect(progress.append)
    assert dialog.progress.isVisible() or not dialog.isVisible()
    assert wait_for_task(task, 120) and task.result.ok, task.result.message
    assert progress and max(progress) == pytest.approx(100.0)
    assert task.result.summary["sha256"] == DATA_SHA and task.result.summary["pinned"] is True
    assert (private_clip_folder / "remoteclip-vit-b-32.pt").read_bytes() == DATA
    assert wait_for_task(dialog.task, 120)  # the list that follows every action
    assert _row(dialog, "remoteclip-vit-b-32").present  # type: ignore[attr-defined]
    assert "pinned on first download" in dialog.status.text()

    assert wait_for_task(dialog.remove("remoteclip-vit-b-32"), 120)
    assert wait_for_task(dialog.task, 120)
    assert not (private_clip_folder / "remoteclip-vit-b-32.pt").exists()
    assert not _row(dialog, "remoteclip-vit-b-32").present  # type: ignore[attr-defined]


@pytest.mark.qgis
def test_canceling_a_download_keeps_the_part_for_the_next_try(
    mirror: Server, private_clip_folder: Path, qgis_new_project: None
) -> None:
    from qgis.PyQt.QtCore import QCoreApplication

    from qgis_clipcd.dock.clip_dialog import ClipWeightsDialog

    assert mirror.served.files is not None
    mirror.served.files[REMOTECLIP_PATH] = DATA * 8  # 2 MiB
    mirror.served.delay = 0.01  # 8 KiB per 10 ms: about 3 s
    dialog = ClipWeightsDialog(sys.executable, start=False)
    task = dialog.download("remoteclip-vit-b-32")
    deadline = time.monotonic() + 60
    while task.progress() < 5 and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    dialog.cancel()
    assert wait_for_task(task, 60)
    assert not task.result.ok and task.result.error_kind == "canceled"
    assert "resumed next time" in task.result.message
    assert not (private_clip_folder / "remoteclip-vit-b-32.pt").exists()
    assert (private_clip_folder / "remoteclip-vit-b-32.pt.partial").is_file()
    wait_for_task(dialog.task, 120)
