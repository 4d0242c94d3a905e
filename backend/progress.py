"""Progress and cancel callbacks shared by every long-running stage.

Every long function takes ``progress(fraction, message)`` and ``is_canceled()``.
Stages report their own 0..1 fraction; :func:`scaled` maps it into a slice of the
caller's range so a pipeline can give each stage a share of one progress bar.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.errors import CanceledError

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


def no_progress(fraction: float, message: str) -> None:
    """Progress callback that ignores every report."""


def never_canceled() -> bool:
    """Cancel callback for runs that cannot be canceled."""
    return False


def scaled(progress: ProgressFn, start: float, end: float) -> ProgressFn:
    """Return a callback that maps a stage's 0..1 into ``[start, end]`` of ``progress``."""

    def report(fraction: float, message: str) -> None:
        clamped = min(max(fraction, 0.0), 1.0)
        progress(start + (end - start) * clamped, message)

    return report


def check_canceled(is_canceled: CancelFn) -> None:
    """Raise :class:`CanceledError` when the user asked to stop."""
    if is_canceled():
        raise CanceledError("Canceled by the user; partial outputs were removed.")
