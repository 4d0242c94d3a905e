"""``python -m backend``: see :mod:`backend.commands.cli`."""

import sys

from backend.commands.cli import main

sys.exit(main())
