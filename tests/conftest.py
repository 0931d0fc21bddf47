import os
import sys
from pathlib import Path

# Tests import the runtime from this checkout, and tests.support as a package.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Every server in the tests is on loopback: a web proxy from the environment (as pandad
# honours it, like libcurl) must not stand in between. The proxy tests set their own.
for _name in list(os.environ):
    if _name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        del os.environ[_name]
