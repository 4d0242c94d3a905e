"""Outputs: change logits in, probability and mask GeoTIFFs, a preview and change polygons out."""
