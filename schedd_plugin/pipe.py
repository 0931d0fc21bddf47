"""The pipe to pandad: fork it, write whole records without ever blocking, restart it if it dies.

The plug-in must never wait on pandad (docs/design.md §5.3), so the write end of pandad's stdin is
non-blocking and every write is one attempt:

* Records are gathered in a small *spill* buffer and written with one ``os.writev`` when it
  holds ``BATCH_BYTES`` (or ``spill_bytes``, if smaller), and by every ``pump()``, which the
  plug-in's loop calls after each poll: one system call per batch rather than per record, and
  no record waits longer than the poll that made it.
* A record goes into the pipe whole, or not at all. When the pipe takes only part of a record
  (it filled up mid-record), the unwritten tail stays at the head of the spill buffer and is
  written out first. While the pipe is full, new records queue behind it as long as they fit
  under ``spill_bytes``; a record that does not fit is dropped whole
  (``records_dropped_pipe_full``). The tail of the one torn record is always kept, even when it
  alone is larger than ``spill_bytes``, because bytes already in the pipe cannot be taken back;
  so the spill holds at most max(spill_bytes, one record).
* While pandad is not running, records are dropped (``records_dropped_pandad_down``). When it
  exits, the spill buffer goes with it (its tail would be a torn record to the next pandad).
* Each episode of drops gets a log line when it starts (so an admin sees it at once) and one
  with its counts when it ends (the pipe drains, pandad is restarted, or the pipe is closed),
  never one line per record.

pandad's exit is noticed by polling its return code on every ``pump()`` (no SIGCHLD handler),
and by a ``write()`` at once: the pipe's only reader is gone, so ``os.write`` fails with EPIPE.
(``write()`` does not poll: ``Popen.poll`` costs as much as the write itself.) It is restarted
with exponential backoff (``min_backoff`` doubling to ``max_backoff``), and the backoff resets
once a pandad has stayed up for ``stable_after`` seconds. An exit with status 99 (a
configuration error, HTCondor's "do not restart") waits the longest backoff, so a fixed
configuration is picked up without flooding the log.

With ``back_channel``, pandad is started with ``PANDAD_BACK_CHANNEL=1`` and its stdout a pipe
(``schedd_plugin.backchannel``); the loop waits on ``reports_fd`` and calls
``read_reports()``. The ``tracker`` (``PipeTracker``) is told every record written whole (in
order) or dropped, the back channel's bytes, and pandad's starts and exits: healing's inputs.

pandad runs in its own session: its lifetime is tied to the pipe (EOF on stdin means "flush and
exit"), not to signals a terminal sends the plug-in's process group.

Counters in the ``stats`` object: ``records_written`` (whole records that reached the pipe),
``bytes_written``, ``records_dropped_pipe_full``, ``records_dropped_pandad_down``,
``pandad_restarts``, and the gauge ``spill_bytes`` (set when the spill buffer is written out,
so after every ``pump()``). Records offered = written + dropped + the records still waiting in
the spill buffer (``spill_records``).
"""

import errno
import fcntl
import logging
import os
import select
import signal
import subprocess
import time
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice, repeat
from typing import Callable, Deque, List, Mapping, Optional, Sequence

from pandad.knobs import EXIT_CONFIG_ERROR
from pandad.process import DropEpisode
from pandad.stats import Counters
from schedd_plugin.backchannel import PipeTracker, ReportsPipe

log = logging.getLogger("panda_plugin.pipe")

# fcntl.F_SETPIPE_SZ / F_GETPIPE_SZ exist from Python 3.10; the values are Linux's.
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
PIPE_MAX_SIZE_FILE = "/proc/sys/fs/pipe-max-size"

# Records are written in batches of about this many bytes: a system call per record cost as
# much as making the record. 64 KiB is a pipe's default capacity on Linux.
BATCH_BYTES = 64 * 1024
# Buffers handed to one os.writev (Linux's IOV_MAX is 1024).
WRITEV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 16


