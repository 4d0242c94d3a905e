"""ClipCD inference engine: CLIP-guided change detection between two rasters.

The engine never imports QGIS. Data flows one way through packages named for the stages:
``raster`` (read and align) -> ``inference`` (tiles through the ``model``) -> ``outputs`` (stitch,
write, vectorize), driven by :func:`backend.inference.pipeline.detect`; ``commands`` holds the
command line. Each package's README says what enters and what leaves.
"""

__version__ = "0.2.1"
