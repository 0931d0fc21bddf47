"""The back channel: pandad tells the plug-in what it lost and how far the stream is settled.

Enabled only by ``PANDAD_BACK_CHANNEL=1`` in pandad's environment; the reports then go to
fd 1 (docs/architecture.md, "The back channel"). Two parts:

- ``Ledger`` (pure bookkeeping, no I/O): numbers the records in the order the reader read
  them, keeps the ids of jobs whose changes were lost (bounded; past the bound one RESYNC
  stands for them all) and works out the SETTLED watermark: the number of records read such
  that every one of them ended in an outcome. It takes one short lock of its own, since the
  reader, the flusher and the main thread all report to it.
- ``BackChannel``: writes what the ledger has to say to a non-blocking fd, from whichever
  thread calls ``flush`` (the flusher after each cycle and, while lines wait, every
  ``REPORT_RETRY`` seconds when idle; the reader after drops; the main thread at exit). A
  line is never torn: what the pipe does not take waits, whole, for the next ``flush``.
  EPIPE (the plug-in is gone) ends reporting.

Where a record is while unsettled, and how the watermark accounts for it:

- still buffered: the buffer is FIFO and the reader records, per chunk, which sequence
  numbers it queued (``read``), so the first record the flusher has not taken is known;
- taken by the flusher in a slice that is being sent: pinned at the slice's first record
  (``taken``) until the slice is settled (``slice_settled``);
- carried over for a retry: pinned per job at the oldest record its command may hold
  (``slice_settled`` with the carried ids).

Pins are never later than the record they stand for, so the watermark may lag, never lead.
"""

import errno
import logging
import os
import select
import threading
import time
from collections import deque
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Tuple

from pandad.classad import quote

log = logging.getLogger("pandad.report")

VERSION = 1
ENV_VAR = "PANDAD_BACK_CHANNEL"
MAX_IDS = 100_000                 # distinct LOST ids waiting; past this, one RESYNC
MAX_TEXT = 4 << 20                # bytes of LOST text waiting; past this, one RESYNC
LOST_OVERHEAD = len(b"LOST\t\n")
_VERBS = (b"\vADD\t", b"\vUPDATE\t", b"\vREMOVE\t")


def enabled(environ: Dict[str, str]) -> bool:
    return environ.get(ENV_VAR) == "1"


def id_field(line: bytes) -> Optional[bytes]:
    """The second field of a record line, byte for byte, or None when it cannot be found.

    Only a quoted field that cannot break a report line is returned (no TAB, CR or VT can
    be in it: the line was split at TABs and framed at newlines; a VT is refused here).
    """
    if not line.startswith(_VERBS):
        return None
    start = line.index(b"\t") + 1
    end = line.find(b"\t", start)
    field = line[start:] if end < 0 else line[start:end]
    if len(field) < 2 or field[:1] != b'"' or field[-1:] != b'"' or b"\v" in field \
            or b"\r" in field:
        return None
    return field


def job_field(job_id: str) -> bytes:
    """The id field a record of ``job_id`` carries (how the plug-in quotes it)."""
    return quote(job_id).encode("utf-8", "surrogateescape")


def fatal_line(message: str) -> bytes:
    text = " ".join(message.split()).encode("ascii", "backslashreplace")
    return b"FATAL\t" + text + b"\n"


