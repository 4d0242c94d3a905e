"""``python -m backend.demo``: the command lives in :mod:`backend.commands.demo`."""

import sys

from backend.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
