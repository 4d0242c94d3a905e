"""Turn mask.tif into change polygons with area and probability attributes in a GeoPackage.

Change pixels (value 1) are grouped into 4-connected polygons, as ``gdal_polygonize`` does by default;
holes are kept. The mask is polygonised by GDAL straight from the file (``rasterio.features.shapes`` on a band), under
a small GDAL block cache so the mask is never held whole in memory; only the polygons are. The
optional morphological clean-up and the per-polygon statistics also work in row strips. Memory is
therefore ``O(width * strip + polygons)``.

Each pixel-exact polygon is rasterised back into row strips of probability.tif to get ``mean_prob``
and ``max_prob`` over exactly its pixels. ``area_m2`` is planar in projected CRSs (scaled from the
CRS's linear unit) and geodesic on the CRS's ellipsoid in geographic CRSs.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyogrio.errors
import pyproj
import rasterio
import shapely
from rasterio import features
from rasterio.windows import Window
from scipy import ndimage

from backend.errors import InputError, OutputError, RasterError
from backend.outputs.components import region_stats
from backend.outputs.files import atomic_output, ensure_writable_folder
from backend.outputs.stitch import MASK_NODATA
from backend.outputs.write import AtomicGeoTiff
from backend.progress import CancelFn, ProgressFn, check_canceled, never_canceled, no_progress, scaled
from backend.raster.dataset import block_cache_bytes

_log = logging.getLogger(__name__)

STRIP_ROWS = 256  # rows per strip for clean-up (one block row of our GeoTIFFs)
FIELDS = ["id", "area_m2", "mean_prob", "max_prob"]


@dataclass(frozen=True)
class VectorizeResult:
    """What :func:`vectorize` wrote: ``count`` polygons covering ``area_m2`` square metres in ``path``."""

    count: int
    area_m2: float
    path: Path


def vectorize(
    mask_path: str | os.PathLike[str],
    probability_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    min_area: float = 0.0,
    simplify: float = 0.0,
    cleanup: int = 0,
    layer: str = "changes",
    progress: ProgressFn = no_progress,
    is_canceled: CancelFn = never_canceled,
) -> VectorizeResult:
    """Polygonise the change pixels (value 1) of ``mask_path`` into a GeoPackage layer.

    Args:
        mask_path: uint8 mask (1 change, 0 none, 255 nodata), e.g. mask.tif.
        probability_path: probability.tif on the same grid (uint8 0-255 or float in [0, 1]).
        out_path: GeoPackage to write; written as ``<stem>.partial.gpkg`` and renamed when complete.
        min_area: Drop polygons smaller than this many square metres.
        simplify: Douglas-Peucker tolerance in CRS units (topology preserved, holes kept); 0 keeps
            the pixel edges.
        cleanup: Radius in pixels of a morphological opening then closing of the mask; 0 skips it.
        layer: Layer name.
        progress: ``progress(fraction, message)``.
        is_canceled: Polled between steps; a cancel removes the partial GeoPackage.

    Returns:
        The number of polygons, their total area in m² and the GeoPackage's path.

    Raises:
        InputError: On a negative ``min_area``, ``simplify`` or ``cleanup``.
        RasterError: When the mask and probability rasters are not on the same grid.
        OutputError: When the output folder is not writable.
        CanceledError: When ``is_canceled()`` turned True.
    """
    if min_area < 0 or simplify < 0 or cleanup < 0:
        raise InputError(f"min_area={min_area}, simplify={simplify} and cleanup={cleanup} must not be negative.")
    out = Path(out_path)
    ensure_writable_folder(out.parent)
    for path in (mask_path, probability_path):
        if not Path(path).is_file():
            raise RasterError(f"Cannot read {path}: no such file. Pass the mask and probability rasters of one run.")
    with (
        atomic_output(out) as partial,
        rasterio.Env(GDAL_CACHEMAX=block_cache_bytes([mask_path, probability_path], rows=2 * STRIP_ROWS)),
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".clipcd-vectorize-") as scratch,
    ):
        source = Path(mask_path)
        if cleanup > 0:
            source = clean_mask_file(
                source, Path(scratch) / "cleaned.tif", cleanup,
                progress=scaled(progress, 0.0, 0.3), is_canceled=is_canceled,
            )  # fmt: skip
        check_canceled(is_canceled)
        progress(0.3, "polygonising the mask")
        with rasterio.open(source) as src:
            crs, transform, shape = src.crs, src.transform, (src.height, src.width)
            band = rasterio.band(src, 1)  # as its own mask too: 0 is skipped, no background polygon
            pixels = np.array(
                [shapely.geometry.shape(geom) for geom, value in features.shapes(
                    band, mask=band, connectivity=4, transform=transform) if value == 1],
                dtype=object,
            )  # fmt: skip
        check_canceled(is_canceled)
        progress(0.5, f"{len(pixels)} polygons; measuring")
        geoms = shapely.simplify(pixels, simplify, preserve_topology=True) if simplify > 0 else pixels
        areas = polygon_areas_m2(geoms, crs)
        keep = areas >= min_area
        pixels, geoms, areas = pixels[keep], geoms[keep], areas[keep]
        mean_prob, max_prob = _probability_stats(
            source, probability_path, pixels, shape, transform, scaled(progress, 0.5, 0.9), is_canceled
        )
        check_canceled(is_canceled)
        progress(0.9, f"writing {len(geoms)} polygons")
        try:
            _write_gpkg(partial, geoms, areas, mean_prob, max_prob, crs, layer)
        except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as exc:
            raise OutputError(f"Cannot write {out}: {exc}. Check free disk space or choose another --out.") from exc
    total = float(areas.sum())
    _log.debug("vectorize: %d polygons, %.1f m² -> %s", len(geoms), total, out)
    progress(1.0, f"{len(geoms)} change polygons")
    return VectorizeResult(count=len(geoms), area_m2=total, path=out)


def polygon_areas_m2(geoms: np.ndarray, crs: Any) -> np.ndarray:
    """Return the area of each polygon on the ellipsoid, in m², whatever the CRS."""
    if len(geoms) == 0:
        return np.zeros(0, dtype=np.float64)
    if crs is None:
        _log.warning("the mask has no CRS; areas are in squared pixel-size units, taken as metres")
        return np.asarray(shapely.area(geoms), dtype=np.float64)
    pcrs = pyproj.CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    if pcrs.is_geographic:
        geod = pcrs.get_geod() or pyproj.Geod(ellps="WGS84")

        def ring_area(ring: Any) -> float:
            lon, lat = ring.xy
            return abs(float(geod.polygon_area_perimeter(lon, lat)[0]))

        return np.array(
            [sum(ring_area(p.exterior) - sum(ring_area(h) for h in p.interiors) for p in _parts(g)) for g in geoms],
            dtype=np.float64,
        )
    # Projected: planar area in m², divided by the projection's areal scale at each polygon's
    # centroid, so the result is the area on the ellipsoid (Web Mercator inflates area by
    # 1/cos²(latitude); UTM by up to 0.1 %).
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    planar = np.asarray(shapely.area(geoms), dtype=np.float64) * factor * factor
    centroids = shapely.get_coordinates(shapely.centroid(geoms))
    to_geodetic = pyproj.Transformer.from_crs(pcrs, pcrs.geodetic_crs, always_xy=True)
    lon, lat = to_geodetic.transform(centroids[:, 0], centroids[:, 1])
    scale = np.asarray(pyproj.Proj(pcrs).get_factors(lon, lat).areal_scale, dtype=np.float64)
    return planar / scale


def _parts(geom: Any) -> list[Any]:
    """Return the polygons of a Polygon or MultiPolygon."""
    return list(geom.geoms) if hasattr(geom, "geoms") else [geom]


def _probability_stats(
    mask_path: str | os.PathLike[str],
    probability_path: str | os.PathLike[str],
    pixels: np.ndarray,
    shape: tuple[int, int],
    transform: Any,
    progress: ProgressFn,
    is_canceled: CancelFn,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and max probability in [0, 1] over each pixel-exact polygon's pixels.

    Each polygon is one 4-connected region of the mask; an interior point finds its region,
    whose statistics :func:`backend.outputs.components.region_stats` streams from the two rasters.
    """
    with rasterio.open(probability_path) as src:
        if (src.height, src.width) != shape or not src.transform.almost_equals(transform):
            raise RasterError(
                f"{probability_path} is not on the mask's grid ({shape[1]}x{shape[0]} px, {transform}); "
                "pass the probability raster written in the same run."
            )
    if len(pixels) == 0:
        return np.zeros(0), np.zeros(0)
    inside = shapely.get_coordinates(shapely.point_on_surface(pixels))
    cols, rows = ~transform * (inside[:, 0], inside[:, 1])
    rows = np.clip(np.floor(rows).astype(np.int64), 0, shape[0] - 1)
    cols = np.clip(np.floor(cols).astype(np.int64), 0, shape[1] - 1)
    return region_stats(mask_path, probability_path, rows, cols, progress, is_canceled)


