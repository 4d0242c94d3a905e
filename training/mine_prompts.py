"""``python -m training.mine_prompts``: the command lives in :mod:`training.prompts.mine_prompts`."""

import sys

from training.prompts.mine_prompts import main

if __name__ == "__main__":
    sys.exit(main())
