"""``python -m training.import_changeclip``: the command lives in :mod:`training.modelfile.import_changeclip`."""

import sys

from training.modelfile.import_changeclip import main

if __name__ == "__main__":
    sys.exit(main())
