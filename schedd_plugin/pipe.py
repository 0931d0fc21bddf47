"""The pipe to pandad: write whole records into pandad's stdin without ever blocking.

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

pandad itself, its restarts with backoff, the back channel and the close sequence are
``schedd_plugin.pandadchild.PandadChild``'s; ``PandadPipe`` owns one and passes its interface
on. A write that fails with EPIPE tells the child at once (``write()`` does not poll:
``Popen.poll`` costs as much as the write itself); ``pump()`` lets it poll. The ``tracker``
(``PipeTracker``) is told every record written whole (in order) or dropped, here, and pandad's
starts, exits and reports by the child: healing's inputs.

Counters in the ``stats`` object: ``records_written`` (whole records that reached the pipe),
``bytes_written``, ``records_dropped_pipe_full``, ``records_dropped_pandad_down``, and the gauge
``spill_bytes`` (set when the spill buffer is written out, so after every ``pump()``); the
child counts ``pandad_restarts``. Records offered = written + dropped + the records still
waiting in the spill buffer (``spill_records``).
"""

import errno
import logging
import os
import select
import time
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice, repeat
from typing import Callable, Deque, List, Mapping, Optional, Sequence, Tuple

from pandad.process import DropEpisode
from pandad.stats import Counters
from schedd_plugin.backchannel import PipeTracker
from schedd_plugin.pandadchild import PandadChild

log = logging.getLogger("panda_plugin.pipe")

# Records are written in batches of about this many bytes: a system call per record cost as
# much as making the record. 64 KiB is a pipe's default capacity on Linux.
BATCH_BYTES = 64 * 1024
# Buffers handed to one os.writev (Linux's IOV_MAX is 1024).
WRITEV_MAX = min(1024, os.sysconf("SC_IOV_MAX")) if hasattr(os, "sysconf") else 16


