"""ClipCD inference engine: CLIP-guided change detection between two rasters.

The engine never imports QGIS. Data flows one way through one module per stage:
``io`` -> ``tiling`` -> ``predict`` (``model``) -> ``stitch`` -> ``write`` -> ``vectorize``,
driven by :func:`backend.pipeline.detect`.
"""

__version__ = "0.2.0"
