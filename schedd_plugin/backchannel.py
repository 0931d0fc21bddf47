"""The plug-in's end of pandad's back channel (``docs/architecture.md``, "The back channel").

pandad, started with ``PANDAD_BACK_CHANNEL=1``, writes its reports (HELLO, LOST, SETTLED,
RESYNC, FATAL lines) to its stdout, which is the write end of a pipe made here. The read end
is non-blocking: the plug-in's loop waits on it with its other fds and reads what is there,
never more; the bytes go to the pipe's tracker, which parses them
(``schedd_plugin.healing``). While the plug-in waits for pandad to exit, it keeps reading,
so pandad's last LOST lines can neither fill the pipe nor be missed.
"""

import logging
import os
import select
import subprocess
import time
from typing import Callable, Iterable, Optional, Sequence

from pandad.process import close_quietly

log = logging.getLogger("panda_plugin.pipe")

READ_BYTES = 65536


class PipeTracker:
    """What the pipe tells about its records and its pandad; every hook is a no-op here.

    ``written`` gets the records that went whole into the pipe, in order; ``dropped`` the
    records that never will (dropped or discarded); ``reports`` bytes read from the back
    channel; ``started`` and ``exited(status)`` pandad's lifetime (at an exit, its last
    reports come first)."""

    def written(self, records: Sequence[bytes]) -> None:
        pass

    def dropped(self, records: Iterable[bytes]) -> None:
        pass

    def reports(self, data: bytes) -> None:
        pass

    def started(self) -> None:
        pass

    def exited(self, status: int) -> None:
        pass


class ReportsPipe:
    """One pandad's stdout: made before the fork, read without blocking, closed at its exit."""

    def __init__(self) -> None:
        self.fd: Optional[int] = None     # the read end while a pandad may write to it

    def open(self) -> int:
        """A new pipe; returns the write end, for the child (the caller closes it after the
        fork). Raises OSError."""
        self.close()
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        self.fd = read_fd
        return write_fd

    def read(self, sink: Callable[[bytes], None]) -> None:
        """Hand what the pipe holds now to ``sink``; at EOF (pandad gone) close it."""
        while self.fd is not None:
            try:
                data = os.read(self.fd, READ_BYTES)
            except BlockingIOError:
                return
            except OSError as e:
                log.error("reading pandad's back channel failed: %s", e)
                data = b""
            if not data:
                self.close()
                return
            sink(data)

    def wait(self, proc: subprocess.Popen, timeout: float,
             sink: Callable[[bytes], None]) -> Optional[int]:
        """Wait up to ``timeout`` s for ``proc`` to exit, reading meanwhile; its status."""
        deadline = time.monotonic() + timeout
        while True:
            status = proc.poll()
            if status is not None:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self.fd is None:
                try:
                    return proc.wait(remaining)
                except subprocess.TimeoutExpired:
                    return None
            try:
                select.select([self.fd], [], [], min(remaining, 0.05))
            except (OSError, ValueError):
                pass
            self.read(sink)

    def close(self) -> None:
        close_quietly(self.fd)
        self.fd = None
