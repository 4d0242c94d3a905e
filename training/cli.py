"""What every ``python -m training.<command>`` shares: logging set-up and exit codes.

Exit codes as ``backend``'s: 0 done, 2 bad input (a :class:`~backend.errors.ClipCDError`, whose
message says what to do), 1 a bug (logged with its traceback).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from backend.errors import ClipCDError

EXIT_OK, EXIT_BUG, EXIT_INPUT = 0, 1, 2
_log = logging.getLogger("training")


def setup_logging(verbose: bool = False, fmt: str = "%(message)s", level: int = logging.INFO) -> None:
    """Log to stderr at ``level`` (DEBUG with ``verbose``)."""
    logging.basicConfig(level=logging.DEBUG if verbose else level, format=fmt)


def run_command(work: Callable[[], str]) -> int:
    """Run ``work``, print the text it returns to stdout, and map errors to exit codes."""
    try:
        text = work()
    except ClipCDError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_INPUT
    except Exception as exc:
        _log.exception("unexpected error")
        sys.stderr.write(f"error (a bug, please report it): {exc}\n")
        return EXIT_BUG
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK
