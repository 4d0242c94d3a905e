"""The dock's remembered choices: QgsSettings under ``clipcd/`` (the prompts live in the project instead)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsSettings

from qgis_clipcd.dock.fields import SETTINGS


def restore(form: Any) -> None:
    """Put the remembered settings into ``form``'s widgets (an :class:`~qgis_clipcd.dock.form.InputsForm`)."""
    settings = QgsSettings()
    form.model.setFilePath(str(settings.value(f"{SETTINGS}/model", "")))
    form.output.setFilePath(str(settings.value(f"{SETTINGS}/output", "")))
    form.device.setCurrentIndex(max(0, form.device.findData(str(settings.value(f"{SETTINGS}/device", "auto")))))
    form.min_area.setValue(float(settings.value(f"{SETTINGS}/min_area", 0.0)))
    form.tta.setCurrentIndex(max(0, form.tta.findData(str(settings.value(f"{SETTINGS}/tta", "model")))))
    match = form.prompt_match.findData(str(settings.value(f"{SETTINGS}/prompt_match", "appeared")))
    form.prompt_match.setCurrentIndex(max(0, match))
    extent = form.extent_mode.findData(str(settings.value(f"{SETTINGS}/extent", "overlap")))
    form.extent_mode.setCurrentIndex(max(0, extent))
    form.auto_prompts.setChecked(_flag(settings.value(f"{SETTINGS}/auto_prompts", False)))
    form.add_probability.setChecked(_flag(settings.value(f"{SETTINGS}/add_probability", True)))
    form.bands_row.set_mode(str(settings.value(f"{SETTINGS}/band_mode", "name")))


def save(form: Any) -> None:
    """Remember ``form``'s values."""
    settings = QgsSettings()
    settings.setValue(f"{SETTINGS}/model", form.model.filePath())
    settings.setValue(f"{SETTINGS}/output", form.output.filePath())
    settings.setValue(f"{SETTINGS}/device", form.device_key())
    settings.setValue(f"{SETTINGS}/min_area", form.min_area.value())
    settings.setValue(f"{SETTINGS}/tta", form.tta.currentData())
    settings.setValue(f"{SETTINGS}/prompt_match", form.match_key())
    settings.setValue(f"{SETTINGS}/extent", form.extent_mode.currentData())
    settings.setValue(f"{SETTINGS}/auto_prompts", form.auto_prompts.isChecked())
    settings.setValue(f"{SETTINGS}/add_probability", form.add_probability.isChecked())
    settings.setValue(f"{SETTINGS}/band_mode", form.bands_row.mode_key())


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")
