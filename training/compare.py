"""``python -m training.compare``: the command lives in :mod:`training.evaluation.compare`."""

import sys

from training.evaluation.compare import main

if __name__ == "__main__":
    sys.exit(main())
