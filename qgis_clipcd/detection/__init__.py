"""One detection run in QGIS: layers to run inputs, the background task, the outputs as styled layers."""
