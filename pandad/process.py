"""What a daemon started by condor_master or systemd owes its parent, for both programs.

Shared by pandad and panda_plugin.

condor_master (and some init systems) may start a child with signals blocked, and a blocked
SIGTERM or SIGHUP would make ``condor_off`` or ``condor_reconfig`` silently do nothing: the
mask survives exec, and Python's handlers never run for a blocked signal. So each program
unblocks every signal first thing, before it starts a thread (threads inherit the mask).

Both programs then start the same way (``start_up``: the settings, or one line and exit 99,
HTCondor's "do not restart") and wait in their main loop on a self-pipe that the signal
machinery writes to (``WakeupPipe``), so a signal is acted on in ordinary code, never inside
a handler. Records either program must drop are logged by episode (``DropEpisode``), not one
line each.
"""

import logging
import os
import select
import signal
import time
from typing import Callable, Optional, Protocol, Sequence, TypeVar

from pandad.config import ConfigError
from pandad.logsetup import redact_urls, setup_logging


def unblock_signals() -> None:
    """Clear the inherited signal mask of the calling (main) thread."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signal.valid_signals())


class LogSettings(Protocol):
    """The part of a program's settings that says where and how it logs."""

    log: Optional[str]
    max_log: int
    debug: str


Settings = TypeVar("Settings", bound=LogSettings)


def start_up(program: str, load: Callable[[], Settings], refuse: Callable[[str], object],
             ignored: Sequence[str] = ()) -> Optional[Settings]:
    """The settings ``load`` reads, with logger ``program`` set up as they say and one warning
    naming the ``ignored`` arguments (DaemonCore's flags). On a ConfigError: logging to
    stderr, ``refuse(message)`` (URLs redacted) to say it, and None: the program exits with
    ``EXIT_CONFIG_ERROR``."""
    try:
        settings = load()
    except ConfigError as error:
        setup_logging(program, None, 0, "")
        refuse(redact_urls(str(error)))
        return None
    setup_logging(program, settings.log, settings.max_log, settings.debug)
    if ignored:
        logging.getLogger(program).warning("ignoring arguments %s does not know: %s", program,
                                           " ".join(ignored))
    return settings


class WakeupPipe:
    """A self-pipe that ``signal.set_wakeup_fd`` writes each caught signal's number into, and
    threads their own codes (``wake``), so that the main thread's ``wait`` returns at once."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous: Optional[int] = None

    def install(self) -> None:
        """Make this pipe the signal wake-up fd (from the main thread)."""
        self._previous = signal.set_wakeup_fd(self._write)

    def wake(self, code: int) -> None:
        """Write ``code`` (0-255, not a signal number in use) for the waiting thread."""
        try:
            os.write(self._write, bytes([code]))
        except OSError:
            pass    # the pipe is full: the waiting thread has wake-ups to read already

    def wait(self, timeout: Optional[float] = None, others: Sequence[int] = ()) -> bytes:
        """Wait until a wake-up comes, one of ``others`` is readable, or ``timeout`` seconds
        pass (None: no limit); the codes that came, in order (b"" if none)."""
        try:
            select.select([self._read, *others], [], [],
                          None if timeout is None else max(0.0, timeout))
        except InterruptedError:
            pass
        codes = b""
        try:
            while True:
                chunk = os.read(self._read, 4096)
                if not chunk:
                    break
                codes += chunk
        except BlockingIOError:
            pass
        return codes

    def close(self) -> None:
        """Give the signal wake-up fd back to what it was before ``install``; close the pipe."""
        if self._previous is not None:
            signal.set_wakeup_fd(self._previous)
            self._previous = None
        os.close(self._read)
        os.close(self._write)


def close_quietly(fd: Optional[int]) -> None:
    """Close ``fd`` if there is one; a close that fails (EBADF, EIO) leaves nothing to do."""
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class DropEpisode:
    """Drops of one kind, counted by episode so that the owner logs a line as an episode
    starts, perhaps a reminder, and one summary as it ends, never a line per drop.

    ``drop`` says when a line is due: ``STARTED`` for the first drop of an episode, ``REMIND``
    every ``remind`` seconds of it (0: never). ``end`` closes the episode (True if there was
    one); its counts and times stay readable until the next drop.
    """

    STARTED = "started"
    REMIND = "remind"

    def __init__(self, clock: Callable[[], float] = time.monotonic, remind: float = 0.0) -> None:
        self._clock = clock
        self._remind = remind
        self._open = False
        self._last_line = 0.0
        self.records = 0
        self.nbytes = 0
        self.started = 0.0
        self.last_drop = 0.0

    @property
    def active(self) -> bool:
        return self._open

    def drop(self, records: int, nbytes: int = 0) -> str:
        """Count a drop; ``STARTED``, ``REMIND`` or "" (no line due)."""
        now = self._clock()
        due = ""
        if not self._open:
            self._open = True
            self.records = self.nbytes = 0
            self.started = self._last_line = now
            due = self.STARTED
        elif self._remind and now - self._last_line >= self._remind:
            self._last_line = now
            due = self.REMIND
        self.records += records
        self.nbytes += nbytes
        self.last_drop = now
        return due

    def end(self) -> bool:
        """Close the episode; False if none was open."""
        was_open, self._open = self._open, False
        return was_open
