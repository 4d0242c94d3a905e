"""The error tree of the engine.

Every error says what happened, names the offending file or value and says what to do.
Each class also inherits the matching builtin so callers can catch either.
"""

from __future__ import annotations


class ClipCDError(Exception):
    """Base class of every error the engine raises on purpose."""


class InputError(ClipCDError, ValueError):
    """A user-supplied value (threshold, extent, bands, tile size, ...) is invalid."""


class RasterError(ClipCDError, ValueError):
    """A raster is missing, unreadable, or unusable for change detection."""


class RasterMismatchError(RasterError):
    """The two rasters cannot be paired (no overlap, band counts differ, ...)."""


class ModelFileError(ClipCDError, ValueError):
    """A model file is missing, not a model, or does not match its card."""


class OutputError(ClipCDError, OSError):
    """An output cannot be written (folder not writable, disk full, ...)."""


class CanceledError(ClipCDError):
    """The user canceled the run; partial outputs have been removed."""
