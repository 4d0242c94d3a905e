"""``python -m training.train``: the command lives in :mod:`training.fit.train`."""

import sys

from training.fit.train import main

if __name__ == "__main__":
    sys.exit(main())
