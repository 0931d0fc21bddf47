"""What a daemon started by condor_master or systemd owes its parent, for both programs.

Shared by pandad and panda_plugin.

condor_master (and some init systems) may start a child with signals blocked, and a blocked
SIGTERM or SIGHUP would make ``condor_off`` or ``condor_reconfig`` silently do nothing: the
mask survives exec, and Python's handlers never run for a blocked signal. So each program
unblocks every signal first thing, before it starts a thread (threads inherit the mask).
"""

import signal


def unblock_signals() -> None:
    """Clear the inherited signal mask of the calling (main) thread."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signal.valid_signals())
