"""``python3 -m schedd_plugin``: the same as the ``panda_plugin`` console script."""

import sys

from schedd_plugin.main import main

sys.exit(main())
