"""Raster input: two rasters in, one aligned processing grid and [0, 1] image windows out."""
