"""The "CLIP weights" dialog: the engine's CLIP catalogue, download with progress and cancel, add, remove.

Every action is one :class:`~qgis_clipcd.models.clip_weights.ClipTask` in the task manager; the
dialog stays usable (and closable) while it runs and refreshes the list when it ends.
"""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt, pyqtSignal, pyqtSlot
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qgis_clipcd.engine.worker import WorkerResult
from qgis_clipcd.models.clip_weights import ClipRow, ClipTask

COLUMNS = ("Name", "Architecture", "Size", "Licence", "On this computer")
#: Architectures offered by "Add file…" (any open_clip name may be typed).
COMMON_ARCHS = ("", "ViT-B-32", "ViT-B-16", "ViT-L-14", "RN50", "ViT-B-32-quickgelu", "ViT-B-16-quickgelu")


class ClipWeightsDialog(QDialog):  # type: ignore[misc]
    """Lists the CLIP catalogue and the added files; downloads, adds and removes through the engine.

    ``listed`` carries, after every listing, the name of the weights the engine labels with (or None).

    Args:
        python: The engine's Python.
        parent: The parent widget.
        start: List the weights now (tests may call :meth:`refresh` themselves).
    """

    listed = pyqtSignal(object)

    def __init__(self, python: str, parent: QWidget | None = None, *, start: bool = True) -> None:
        super().__init__(parent)
        self.setWindowTitle("ClipCD: CLIP weights")
        self.setObjectName("ClipCDClipWeights")
        self.resize(780, 420)
        self.python = python
        self.rows: list[ClipRow] = []
        self.task: ClipTask | None = None
        self.last_message = ""  # what the last download/add/remove said, shown above the list's line
        self._build()
        if start:
            self.refresh()

    def _build(self) -> None:
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.status = QLabel("Listing the CLIP weights…", self)
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.download_button = QPushButton("Download", self)
        self.download_button.setToolTip("Download the selected catalogue entry (checked against its sha256)")
        self.add_button = QPushButton("Add file…", self)
        self.add_button.setToolTip("Register a CLIP file already on this computer (checked that it loads)")
        self.remove_button = QPushButton("Remove", self)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel", self)
        for widget in (self.progress, self.cancel_button):
            widget.setVisible(False)
        actions = QHBoxLayout()
        for button in (self.download_button, self.add_button, self.remove_button):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.progress, 1)
        actions.addWidget(self.cancel_button)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(actions)
        layout.addWidget(self.status)
        layout.addWidget(close)
        self.download_button.clicked.connect(self.download_selected)
        self.add_button.clicked.connect(self._add_clicked)
        self.remove_button.clicked.connect(self.remove_selected)
        self.cancel_button.clicked.connect(self.cancel)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        close.rejected.connect(self.reject)
        self._update_buttons()

    # -- actions ------------------------------------------------------------------------------
    def refresh(self) -> ClipTask:
        """List the catalogue and what is present (in the background)."""
        return self._start("list")

    def download(self, name: str) -> ClipTask:
        """Download the catalogue entry ``name`` with progress; Cancel keeps the part downloaded."""
        return self._start("get", name)

    def add_file(self, path: str, arch: str = "") -> ClipTask:
        """Register a local CLIP file (``arch`` may be empty for a file of the catalogue)."""
        return self._start("add", path, *(["--arch", arch] if arch else []))

    def remove(self, name: str) -> ClipTask:
        """Delete the weights ``name`` from this computer."""
        return self._start("remove", name)

    def selected(self) -> ClipRow | None:
        """The row the user selected, if any."""
        rows = {index.row() for index in self.table.selectedIndexes()}
        return self.rows[rows.pop()] if len(rows) == 1 and self.rows else None

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def download_selected(self) -> None:
        """Download the selected entry."""
        row = self.selected()
        if row is not None and not row.present:
            self.download(row.name)

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def remove_selected(self) -> None:
        """Remove the selected entry's file."""
        row = self.selected()
        if row is not None and row.present:
            self.remove(row.name)

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def cancel(self) -> None:
        """Cancel the running action."""
        if self.task is not None:
            self.task.cancel()

    @pyqtSlot()  # type: ignore[misc, untyped-decorator]
    def _add_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a CLIP file", "", "CLIP weights (*.pt *.pth *.bin *.safetensors)"
        )
        if not path:
            return
        arch, ok = QInputDialog.getItem(
            self,
            "Architecture",
            "open_clip architecture (leave empty for a file of the catalogue):",
            list(COMMON_ARCHS),
            0,
            True,
        )
        if ok:
            self.add_file(path, str(arch).strip())

    # -- tasks --------------------------------------------------------------------------------
    def _start(self, action: str, *args: str) -> ClipTask:
        task = ClipTask(self.python, action, *args)
        self.task = task
        task.done.connect(self._done)  # bound slots: disconnected if the dialog goes first
        task.progressChanged.connect(self._progress)
        busy = {
            "list": "Listing the CLIP weights…",
            "get": f"Downloading {args[0] if args else ''}…",
            "add": "Checking that the file loads, then adding it…",
            "remove": f"Removing {args[0] if args else ''}…",
        }
        self.status.setText(busy[action])
        self.progress.setValue(0)
        self.progress.setVisible(action == "get")
        self.cancel_button.setVisible(action == "get")
        self._update_buttons()
        QgsApplication.taskManager().addTask(task)
        return task

    @pyqtSlot(float)  # type: ignore[misc, untyped-decorator]
    def _progress(self, value: float) -> None:
        self.progress.setValue(int(value))

    @pyqtSlot(object)  # type: ignore[misc, untyped-decorator]
    def _done(self, result: WorkerResult) -> None:
        task = self.sender()
        if task is not self.task or not isinstance(task, ClipTask):
            return
        self.task = None
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        if task.action == "list":
            if result.ok:
                self._show(task.rows)
                present = sum(row.present for row in task.rows)
                folder = result.summary.get("writes_to", "")
                line = f"{present} of {len(task.rows)} present; files go to {folder}"
                self.listed.emit(result.summary.get("labels_with"))
                self.status.setText(f"{self.last_message}\n{line}" if self.last_message else line)
            else:
                self.status.setText(f"Could not list the CLIP weights: {result.message}")
            self._update_buttons()
            return
        summary = result.summary
        if result.ok and task.action == "get":
            pinned = " (hash pinned on first download: the publisher gives none)" if summary.get("pinned") else ""
            message = f"Downloaded {summary.get('name')}: sha256 {summary.get('sha256')}{pinned}."
        elif result.ok and task.action == "add":
            message = f"Added {summary.get('name')} ({summary.get('arch')})."
        elif result.ok:
            message = "Removed."
        else:
            message = result.message or "The action failed; see the ClipCD log."
        self.last_message = message
        self.refresh()
        self.status.setText(message)

    def _show(self, rows: list[ClipRow]) -> None:
        self.rows = rows
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            cells = (row.name, row.arch, f"{row.size_mb} MB", row.licence, "yes" if row.present else "no")
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{row.note}\n{row.url or row.path or ''}\nsha256 {row.sha256}")
                self.table.setItem(index, column, item)
        self.table.resizeColumnsToContents()

    def _update_buttons(self) -> None:
        idle = self.task is None or self.task.action == "list"
        row = self.selected()
        self.download_button.setEnabled(idle and row is not None and not row.present and row.url is not None)
        self.remove_button.setEnabled(idle and row is not None and row.present)
        self.add_button.setEnabled(idle)
