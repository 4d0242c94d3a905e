"""``python -m training.reproduce``: the command lives in :mod:`training.evaluation.reproduce`."""

import sys

from training.evaluation.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