class Ledger:
    """Sequence numbers, lost ids and the SETTLED watermark (thread-safe, no I/O).

    Sequence numbers start at 0; the watermark n means records 0..n-1 are all settled.
    """

    def __init__(self, max_ids: int = MAX_IDS, max_text: int = MAX_TEXT) -> None:
        self._lock = threading.Lock()
        self._max_ids = max_ids
        self._max_text = max_text
        self._read = 0                      # records read (the next sequence number)
        self._queued = 0                    # records put into the buffer, in all
        self._taken = 0                     # of those, taken by the flusher
        # (index among queued records, first sequence number, count) per chunk queued
        self._runs: Deque[Tuple[int, int, int]] = deque()
        self._slice_pin: Optional[int] = None       # first record of the slice(s) in flight
        self._carried: Dict[bytes, int] = {}        # id field → oldest record it may hold
        self._carried_pin: Optional[int] = None
        self._lost: Dict[bytes, None] = {}          # ordered set of ids to report
        self._lost_text = 0
        self._resync = False
        self._reported = 0                  # the last SETTLED written
        self._hello = True                  # HELLO still to write
        self._closed = False                # the flusher's outcomes no longer count

    # -- what happened ------------------------------------------------------------------------

    def read(self, queued: int, dropped: Sequence[bytes] = (), bad: int = 0) -> None:
        """A chunk was read: ``queued`` records buffered, then the lines ``dropped`` (queue
        full), then ``bad`` bad ones (placed last: their true places are not known, and last
        can only make the watermark lag)."""
        ids = [field for field in map(id_field, dropped) if field is not None]
        with self._lock:
            if queued:
                self._runs.append((self._queued, self._read, queued))
                self._queued += queued
            self._add_lost(ids)
            self._read += queued + len(dropped) + bad

    def taken(self, count: int) -> None:
        """The flusher took the next ``count`` buffered records into a slice."""
        if not count:
            return
        with self._lock:
            if self._closed:
                return
            if self._slice_pin is None:
                self._slice_pin = self._seq_of_queued(self._taken)
            self._taken += count

    def lost(self, job_ids: Iterable[str]) -> None:
        """Jobs whose records the flusher counted lost, rejected or unconvertible."""
        ids = [job_field(job_id) for job_id in job_ids]
        with self._lock:
            if not self._closed:
                self._add_lost(ids)

    def slice_settled(self, carried: Iterable[Tuple[str, bool]] = ()) -> None:
        """Every record taken so far is settled but those of ``carried``: (job id, whether
        its command held records from an earlier retry) for each command kept for a retry."""
        with self._lock:
            if self._closed:
                return
            fallback = self._slice_pin
            if fallback is None:
                fallback = self._carried_pin if self._carried_pin is not None else self._read
            old = self._carried
            pins: Dict[bytes, int] = {}
            for job_id, earlier in carried:
                field = job_field(job_id)
                pin = old.get(field, self._carried_pin) if earlier else self._slice_pin
                if pin is None:
                    pin = fallback
                if field not in pins or pin < pins[field]:
                    pins[field] = pin
            self._carried = pins
            self._carried_pin = min(pins.values()) if pins else None
            self._slice_pin = None

    def abandoned(self, job_ids: Iterable[str] = (), lines: Iterable[bytes] = ()) -> None:
        """Shutdown: what the flusher held (in flight, waiting for a retry: its jobs, or the
        lines of a slice not coalesced yet) is discarded; its outcomes no longer count."""
        ids = [job_field(job_id) for job_id in job_ids]
        ids += [field for field in map(id_field, lines) if field is not None]
        with self._lock:
            self._add_lost(ids)
            self._closed = True
            self._slice_pin = None
            self._carried = {}
            self._carried_pin = None

    def leftover(self, lines: Sequence[bytes]) -> None:
        """Shutdown: the buffered ``lines`` (the next ones queued) are discarded."""
        ids = [field for field in map(id_field, lines) if field is not None]
        with self._lock:
            self._add_lost(ids)
            self._taken = min(self._queued, self._taken + len(lines))

    def cycle_done(self) -> None:
        """The flusher finished a cycle (writing is the ``BackChannel``'s business)."""

    def stop(self) -> None:
        """Nobody listens any more: drop what waits and collect nothing more."""
        with self._lock:
            self._max_ids = 0
            self._lost = {}
            self._lost_text = 0

    # -- what to say --------------------------------------------------------------------------

    def settled(self) -> int:
        with self._lock:
            return self._settled()

    def poll(self) -> bytes:
        """The report lines due now: HELLO once, LOST (or RESYNC), then SETTLED if it moved."""
        with self._lock:
            out: List[bytes] = []
            if self._hello:
                out.append(b"HELLO\t%d\n" % VERSION)
                self._hello = False
            if self._resync:
                out.append(b"RESYNC\n")
                self._resync = False
            elif self._lost:
                out.append(b"".join(b"LOST\t" + field + b"\n" for field in self._lost))
            self._lost = {}
            self._lost_text = 0
            settled = self._settled()
            if settled > self._reported:
                self._reported = settled
                out.append(b"SETTLED\t%d\n" % settled)
            return b"".join(out)

    # -- inside the lock ----------------------------------------------------------------------

    def _add_lost(self, ids: List[bytes]) -> None:
        if self._resync or not ids:
            return
        lost = self._lost
        for field in ids:
            if field not in lost:
                lost[field] = None
                self._lost_text += len(field) + LOST_OVERHEAD
        if len(lost) > self._max_ids or self._lost_text > self._max_text:
            # Too many to name: one RESYNC covers them, and whatever is lost before it is
            # written (the plug-in's resync sends the state after those losses).
            self._resync = self._max_ids > 0
            self._lost = {}
            self._lost_text = 0

    def _seq_of_queued(self, index: int) -> int:
        """The sequence number of the ``index``-th record ever queued.

        When the reader has not recorded that chunk yet (the flusher took it between the
        buffer's ``put_many`` and ``read``), the next sequence number is a lower bound.
        """
        runs = self._runs
        while runs and runs[0][0] + runs[0][2] <= index:
            runs.popleft()
        if not runs or index < runs[0][0]:
            return self._read
        first_index, first_seq, _ = runs[0]
        return first_seq + (index - first_index)

    def _settled(self) -> int:
        n = self._read
        if self._taken < self._queued:
            n = min(n, self._seq_of_queued(self._taken))
        if self._slice_pin is not None:
            n = min(n, self._slice_pin)
        if self._carried_pin is not None:
            n = min(n, self._carried_pin)
        return max(n, self._reported)