def _write_gpkg(
    path: Path, geoms: np.ndarray, areas: np.ndarray, mean_prob: np.ndarray, max_prob: np.ndarray, crs: Any, layer: str
) -> None:
    """Write the polygons and their attributes to a new GeoPackage layer."""
    path.unlink(missing_ok=True)
    multi = any(shapely.get_type_id(g) == shapely.GeometryType.MULTIPOLYGON for g in geoms)
    if multi:
        geoms = np.array([g if hasattr(g, "geoms") else shapely.MultiPolygon([g]) for g in geoms], dtype=object)
    wkb = shapely.to_wkb(geoms) if len(geoms) else np.array([], dtype=object)
    pyogrio.raw.write(
        str(path), wkb,
        [np.arange(1, len(geoms) + 1, dtype=np.int64), areas.astype(np.float64),
         mean_prob.astype(np.float64), max_prob.astype(np.float64)],
        FIELDS, layer=layer, driver="GPKG", geometry_type="MultiPolygon" if multi else "Polygon",
        crs=crs.to_wkt() if crs is not None else None,
        dataset_options={"VERSION": "1.2"},  # GeoPackage 1.2: read without warnings by QGIS 3.22's GDAL 3.6
    )  # fmt: skip


def _disk(radius: int) -> np.ndarray:
    """Return a disk-shaped structuring element of the given pixel radius."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray(xx * xx + yy * yy <= radius * radius)


def clean_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Opening then closing of the change pixels with a disk of ``radius`` px; nodata (255) is kept.

    Outside the array counts as neutral: it neither erodes nor adds change pixels.
    """
    if radius <= 0:
        return mask.copy()
    disk = _disk(radius)
    change = mask == 1
    change = ndimage.binary_erosion(change, disk, border_value=1)
    change = ndimage.binary_dilation(change, disk, border_value=0)
    change = ndimage.binary_dilation(change, disk, border_value=0)
    change = ndimage.binary_erosion(change, disk, border_value=1)
    out: np.ndarray = change.astype(np.uint8)
    out[mask == MASK_NODATA] = MASK_NODATA
    return out


