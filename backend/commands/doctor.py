"""``python -m backend doctor``: what is installed, what the GPU can do, what is missing and how to fix it."""

from __future__ import annotations

import contextlib
import importlib
import platform
import sys
from typing import TextIO

from backend.clip import store

_FIXES = {
    "numpy": "pip install 'numpy<2'  (QGIS 3.22's GDAL bindings need NumPy 1.x)",
    "torch": "pip install torch==2.14.1 torchvision==0.29.1",
    "torchvision": "pip install torch==2.14.1 torchvision==0.29.1",
    "open_clip": "pip install open_clip_torch==3.3.0",
    "rasterio": "pip install rasterio==1.4.4 'affine<3'",
    "affine": "pip install 'affine<3'",
    "shapely": "pip install 'shapely>=2'",
    "pyproj": "pip install pyproj",
    "pyogrio": "pip install pyogrio",
    "safetensors": "pip install safetensors",
    "scipy": "pip install scipy",
    "PIL": "pip install pillow",
    "osgeo.gdal": "sudo apt-get install python3-gdal  (only needed for the plugin)",
    "qgis.core": "sudo apt-get install qgis python3-qgis  (only needed for the plugin)",
}


# The engine reads and writes through rasterio's and pyogrio's own GDAL; these serve the plugin.
_OPTIONAL = ("osgeo.gdal", "qgis.core")


def _version(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:
        return None
    for attr in ("__version__", "VERSION", "version"):
        value = getattr(module, attr, None)
        if isinstance(value, str):
            return value
    if module_name == "qgis.core":
        return str(getattr(module, "Qgis").QGIS_VERSION)  # noqa: B009  (Qgis only exists at run time)
    return "installed"


def run_doctor(out: TextIO) -> int:
    """Print the report; return 0 when everything the engine needs is present, else 2."""
    lines = [f"python      {sys.version.split()[0]} ({sys.executable}) on {platform.platform()}"]
    missing: list[str] = []
    for name in _FIXES:
        version = _version(name)
        if version is None:
            missing.append(name)
        lines.append(f"{name:<11} {version or 'MISSING'}")
    rasterio_gdal = _gdal_versions()
    if rasterio_gdal:
        lines.append(f"GDAL        {rasterio_gdal}")
    numpy_version = _version("numpy")
    if numpy_version and numpy_version.split(".")[0] >= "2":
        missing.append("numpy")
        lines.append("numpy 2 is installed: QGIS 3.22's GDAL bindings need NumPy 1.x")
    lines.extend(_gpu_lines())
    lines.append(_clip_line())
    out.write("\n".join(lines) + "\n")
    needed = [name for name in missing if name not in _OPTIONAL]
    if missing:
        out.write("\nmissing or unusable, and the command that fixes it:\n")
        for name in missing:
            out.write(f"  {name:<11} {_FIXES[name]}\n")
    else:
        out.write("\neverything the engine and the plugin need is present\n")
    return 2 if needed else 0


def _clip_line() -> str:
    """Which CLIP weights are present (the labelling and the ChangeCLIP configs need them; detect does not)."""
    try:
        present = store.installed()
    except OSError as exc:
        return f"clip        cannot read {store.write_dir()}: {exc}"
    if not present:
        return (
            f"clip        no CLIP weights in {store.write_dir()} (optional: python -m backend clip get openai-vit-b-16)"
        )
    names = ", ".join(f"{w.name} ({w.arch})" for w in present.values())
    return f"clip        {names}"


def _gdal_versions() -> str:
    parts = []
    with contextlib.suppress(Exception):  # a missing rasterio is reported above
        import rasterio

        parts.append(f"{rasterio.__gdal_version__} (rasterio)")
    with contextlib.suppress(Exception):  # a missing osgeo is reported above
        from osgeo import gdal

        parts.append(f"{gdal.__version__} (osgeo, system)")
    return ", ".join(parts)


def _gpu_lines() -> list[str]:
    try:
        import torch
    except Exception:
        return ["gpu         unknown (torch missing)"]
    lines = [f"torch build CUDA {torch.version.cuda or 'none'}, {torch.get_num_threads()} CPU threads"]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            bf16 = torch.cuda.is_bf16_supported()
            lines.append(
                f"gpu {index}       {props.name}, {props.total_memory / 2**30:.1f} GiB, "
                f"compute {props.major}.{props.minor}, bf16 {'yes' if bf16 else 'no'}"
            )
    else:
        lines.append("gpu         none visible to torch: inference runs on the CPU (slower; same model, full float32)")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("mps         available (Apple GPU)")
    return lines
