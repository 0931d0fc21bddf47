import sys
from pathlib import Path

# Tests import the runtime from this checkout, and tests.support as a package.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