class BackChannel:
    """Writes the ledger's reports to a non-blocking fd; never blocks, never tears a line."""

    def __init__(self, fd: int, ledger: Optional[Ledger] = None) -> None:
        self.fd = fd
        self.ledger = ledger if ledger is not None else Ledger()
        self._lock = threading.Lock()
        self._out = b""                     # whole lines the pipe has not taken yet
        self._broken = False
        try:
            os.set_blocking(fd, False)
        except OSError as error:            # no stdout at all: nobody to report to
            log.error("back channel: fd %d unusable, no reports: %s", fd, error)
            self._broken = True
            self.ledger.stop()

    @property
    def broken(self) -> bool:
        return self._broken

    @property
    def waiting(self) -> bool:
        """Lines the pipe did not take yet: someone must call ``flush`` again, even when idle
        (the plug-in may have been busy; nothing else may ever come to push them out)."""
        return bool(self._out) and not self._broken

    # The flusher's seam (``NoReport`` when there is no back channel).

    def taken(self, count: int) -> None:
        self.ledger.taken(count)

    def lost(self, job_ids: Iterable[str]) -> None:
        self.ledger.lost(job_ids)

    def slice_settled(self, carried: Iterable[Tuple[str, bool]] = ()) -> None:
        self.ledger.slice_settled(carried)

    def abandoned(self, job_ids: Iterable[str] = (), lines: Iterable[bytes] = ()) -> None:
        self.ledger.abandoned(job_ids, lines)

    def cycle_done(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Write what is due, as much as the pipe takes now."""
        with self._lock:
            if self._broken:
                return
            self._write()
            if not self._out:
                self._out = self.ledger.poll()
                self._write()

    def fatal(self, message: str) -> None:
        """HELLO (if not yet written), then FATAL: pandad is about to exit 99."""
        with self._lock:
            self._out += self.ledger.poll() + fatal_line(message)
        self.close(1.0)

    def close(self, timeout: float) -> None:
        """The last reports: wait up to ``timeout`` seconds for the pipe to take them."""
        deadline = time.monotonic() + timeout
        self.flush()
        with self._lock:
            while self._out and not self._broken:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    select.select([], [self.fd], [], left)
                except (OSError, ValueError):
                    return
                self._write()
                if not self._out:
                    self._out = self.ledger.poll()

    def _write(self) -> None:
        while self._out:
            try:
                written = os.write(self.fd, self._out)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError as error:
                # EPIPE: the plug-in is gone; anything else: this fd is no use either.
                self._broken = True
                self._out = b""
                self.ledger.stop()
                if error.errno != errno.EPIPE:
                    log.error("back channel: writing reports failed, no more reports: %s",
                              error)
                return
            self._out = self._out[written:]


class NoReport:
    """What the flusher reports to when there is no back channel: nothing is kept."""

    waiting = False

    def taken(self, count: int) -> None:
        pass

    def lost(self, job_ids: Iterable[str]) -> None:
        pass

    def slice_settled(self, carried: Iterable[Tuple[str, bool]] = ()) -> None:
        pass

    def abandoned(self, job_ids: Iterable[str] = (), lines: Iterable[bytes] = ()) -> None:
        pass

    def cycle_done(self) -> None:
        pass


NO_REPORT = NoReport()
