"""A tiny pure-Python wheel built by hand, so install tests run pip for real without any network."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

NAME = "clipcd-tiny"
MODULE = "clipcd_tiny"
VERSION = "0.1"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def tiny_wheel(folder: Path) -> Path:
    """Write ``clipcd_tiny-0.1-py3-none-any.whl`` (module ``clipcd_tiny`` with ``VALUE = 42``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{MODULE}-{VERSION}.dist-info"
    files = {
        f"{MODULE}/__init__.py": b"VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: clipcd-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(path, data) for path, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{MODULE}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def tiny_requirements(folder: Path) -> Path:
    """A requirements file that pins the tiny wheel (install it with ``--no-index --find-links <folder>``)."""
    tiny_wheel(folder)
    path = folder / "requirements.txt"
    path.write_text(f"# test pins\n{NAME}=={VERSION}\n")
    return path