class PandadPipe:
    """pandad as a child process, and the non-blocking pipe on its stdin."""

    broken = False      # a ``main.Sink`` that is never gone for good: pandad is restarted

    def __init__(self, argv: Sequence[str], spill_bytes: int, pipe_bytes: int, stats: Counters,
                 env: Optional[Mapping[str, str]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 min_backoff: float = 1.0, max_backoff: float = 60.0,
                 stable_after: float = 60.0, tracker: Optional["PipeTracker"] = None,
                 back_channel: bool = False) -> None:
        self.argv = tuple(argv)          # replaced on SIGHUP; used at the next (re)start
        self.spill_bytes = spill_bytes  # settable at run time (SIGHUP)
        self.pipe_bytes = pipe_bytes
        self.stats = stats
        self._env = dict(env) if env is not None else None
        self._clock = clock
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._stable_after = stable_after
        self.tracker = tracker if tracker is not None else PipeTracker()
        self.back_channel = back_channel
        self._reports = ReportsPipe()    # pandad's stdout, with the back channel

        self._proc: Optional[subprocess.Popen] = None
        self._fd: Optional[int] = None
        self._started_at = 0.0
        self._backoff = min_backoff
        self._next_start = clock()       # the first start is immediate
        self._closed = False
        self._ever_started = False       # every start after the first is a restart

        # The spill buffer: records not yet (fully) in the pipe; the first may be partly written.
        self._spill: Deque[bytes] = deque()
        self._spill_offset = 0           # bytes of self._spill[0] already in the pipe
        self._spill_size = 0             # unwritten bytes in the spill buffer
        self._spill_gauge = 0

        # Drops while the pipe is full, and while pandad is not running.
        self._full = DropEpisode(clock)
        self._down = DropEpisode(clock)

        self._ensure_running()

    # ----------------------------------------------------------------- public interface

    @property
    def spill_bytes(self) -> int:
        return self._spill_bytes

    @spill_bytes.setter
    def spill_bytes(self, value: int) -> None:
        self._spill_bytes = value
        self._batch_bytes = min(BATCH_BYTES, value)

    @property
    def pid(self) -> Optional[int]:
        """pandad's pid while it runs (for logs and tests)."""
        return self._proc.pid if self._proc is not None and self._fd is not None else None

    @property
    def reports_fd(self) -> Optional[int]:
        """The read end of the back channel while pandad runs (for the loop's wait)."""
        return self._reports.fd

    def read_reports(self) -> None:
        """Hand what the back channel holds now to ``tracker.reports``; never blocks."""
        self._reports.read(self.tracker.reports)

    def restart_now(self) -> None:
        """Start pandad at the next pump instead of after the backoff (SIGHUP after a fix)."""
        if self._proc is None and not self._closed:
            self._next_start = self._clock()
            self._backoff = self._min_backoff

    @property
    def running(self) -> bool:
        return self._fd is not None

    @property
    def spill_records(self) -> int:
        return len(self._spill)

    def reload(self) -> None:
        """Pass a reconfiguration on: pandad re-reads its own knobs at SIGHUP."""
        if self._proc is not None and self._fd is not None:
            self._signal(self._proc, signal.SIGHUP)

    def write(self, record: bytes) -> bool:
        """Offer one whole record; True if it is in the pipe or queued whole in the spill buffer.

        The record may wait in the spill buffer until it holds a batch or until ``pump()``.
        """
        if self._fd is None:
            self._ensure_running()
            if self._fd is None:
                self._drop_down(1, len(record))
                self.tracker.dropped((record,))
                return False
        size = len(record)
        if self._spill_size + size > self._batch_bytes:
            # A batch is ready: write it out before queueing more.
            if self._spill and not self._flush_spill():
                if self._fd is None:                  # pandad went away while flushing
                    self._drop_down(1, size)
                    self.tracker.dropped((record,))
                    return False
                # The pipe is full: queue behind it while there is room.
                if self._spill_size + size > self.spill_bytes:
                    self._drop_full(1, size)
                    self.tracker.dropped((record,))
                    return False
                self._spill.append(record)
                self._spill_size += size
                self._update_gauge()
                return True
            if size > self._batch_bytes:
                return self._write_direct(record)
        self._spill.append(record)
        self._spill_size += size
        return True

    def pump(self) -> None:
        """Notice an exited pandad, restart it when its backoff is over, finish the spill buffer."""
        self._ensure_running()
        if self._fd is not None and self._spill:
            self._flush_spill()
        if self._fd is not None and not self._spill:
            self._end_full_episode()

    def close(self, timeout: float = 35.0, flush_timeout: float = 1.0) -> Optional[int]:
        """Finish the spill buffer (for at most ``flush_timeout`` s), send EOF, reap pandad.

        pandad flushes what it holds and exits on EOF; it gets ``timeout`` seconds for that
        (its shutdown grace plus a margin), then SIGTERM, then SIGKILL. Returns its exit status.
        """
        if self._closed:
            return self._proc.returncode if self._proc is not None else None
        self._closed = True
        proc = self._proc
        if self._fd is not None:
            deadline = time.monotonic() + flush_timeout
            while self._spill and self._fd is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    select.select([], [self._fd], [], remaining)
                except (OSError, ValueError):
                    break
                self._flush_spill()
            if self._spill:
                records, nbytes = len(self._spill), self._spill_size
                self.tracker.dropped(list(self._spill))
                self._discard_spill()
                self._drop_full(records, nbytes)
            self._end_full_episode()
            self._close_fd()
        self._end_down_episode(restarted=False)
        if proc is None:
            return None
        status = self._reports.wait(proc, timeout, self.tracker.reports)
        if status is None:
            log.warning("pandad (pid %d) did not exit %.0f s after EOF; sending SIGTERM",
                        proc.pid, timeout)
            self._signal(proc, signal.SIGTERM)
            self._signal(proc, signal.SIGCONT)      # a stopped pandad cannot act on SIGTERM
            status = self._reports.wait(proc, 5.0, self.tracker.reports)
        if status is None:
            log.warning("pandad (pid %d) ignored SIGTERM; sending SIGKILL", proc.pid)
            self._signal(proc, signal.SIGKILL)
            status = self._reports.wait(proc, 5.0, self.tracker.reports)
        self.read_reports()
        self._reports.close()
        if status is not None:
            log.info("pandad (pid %d) %s", proc.pid, describe_status(status))
            self.tracker.exited(status)
        return status

    # ----------------------------------------------------------------- writing

    def _write_direct(self, record: bytes) -> bool:
        try:
            n = os.write(self._fd, record)
        except BlockingIOError:
            n = 0
        except OSError as e:
            self._pipe_broken(e)
            self._drop_down(1, len(record))
            self.tracker.dropped((record,))
            return False
        if n == len(record):
            self._count_written(1, n)
            self.tracker.written((record,))
            self._end_full_episode()
            return True
        if n == 0:
            # Nothing went in, so nothing is torn: queue the record whole if it fits.
            if len(record) > self.spill_bytes:
                self._drop_full(1, len(record))
                self.tracker.dropped((record,))
                return False
            self._spill.append(record)
            self._spill_size += len(record)
        else:
            # Torn: the head is in the pipe, the tail must follow before anything else.
            self.stats.add("bytes_written", n)
            self._spill.append(record)
            self._spill_offset = n
            self._spill_size += len(record) - n
        self._update_gauge()
        return True

    def _flush_spill(self) -> bool:
        """Write as much of the spill buffer as the pipe takes; True when it is empty."""
        spill = self._spill
        written_records = 0
        written_bytes = 0
        retired: List[bytes] = []
        try:
            while spill:
                chunk = list(islice(spill, 0, WRITEV_MAX))
                if self._spill_offset:
                    chunk[0] = memoryview(chunk[0])[self._spill_offset:]
                n = os.writev(self._fd, chunk)
                written_bytes += n
                if n == self._spill_size and len(chunk) == len(spill):
                    # All of it (the usual case): no record-by-record bookkeeping.
                    written_records += len(chunk)
                    retired.extend(spill)
                    spill.clear()
                    self._spill_offset = 0
                    self._spill_size = 0
                    break
                self._spill_size -= n
                # Retire the records written whole; a torn one stays, with its offset.
                ends = list(accumulate(map(len, chunk)))
                whole = bisect_right(ends, n)
                for _ in repeat(None, whole):
                    retired.append(spill.popleft())
                written_records += whole
                if whole:
                    self._spill_offset = n - ends[whole - 1]
                else:
                    self._spill_offset += n
                if whole < len(chunk):
                    break
        except BlockingIOError:
            pass
        except OSError as e:
            self._count_written(written_records, written_bytes)
            if retired:
                self.tracker.written(retired)
            self._pipe_broken(e)
            return False
        self._count_written(written_records, written_bytes)
        if retired:
            self.tracker.written(retired)
        self._update_gauge()
        if spill:
            return False
        self._end_full_episode()
        return True

    def _count_written(self, records: int, nbytes: int) -> None:
        if records:
            self.stats.add("records_written", records)
        if nbytes:
            self.stats.add("bytes_written", nbytes)

    def _update_gauge(self) -> None:
        if self._spill_size != self._spill_gauge:
            self._spill_gauge = self._spill_size
            self.stats.set("spill_bytes", self._spill_size)

    def _discard_spill(self) -> None:
        self._spill.clear()
        self._spill_offset = 0
        self._spill_size = 0
        self._update_gauge()

    # ----------------------------------------------------------------- drop episodes

    def _drop_full(self, records: int, nbytes: int) -> None:
        self.stats.add("records_dropped_pipe_full", records)
        if self._full.drop(records, nbytes) == DropEpisode.STARTED:
            log.warning("pipe to pandad is full: dropping records until it drains")

    def _end_full_episode(self) -> None:
        full = self._full
        if full.end():
            log.warning("pipe to pandad was full for %.1f s: dropped %d records (%d bytes)",
                        self._clock() - full.started, full.records, full.nbytes)

    def _drop_down(self, records: int, nbytes: int) -> None:
        self.stats.add("records_dropped_pandad_down", records)
        if self._down.drop(records, nbytes) == DropEpisode.STARTED:
            log.warning("pandad is not running: dropping records until it is restarted")

    def _end_down_episode(self, restarted: bool) -> None:
        down = self._down
        if down.end():
            log.warning("pandad was not running for %.1f s%s: dropped %d records (%d bytes)",
                        self._clock() - down.started, "" if restarted else " at shutdown",
                        down.records, down.nbytes)

    # ----------------------------------------------------------------- the child process

    def _ensure_running(self) -> None:
        if self._closed:
            return
        self._reap()
        if self._proc is None and self._clock() >= self._next_start:
            self._start()

    def _reap(self) -> None:
        """Notice that pandad exited: drop what was meant for it, schedule the restart."""
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
        if self._fd is not None:
            self._lost_pandad()
        self.tracker.exited(status)
        if now - self._started_at >= self._stable_after:
            self._backoff = self._min_backoff
        delay = self._max_backoff if status == EXIT_CONFIG_ERROR else self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)
        self._next_start = now + delay
        log.error("pandad (pid %d) %s after %.1f s; restarting it in %.0f s",
                  proc.pid, describe_status(status), now - self._started_at, delay)

    def _pipe_broken(self, error: OSError) -> None:
        """The read end is gone (EPIPE): this pandad can take nothing more, so end it."""
        if error.errno not in (errno.EPIPE, errno.EBADF):
            log.error("writing to pandad failed: %s", error)
        self._lost_pandad()
        if self._proc is not None and self._proc.poll() is None:
            log.error("pandad (pid %d) closed its input; terminating it", self._proc.pid)
            self._signal(self._proc, signal.SIGTERM)
        self._reap()

    def _lost_pandad(self) -> None:
        if self._spill:
            records, nbytes = len(self._spill), self._spill_size
            self.tracker.dropped(list(self._spill))
            self._discard_spill()
            self._drop_down(records, nbytes)
        self._end_full_episode()
        self._close_fd()

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
        self._fd = write_fd
        self._started_at = self._clock()
        restarting = self._ever_started
        self._ever_started = True
        if restarting:
            self.stats.add("pandad_restarts")
        self.tracker.started()
        log.info("%s pandad (pid %d): %s", "restarted" if restarting else "started",
                 self._proc.pid, " ".join(argv))
        self._end_down_episode(restarted=True)

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

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            proc.send_signal(sig)
        except OSError:
            pass

    @staticmethod
    def _wait(proc: subprocess.Popen, timeout: float) -> Optional[int]:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


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
