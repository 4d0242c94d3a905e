"""Developer tools: build, check, scan and deploy the QGIS plugin zip (``python -m tools.<name>``)."""
