"""``python -m training.export``: the command lives in :mod:`training.modelfile.export`."""

import sys

from training.modelfile.export import main

if __name__ == "__main__":
    sys.exit(main())
