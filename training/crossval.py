"""``python -m training.crossval``: the command lives in :mod:`training.evaluation.crossval`."""

import sys

from training.evaluation.crossval import main

if __name__ == "__main__":
    sys.exit(main())
