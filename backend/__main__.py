"""``python -m backend``: see :mod:`backend.cli`."""

import sys

from backend.cli import main

sys.exit(main())