class PandadPipe:
    """The non-blocking pipe on pandad's stdin, and the pandad behind it (a ``PandadChild``)."""

    broken = False      # a ``main.Sink`` that is never gone for good: pandad is restarted

    def __init__(self, argv: Sequence[str], spill_bytes: int, pipe_bytes: int, stats: Counters,
                 env: Optional[Mapping[str, str]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 min_backoff: float = 1.0, max_backoff: float = 60.0,
                 stable_after: float = 60.0, tracker: Optional["PipeTracker"] = None,
                 back_channel: bool = False) -> None:
        self.spill_bytes = spill_bytes  # settable at run time (SIGHUP)
        self.stats = stats
        self._clock = clock
        self._tracker = tracker if tracker is not None else PipeTracker()

        # The spill buffer: records not yet (fully) in the pipe; the first may be partly written.
        self._spill: Deque[bytes] = deque()
        self._spill_offset = 0           # bytes of self._spill[0] already in the pipe
        self._spill_size = 0             # unwritten bytes in the spill buffer
        self._spill_gauge = 0

        # Drops while the pipe is full, and while pandad is not running.
        self._full = DropEpisode(clock)
        self._down = DropEpisode(clock)

        self._child = PandadChild(
            argv, pipe_bytes, stats, self._tracker,
            on_start=lambda: self._end_down_episode(restarted=True),
            on_lost=self._lose_spill, env=env, clock=clock, min_backoff=min_backoff,
            max_backoff=max_backoff, stable_after=stable_after, back_channel=back_channel)
        self._child.ensure_running()

    # ----------------------------------------------------------------- public interface

    @property
    def spill_bytes(self) -> int:
        return self._spill_bytes

    @spill_bytes.setter
    def spill_bytes(self, value: int) -> None:
        self._spill_bytes = value
        self._batch_bytes = min(BATCH_BYTES, value)

    @property
    def tracker(self) -> PipeTracker:
        """Told of records here and of pandad's life by the child: one object for both."""
        return self._tracker

    @tracker.setter
    def tracker(self, value: PipeTracker) -> None:
        self._tracker = self._child.tracker = value

    @property
    def argv(self) -> Tuple[str, ...]:
        """pandad's command; replaced on SIGHUP, used at the next (re)start."""
        return self._child.argv

    @argv.setter
    def argv(self, value: Sequence[str]) -> None:
        self._child.argv = tuple(value)

    @property
    def pipe_bytes(self) -> int:
        """The pipe size asked for at the next (re)start."""
        return self._child.pipe_bytes

    @pipe_bytes.setter
    def pipe_bytes(self, value: int) -> None:
        self._child.pipe_bytes = value

    @property
    def back_channel(self) -> bool:
        return self._child.back_channel

    @property
    def pid(self) -> Optional[int]:
        """pandad's pid while it runs (for logs and tests)."""
        return self._child.pid

    @property
    def reports_fd(self) -> Optional[int]:
        """The read end of the back channel while pandad runs (for the loop's wait)."""
        return self._child.reports_fd

    def read_reports(self) -> None:
        """Hand what the back channel holds now to ``tracker.reports``; never blocks."""
        self._child.read_reports()

    def restart_now(self) -> None:
        """Start pandad at the next pump instead of after the backoff (SIGHUP after a fix)."""
        self._child.restart_now()

    @property
    def running(self) -> bool:
        return self._child.fd is not None

    @property
    def spill_records(self) -> int:
        return len(self._spill)

    def reload(self) -> None:
        """Pass a reconfiguration on: pandad re-reads its own knobs at SIGHUP."""
        self._child.reload()

    def write(self, record: bytes) -> bool:
        """Offer one whole record; True if it is in the pipe or queued whole in the spill buffer.

        The record may wait in the spill buffer until it holds a batch or until ``pump()``.
        """
        child = self._child
        if child.fd is None:
            child.ensure_running()
            if child.fd is None:
                self._drop_down(1, len(record))
                self._tracker.dropped((record,))
                return False
        size = len(record)
        if self._spill_size + size > self._batch_bytes:
            # A batch is ready: write it out before queueing more.
            if self._spill and not self._flush_spill():
                if child.fd is None:                  # pandad went away while flushing
                    self._drop_down(1, size)
                    self._tracker.dropped((record,))
                    return False
                # The pipe is full: queue behind it while there is room.
                if self._spill_size + size > self.spill_bytes:
                    self._drop_full(1, size)
                    self._tracker.dropped((record,))
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
        child = self._child
        child.ensure_running()
        if child.fd is not None and self._spill:
            self._flush_spill()
        if child.fd is not None and not self._spill:
            self._end_full_episode()

    def close(self, timeout: float = 35.0, flush_timeout: float = 1.0) -> Optional[int]:
        """Finish the spill buffer (for at most ``flush_timeout`` s), send EOF, reap pandad.

        pandad flushes what it holds and exits on EOF; it gets ``timeout`` seconds for that
        (its shutdown grace plus a margin), then SIGTERM, then SIGKILL. Returns its exit status.
        """
        child = self._child
        if child.closed:
            return child.returncode
        child.begin_close()
        if child.fd is not None:
            self._drain(flush_timeout)
            self._end_full_episode()
            child.close_input()
        self._end_down_episode(restarted=False)
        return child.stop(timeout)

    # ----------------------------------------------------------------- writing

    def _write_direct(self, record: bytes) -> bool:
        try:
            n = os.write(self._child.fd, record)
        except BlockingIOError:
            n = 0
        except OSError as e:
            self._pipe_broken(e)
            self._drop_down(1, len(record))
            self._tracker.dropped((record,))
            return False
        if n == len(record):
            self._count_written(1, n)
            self._tracker.written((record,))
            self._end_full_episode()
            return True
        if n == 0:
            # Nothing went in, so nothing is torn: queue the record whole if it fits.
            if len(record) > self.spill_bytes:
                self._drop_full(1, len(record))
                self._tracker.dropped((record,))
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
        fd = self._child.fd
        written_records = 0
        written_bytes = 0
        retired: List[bytes] = []
        try:
            while spill:
                chunk = list(islice(spill, 0, WRITEV_MAX))
                if self._spill_offset:
                    chunk[0] = memoryview(chunk[0])[self._spill_offset:]
                n = os.writev(fd, chunk)
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
                self._tracker.written(retired)
            self._pipe_broken(e)
            return False
        self._count_written(written_records, written_bytes)
        if retired:
            self._tracker.written(retired)
        self._update_gauge()
        if spill:
            return False
        self._end_full_episode()
        return True

    def _drain(self, flush_timeout: float) -> None:
        """At close: write out the spill buffer while the pipe takes it; drop what is left."""
        deadline = time.monotonic() + flush_timeout
        while self._spill and self._child.fd is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                select.select([], [self._child.fd], [], remaining)
            except (OSError, ValueError):
                break
            self._flush_spill()
        if self._spill:
            records, nbytes = len(self._spill), self._spill_size
            self._tracker.dropped(list(self._spill))
            self._discard_spill()
            self._drop_full(records, nbytes)

    def _pipe_broken(self, error: OSError) -> None:
        """The read end is gone (EPIPE): the child ends this pandad."""
        if error.errno not in (errno.EPIPE, errno.EBADF):
            log.error("writing to pandad failed: %s", error)
        self._child.input_broken()

    def _lose_spill(self) -> None:
        """pandad can take nothing more: what waits for it is dropped (a torn tail included)."""
        if self._spill:
            records, nbytes = len(self._spill), self._spill_size
            self._tracker.dropped(list(self._spill))
            self._discard_spill()
            self._drop_down(records, nbytes)
        self._end_full_episode()

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
