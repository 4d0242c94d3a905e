"""Output files that appear only when complete.

Everything the engine writes goes under a temporary name beside its target and is renamed over
the target only when it is whole; on any error, cancel included, the temporary file is deleted
and the target is left as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.errors import OutputError


def partial_path(path: Path) -> Path:
    """The temporary name of ``path`` while it is being written: ``<stem>.partial<suffix>``.

    The suffix stays last so drivers that go by it (GeoPackage, PNG) still recognise the file.
    """
    return path.with_name(f"{path.stem}.partial{path.suffix}")


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield the temporary path to write ``path`` under; rename it on success, delete it on error."""
    target = Path(path)
    partial = partial_path(target)
    try:
        yield partial
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def ensure_writable_folder(folder: Path) -> None:
    """Create ``folder`` if needed; raise :class:`OutputError` when it cannot hold new files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the output folder {folder}: {exc.strerror or exc}. Choose another --out folder."
        ) from exc
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"The output folder {folder} is not writable. Choose another --out folder.")