def clean_mask_file(
    mask_path: Path,
    out_path: Path,
    radius: int,
    *,
    strip_rows: int = STRIP_ROWS,
    progress: ProgressFn = no_progress,
    is_canceled: CancelFn = never_canceled,
) -> Path:
    """Apply :func:`clean_mask` to a mask file strip by strip; the result equals the whole-array one.

    Each strip is read with a halo of ``4 * radius`` rows (two erosions and two dilations of radius
    ``radius``), enough for the artificial strip edges not to reach the strip's own rows.
    """
    halo = 4 * radius
    with rasterio.open(mask_path) as src:
        height, width = src.height, src.width
        with AtomicGeoTiff(
            out_path, crs=src.crs, transform=src.transform, width=width, height=height,
            dtype="uint8", nodata=MASK_NODATA, predictor=1,
        ) as dst:  # fmt: skip
            for start in range(0, height, strip_rows):
                check_canceled(is_canceled)
                stop = min(start + strip_rows, height)
                lo, hi = max(0, start - halo), min(height, stop + halo)
                block = src.read(1, window=Window(0, lo, width, hi - lo))  # type: ignore[call-arg]
                dst.write_rows(start, clean_mask(block, radius)[start - lo : stop - lo])
                progress(stop / height, "cleaning the mask")
    return out_path
