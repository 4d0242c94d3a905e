"""``python -m training.sparse``: the command lives in :mod:`training.evaluation.sparse`."""

import sys

from training.evaluation.sparse import main

if __name__ == "__main__":
    sys.exit(main())
