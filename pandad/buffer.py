"""The byte-bounded record buffer between the reader and the flusher (docs/design.md §4.2).

An enqueue that fits under ``size`` is accepted. Over the size, the grace window decides: it
opens when a put takes the buffer over the size, and restarts whenever the flusher takes
records (closing when what is left fits under the size). Inside the window entries are still
accepted; once a window is ``grace`` seconds old, entries are dropped until the flusher takes
again. So a steady stream the flusher keeps up with is never dropped, however far over the
size it keeps the buffer between two cycles, while a stalled flusher (a request hanging until
PANDA_UPDATE_TIMEOUT, a monitor in backoff) costs only what arrives after ``grace`` seconds
without progress. ``max_size`` is a hard ceiling that holds even inside the window, so memory
stays bounded however long the monitor is away.

The reader never waits for the flusher: ``put_many`` only takes a short lock. The flusher never
holds the lock while sending: ``take`` hands over a slice of at most ``max_bytes`` (so one cycle
never holds the whole buffer decoded at once) and ``take_all`` swaps the whole deque out
(shutdown). Either re-arms the grace. ``wait_for_data`` sleeps
on a condition variable, so an idle daemon does not wake up at all.

The clock is injected so the grace window can be tested without sleeping.
"""

import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional, Tuple


class RecordBuffer:
    """Raw record lines (without their newline), accounted by their length in bytes."""

    def __init__(self, size: int, grace: float, max_size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._lines: Deque[bytes] = deque()
        # (arrival time, number of lines) per put_many call: the age of the oldest entry
        # is then one subtraction, without a timestamp per record.
        self._arrivals: Deque[Tuple[float, int]] = deque()
        self._size = size
        self._grace = grace
        self._max_size = max_size
        self._over_since: Optional[float] = None   # when the grace window opened
        self._closed = False
        self.nbytes = 0
        self.peak_bytes = 0

    def configure(self, size: int, grace: float, max_size: int) -> None:
        """Apply new limits (SIGHUP). Records already buffered stay."""
        with self._cond:
            self._size = size
            self._grace = grace
            self._max_size = max_size
            if self.nbytes <= size:
                self._over_since = None

    def put_many(self, lines: List[bytes]) -> int:
        """Enqueue lines in order until one does not fit; return how many were accepted."""
        if not lines:
            return 0
        now = self._clock()
        with self._cond:
            if self._closed:
                return 0
            nbytes = self.nbytes
            size = self._size
            ceiling = self._max_size
            # The common case, all of it under the size, is one sum in C, not a loop.
            total = nbytes + sum(map(len, lines))
            if total <= size:
                self._lines.extend(lines)
                self._arrivals.append((now, len(lines)))
                self.nbytes = total
                if total > self.peak_bytes:
                    self.peak_bytes = total
                self._cond.notify_all()
                return len(lines)
            accepted = 0
            for line in lines:
                after = nbytes + len(line)
                if after > size:
                    if after > ceiling:
                        break
                    if self._over_since is None:
                        self._over_since = now
                    if now - self._over_since >= self._grace:
                        break
                nbytes = after
                accepted += 1
            if accepted:
                if accepted == len(lines):
                    self._lines.extend(lines)
                else:
                    self._lines.extend(lines[:accepted])
                self._arrivals.append((now, accepted))
                self.nbytes = nbytes
                if nbytes > self.peak_bytes:
                    self.peak_bytes = nbytes
                self._cond.notify_all()
            return accepted

    def take(self, max_bytes: int) -> List[bytes]:
        """The oldest lines up to ``max_bytes`` in all (at least one line, however long).

        Taking is the flusher's progress: it re-arms the grace window.
        """
        with self._cond:
            lines = self._lines
            if len(lines) and self.nbytes <= max_bytes:
                return self._take_everything()
            taken: List[bytes] = []
            append = taken.append
            popleft = lines.popleft
            nbytes = 0
            while lines:
                after = nbytes + len(lines[0])
                if after > max_bytes and taken:
                    break
                append(popleft())
                nbytes = after
            self.nbytes -= nbytes
            count = len(taken)
            arrivals = self._arrivals
            while count:
                arrived, n = arrivals[0]
                if n > count:
                    arrivals[0] = (arrived, n - count)
                    break
                arrivals.popleft()
                count -= n
            # Still over the size: the window restarts now, so it only runs out after
            # ``grace`` seconds in which the flusher took nothing.
            self._over_since = self._clock() if self.nbytes > self._size else None
            return taken

    def _take_everything(self) -> List[bytes]:
        lines = self._lines
        self._lines = deque()
        self._arrivals.clear()
        self.nbytes = 0
        self._over_since = None
        return list(lines)

    def take_all(self) -> List[bytes]:
        """Everything buffered, oldest first; the buffer is then empty and the grace re-armed."""
        with self._cond:
            return self._take_everything()

    def wait_for_data(self, timeout: Optional[float]) -> bool:
        """Sleep until something is buffered, the buffer is closed, or ``timeout`` passes.

        Returns whether data is buffered. ``timeout`` None waits without limit.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._lines or self._closed, timeout)
            return bool(self._lines)

    def close(self) -> None:
        """Accept nothing more and wake every waiter (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._lines)

    def oldest_age(self) -> float:
        """Seconds the oldest buffered entry has waited (0 when empty)."""
        with self._cond:
            if not self._arrivals:
                return 0.0
            return max(0.0, self._clock() - self._arrivals[0][0])
