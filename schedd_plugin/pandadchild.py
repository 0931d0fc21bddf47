"""pandad as the plug-in's child process: start it, notice its exit, restart it, close it.

``PandadChild`` owns one pandad at a time and the write end of its stdin (``fd``, non-blocking,
enlarged to ``pipe_bytes`` with F_SETPIPE_SZ as far as fs.pipe-max-size allows); what goes into
that fd is ``schedd_plugin.pipe``'s business. The plug-in must never wait on pandad
(docs/design.md §5.3), so nothing here blocks except ``stop()``, the close at shutdown.

pandad's exit is noticed by polling its return code in ``ensure_running()``, which the pipe
calls on every ``pump()`` (no SIGCHLD handler), and at once by a write that fails with EPIPE:
the pipe's only reader is gone, and the pipe calls ``input_broken()``. It is restarted with
exponential backoff (``min_backoff`` doubling to ``max_backoff``), and the backoff resets once a
pandad has stayed up for ``stable_after`` seconds. An exit with status 99 (a configuration
error, HTCondor's "do not restart") waits the longest backoff, so a fixed configuration is
picked up without flooding the log; ``restart_now()`` (SIGHUP, the fix) cuts the wait short.

With ``back_channel``, pandad is started with ``PANDAD_BACK_CHANNEL=1`` and its stdout a pipe
(``schedd_plugin.backchannel``); the loop waits on ``reports_fd`` and calls ``read_reports()``.
The ``tracker`` (``PipeTracker``) is told the back channel's bytes and pandad's starts and
exits; at an exit, pandad's last reports come first.

pandad runs in its own session: its lifetime is tied to the pipe (EOF on stdin means "flush and
exit"), not to signals a terminal sends the plug-in's process group. ``stop()`` sends that EOF,
waits, then sends SIGTERM (with SIGCONT, for a stopped pandad), then SIGKILL, and reaps it.

The owner hears of the fd's life by two hooks: ``on_start`` after a (re)start, ``on_lost``
when pandad can take nothing more, just before the fd is closed. Counter in the ``stats``
object: ``pandad_restarts``.
"""

import fcntl
import logging
import os
import signal
import subprocess
import time
from typing import Callable, Mapping, Optional, Sequence

from pandad.knobs import EXIT_CONFIG_ERROR
from pandad.process import close_quietly
from pandad.stats import Counters
from schedd_plugin.backchannel import PipeTracker, ReportsPipe

# The pipe's logger: an admin reads pandad's starts and exits with the drops they cause.
log = logging.getLogger("panda_plugin.pipe")

# fcntl.F_SETPIPE_SZ / F_GETPIPE_SZ exist from Python 3.10; the values are Linux's.
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
PIPE_MAX_SIZE_FILE = "/proc/sys/fs/pipe-max-size"


