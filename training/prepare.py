"""``python -m training.prepare``: the command lives in :mod:`training.data.prepare`."""

import sys

from training.data.prepare import main

if __name__ == "__main__":
    sys.exit(main())
