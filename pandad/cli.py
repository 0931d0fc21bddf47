"""The ``pandad`` command: the daemon by default, plus its tools as subcommands.

    pandad                       run the daemon on stdin (forked by the plug-in)
    pandad --config-val NAME...  print knobs as condor_config_val would
    pandad --version
    pandad devmonitor [...]      the development PanDA monitor
    pandad demo [...]            monitor + simulated schedd + plug-in + pandad

Subcommand modules are imported only when used, so the daemon starts with no more
than it needs.
"""

import sys
from typing import List, Optional

SUBCOMMANDS = {
    "devmonitor": "pandad.devmonitor",
    "demo": "pandad.demo",
}


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        module = __import__(SUBCOMMANDS[args[0]], fromlist=["main"])
        return module.main(args[1:])
    if args and args[0] == "--version":
        from pandad import __version__

        print(f"pandad {__version__}")
        return 0
    if args and args[0] == "--config-val":
        from pandad.config import config_val_main
        from pandad.knobs import KNOBS

        # Only this product's knobs: HTCondor's own (SCHEDD_NAME, JOB_QUEUE_LOG) answer as
        # HTCondor's table does.
        defaults = {knob.name: knob.default for knob in KNOBS
                    if knob.default and knob.name.startswith(("PANDA", "MAX_PANDA"))}
        return config_val_main(args[1:], subsystem="PANDAD", defaults=defaults)
    from pandad.daemon import main as daemon_main

    return daemon_main(args)