class PandadChild:
    """One pandad at a time, the write end of its stdin, and when to start the next one."""

    def __init__(self, argv: Sequence[str], pipe_bytes: int, stats: Counters,
                 tracker: PipeTracker, on_start: Callable[[], None],
                 on_lost: Callable[[], None], env: Optional[Mapping[str, str]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 min_backoff: float = 1.0, max_backoff: float = 60.0,
                 stable_after: float = 60.0, back_channel: bool = False) -> None:
        self.argv = tuple(argv)          # replaced on SIGHUP; used at the next (re)start
        self.pipe_bytes = pipe_bytes     # likewise
        self.stats = stats
        self.tracker = tracker
        self.back_channel = back_channel
        self._on_start = on_start
        self._on_lost = on_lost
        self._env = dict(env) if env is not None else None
        self._clock = clock
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self._reports = ReportsPipe()    # pandad's stdout, with the back channel

        self.fd: Optional[int] = None    # the write end of pandad's stdin while it can take more
        self._proc: Optional[subprocess.Popen] = None
        self._closing: Optional[subprocess.Popen] = None   # the pandad ``stop()`` ends
        self._started_at = 0.0
        self._backoff = min_backoff
        self._next_start = clock()       # the first start is immediate
        self._closed = False
        self._ever_started = False       # every start after the first is a restart

    # ----------------------------------------------------------------- state

    @property
    def running(self) -> bool:
        return self.fd is not None

    @property
    def pid(self) -> Optional[int]:
        """pandad's pid while it runs (for logs and tests)."""
        return self._proc.pid if self._proc is not None and self.fd is not None else None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def returncode(self) -> Optional[int]:
        return self._proc.returncode if self._proc is not None else None

    @property
    def reports_fd(self) -> Optional[int]:
        """The read end of the back channel while pandad runs (for the loop's wait)."""
        return self._reports.fd

    def read_reports(self) -> None:
        """Hand what the back channel holds now to ``tracker.reports``; never blocks."""
        self._reports.read(self.tracker.reports)

    # ----------------------------------------------------------------- control

    def restart_now(self) -> None:
        """Start pandad at the next pump instead of after the backoff (SIGHUP after a fix)."""
        if self._proc is None and not self._closed:
            self._next_start = self._clock()
            self._backoff = self._min_backoff

    def reload(self) -> None:
        """Pass a reconfiguration on: pandad re-reads its own knobs at SIGHUP."""
        if self._proc is not None and self.fd is not None:
            _signal(self._proc, signal.SIGHUP)

    def ensure_running(self) -> None:
        """Notice an exited pandad; start one when its backoff is over."""
        if self._closed:
            return
        self._reap()
        if self._proc is None and self._clock() >= self._next_start:
            self._start()

    def input_broken(self) -> None:
        """The read end is gone (EPIPE): this pandad can take nothing more, so end it."""
        self._lose_input()
        if self._proc is not None and self._proc.poll() is None:
            log.error("pandad (pid %d) closed its input; terminating it", self._proc.pid)
            _signal(self._proc, signal.SIGTERM)
        self._reap()

    def begin_close(self) -> None:
        """No more starts: the owner drains the fd, then calls ``close_input`` and ``stop``."""
        self._closed = True
        self._closing = self._proc

    def close_input(self) -> None:
        """EOF on pandad's stdin: "flush and exit"."""
        close_quietly(self.fd)
        self.fd = None

    def stop(self, timeout: float) -> Optional[int]:
        """Wait ``timeout`` s for pandad to exit after EOF, then SIGTERM, then SIGKILL; reap it.

        Returns its exit status (None if there was no pandad, or it could not be reaped)."""
        proc = self._closing
        self.close_input()
        if proc is None:
            return None
        status = self._reports.wait(proc, timeout, self.tracker.reports)
        if status is None:
            log.warning("pandad (pid %d) did not exit %.0f s after EOF; sending SIGTERM",
                        proc.pid, timeout)
            _signal(proc, signal.SIGTERM)
            _signal(proc, signal.SIGCONT)      # a stopped pandad cannot act on SIGTERM
            status = self._reports.wait(proc, 5.0, self.tracker.reports)
        if status is None:
            log.warning("pandad (pid %d) ignored SIGTERM; sending SIGKILL", proc.pid)
            _signal(proc, signal.SIGKILL)
            status = self._reports.wait(proc, 5.0, self.tracker.reports)
        self.read_reports()
        self._reports.close()
        if status is not None:
            log.info("pandad (pid %d) %s", proc.pid, describe_status(status))
            self.tracker.exited(status)
        return status

    # ----------------------------------------------------------------- lifetime

    def _lose_input(self) -> None:
        self._on_lost()
        self.close_input()

    def _reap(self) -> None:
        """Notice that pandad exited: the owner drops what was meant for it; schedule the restart."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            return
        self._proc = None
        if self._closed:
            return
        status = proc.returncode
        now = self._clock()
        # Its last reports (LOST, SETTLED, FATAL) come before the loss is reckoned.
        self.read_reports()
        self._reports.close()
        if self.fd is not None:
            self._lose_input()
        self.tracker.exited(status)
        if now - self._started_at >= self._stable_after:
            self._backoff = self._min_backoff
        delay = self._max_backoff if status == EXIT_CONFIG_ERROR else self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._next_start = now + delay
        log.error("pandad (pid %d) %s after %.1f s; restarting it in %.0f s",
                  proc.pid, describe_status(status), now - self._started_at, delay)

    def _start(self) -> None:
        argv = list(self.argv)
        try:
            read_fd, write_fd = os.pipe()
        except OSError as e:
            self._start_failed(f"cannot create a pipe: {e}")
            return
        env, stdout = self._env, None
        try:
            if self.back_channel:
                env = dict(os.environ if env is None else env, PANDAD_BACK_CHANNEL="1")
                stdout = self._reports.open()
            self._proc = subprocess.Popen(argv, stdin=read_fd, stdout=stdout, env=env,
                                          close_fds=True, start_new_session=True)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            os.close(write_fd)
            self._reports.close()
            self._start_failed(f"cannot start pandad {argv!r}: {e}")
            return
        finally:
            os.close(read_fd)
            if stdout is not None:
                os.close(stdout)
        os.set_blocking(write_fd, False)
        self._enlarge(write_fd)
        self.fd = write_fd
        self._started_at = self._clock()
        restarting = self._ever_started
        self._ever_started = True
        if restarting:
            self.stats.add("pandad_restarts")
        self.tracker.started()
        log.info("%s pandad (pid %d): %s", "restarted" if restarting else "started",
                 self._proc.pid, " ".join(argv))
        self._on_start()

    def _start_failed(self, message: str) -> None:
        now = self._clock()
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._next_start = now + delay
        log.error("%s; retrying in %.0f s", message, delay)

    def _enlarge(self, fd: int) -> None:
        if self.pipe_bytes <= 0:
            return
        for size in (self.pipe_bytes, _pipe_max_size()):
            if size is None or size <= 0 or size > self.pipe_bytes:
                continue
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, size)
                break
            except OSError as e:
                # EPERM: above fs.pipe-max-size for an unprivileged user; EBUSY: the user's
                # pipe quota. Either way the default size works, just with less slack.
                log.debug("cannot set pipe size to %d bytes: %s", size, e.strerror or e)
        try:
            log.debug("pipe to pandad holds %d bytes", fcntl.fcntl(fd, F_GETPIPE_SZ))
        except OSError:
            pass


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except OSError:
        pass


def _pipe_max_size() -> Optional[int]:
    try:
        with open(PIPE_MAX_SIZE_FILE, "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def describe_status(status: int) -> str:
    """A Popen return code as words: 'exited with status 3', 'was killed by SIGKILL'."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    if status == EXIT_CONFIG_ERROR:
        return f"exited with status {status} (configuration error)"
    return f"exited with status {status}"
