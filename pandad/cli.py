"""The ``pandad`` command: the daemon by default, plus its tools as subcommands.

Subcommand modules are imported only when used, so the daemon starts with no more
than it needs. The daemon takes no arguments of its own: DaemonCore-style single-dash flags
(``-f``, ``-p 0``, ``-local-name X``) that condor_master may pass are ignored with a warning
in the log, but an unknown ``--long`` option is a mistake (``--confg-val``) and exits 99
rather than start a daemon reading the terminal.
"""

import sys
from typing import List, Optional, Tuple

USAGE = """\
usage: pandad                              run the daemon (the plug-in forks it)
       pandad --config-val [-subsystem NAME] NAME...
                                           print knobs as condor_config_val would
       pandad --version
       pandad -h | --help                  this text
       pandad devmonitor [--help] [...]    the development PanDA monitor
       pandad demo [--help] [...]          monitor + simulated schedd + plug-in + pandad

The daemon reads the plug-in's records on standard input and sends them to PANDA_URL.
It is configured by the HTCondor configuration (subsystem PANDAD; see pandad(8) and
docs/configuration.md), not by arguments. Exit status: 0; 99 for a configuration error
(HTCondor's "do not restart").
"""
HELP = ("-h", "--help", "-help")

SUBCOMMANDS = {
    "devmonitor": "pandad.dev.devmonitor",
    "demo": "pandad.dev.demo",
}


def daemon_arguments(args: List[str]) -> Tuple[bool, Optional[str]]:
    """(whether help is asked for, the first unknown long option) of a daemon's arguments."""
    wants_help = any(arg in HELP for arg in args)
    unknown = next((arg for arg in args if arg.startswith("--")), None)
    return wants_help, unknown


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
    wants_help, unknown = daemon_arguments(args)
    if wants_help:
        print(USAGE, end="")
        return 0
    if unknown:
        from pandad.config import EXIT_CONFIG_ERROR

        print(f"pandad: unknown option {unknown} (pandad --help lists the options)",
              file=sys.stderr)
        return EXIT_CONFIG_ERROR
    from pandad.daemon import main as daemon_main

    return daemon_main(args)
