"""Loaded with ``-p tests.headless`` (see pyproject.toml) before pytest-qgis starts QGIS.

pytest-qgis creates the QgsApplication before any conftest is imported, so the Qt platform
must be chosen here: offscreen, unless the caller chose one (e.g. xcb under Xvfb).
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
