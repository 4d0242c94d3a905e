"""``python -m backend stack FOLDER --out FILE``: single-band files -> one multi-band GeoTIFF the dock can take.

For an OSCD city date (``imgs_1/``), a Sentinel-2 ``IMG_DATA`` folder or Landsat band files: the
bands are found by the code their names end with, resampled onto one grid and written with band
descriptions (``B04 red``...) so that ``backend detect`` and the dock pick them by name.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from backend.raster.pixel_size import describe, pixel_size_m
from backend.raster.stack import stack_bands

_log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    """Register ``stack`` on the CLI's subparsers."""
    stack = subparsers.add_parser(
        "stack", help="write one multi-band GeoTIFF from a folder of single-band files (Sentinel-2, Landsat, OSCD)"
    )
    stack.add_argument("folder", type=Path, help="folder of band files named ..._B02.tif, ..._B8A.jp2, ..._SR_B4.TIF")
    stack.add_argument("--out", type=Path, required=True, help="the GeoTIFF to write")
    stack.add_argument(
        "--bands", help="band codes to keep, in this order, e.g. B04,B03,B02,B08 (default: every band found)"
    )
    stack.add_argument("--like", type=Path, help="resample onto this raster's grid (default: the finest band's)")
    stack.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Stack the folder; errors are raised as :class:`backend.errors.InputError` for the CLI to report."""
    bands = [code.strip() for code in args.bands.split(",") if code.strip()] if args.bands else None
    grid, descriptions = stack_bands(args.folder, args.out, bands, args.like)
    size = pixel_size_m(grid.crs, grid.transform, grid.width, grid.height)
    _log.info(
        "wrote %s: %d bands (%s), %d x %d pixels of %s in %s",
        args.out,
        len(descriptions),
        ", ".join(descriptions),
        grid.width,
        grid.height,
        describe(size),
        grid.crs,
    )
    return 0
