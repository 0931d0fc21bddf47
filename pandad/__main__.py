"""``python3 -m pandad``: the same as the ``pandad`` console script."""

import sys

from pandad.cli import main

sys.exit(main())
