"""Bounded scanning of what is not a line of job_queue.log: NUL runs, holes, overlong lines.

A crash can leave a job queue log with a long run of NUL bytes (blocks allocated but never
written; a sparse hole reads the same), and a hostile or broken file can hold gigabytes
without a newline.  The follower never keeps more than :data:`MAX_LINE_BYTES` of one line:
past that, these functions find where the thing ends reading :data:`SCAN_CHUNK` bytes at a
time, jumping over holes with ``SEEK_DATA`` where the file system has it.

- A NUL run that starts a line and is longer than the bound ends at its first non-NUL
  byte: the text after it starts a new line (what the schedd appends after a crash).
- Any other line longer than the bound ends at its newline.

Either comes back as one :class:`Skipped` "line" the follower treats as corrupt.  When no
end is found (the run or the line reaches the end of the file), a :class:`TailMemo` keeps
how far it was scanned, so the next poll reads only what was appended since.
"""

import errno
import os
from typing import Optional, Tuple

__all__ = ["MAX_LINE_BYTES", "SCAN_CHUNK", "Skipped", "TailMemo", "nul_run_end",
           "find_newline", "memo_valid", "scan_tail"]

# Longer than any record the schedd writes (a ClassAd value of a few hundred KiB is already
# unusual); a line beyond it is reported and skipped, never held in memory.
MAX_LINE_BYTES = 4 << 20
SCAN_CHUNK = 1 << 20
# How much of a memo's start is compared to notice an unterminated tail rewritten in place.
_HEAD_BYTES = 4096


class Skipped:
    """A region skipped as one corrupt line: ``size`` bytes including its newline, if any.

    ``len()`` is ``size - 1`` so that the follower's ``offset + len(line) + 1`` is where the
    next line starts, as for a real line without its ``\\n``.
    """

    __slots__ = ("size", "reason")

    def __init__(self, size: int, reason: str) -> None:
        self.size = size
        self.reason = reason

    def __len__(self) -> int:
        return self.size - 1

    def __repr__(self) -> str:
        return f"Skipped({self.size}, {self.reason!r})"


class TailMemo:
    """An unterminated NUL run or overlong line at ``start``, scanned up to ``scanned``."""

    __slots__ = ("start", "scanned", "nul", "head", "reported")

    def __init__(self, start: int, scanned: int, nul: bool, head: bytes) -> None:
        self.start = start
        self.scanned = scanned
        self.nul = nul              # a NUL run (else a line without a newline)
        self.head = head            # its first bytes, to notice a rewrite in place
        self.reported = False

    def describe(self) -> str:
        what = ("a NUL run or sparse hole (what a crash can leave)" if self.nul
                else "a line without a newline")
        return f"{what} at offset {self.start}, {self.scanned - self.start} bytes so far"


def _next_data(fd: int, pos: int, end: int) -> int:
    """The first offset at or after ``pos`` that is not in a hole (``end`` if none)."""
    seek_data = getattr(os, "SEEK_DATA", None)
    if seek_data is None:
        return pos
    try:
        return min(os.lseek(fd, pos, seek_data), end)
    except OSError as e:
        # ENXIO: only a hole from pos to the end of the file.  Anything else (EINVAL: the
        # file system cannot tell): read everything.
        return end if e.errno == errno.ENXIO else pos


def nul_run_end(fd: int, pos: int, end: int, chunk: int = SCAN_CHUNK) -> int:
    """The offset of the first byte that is not NUL in ``[pos, end)``, or ``end``."""
    while pos < end:
        pos = _next_data(fd, pos, end)
        if pos >= end:
            return end
        data = os.pread(fd, min(chunk, end - pos), pos)
        if not data:
            return pos
        rest = data.lstrip(b"\0")
        if rest:
            return pos + len(data) - len(rest)
        pos += len(data)
    return end


def find_newline(fd: int, pos: int, end: int, chunk: int = SCAN_CHUNK) -> Optional[int]:
    """The offset of the first ``\\n`` in ``[pos, end)``, or None."""
    while pos < end:
        pos = _next_data(fd, pos, end)
        if pos >= end:
            return None
        data = os.pread(fd, min(chunk, end - pos), pos)
        if not data:
            return None
        found = data.find(b"\n")
        if found >= 0:
            return pos + found
        pos += len(data)
    return None


def memo_valid(fd: int, memo: TailMemo) -> bool:
    """Is the file still what was scanned (not shrunk, its first bytes unchanged)?"""
    return (os.fstat(fd).st_size >= memo.scanned
            and os.pread(fd, len(memo.head), memo.start) == memo.head)


def scan_tail(fd: int, start: int, end: int, memo: Optional[TailMemo],
              chunk: int = SCAN_CHUNK) -> Tuple[Optional[Skipped], Optional[TailMemo]]:
    """What starts at ``start`` (a line start) and is longer than :data:`MAX_LINE_BYTES`.

    Returns ``(Skipped, None)`` when its end is before ``end``, else ``(None, memo)`` with a
    memo of how far it was scanned.  A ``memo`` for the same start (checked by the caller
    with :func:`memo_valid`) is resumed from where it stopped, so an unchanged tail costs a
    few small reads.
    """
    if memo is not None and memo.start == start:
        nul, scan_from = memo.nul, memo.scanned
    else:
        memo = None
        nul, scan_from = os.pread(fd, 1, start) == b"\0", start
    if nul:
        stop = nul_run_end(fd, scan_from, end, chunk)
        if stop < end:
            return Skipped(stop - start, f"NUL run of {stop - start} bytes"), None
    else:
        newline = find_newline(fd, scan_from, end, chunk)
        if newline is not None:
            size = newline + 1 - start
            return Skipped(size, f"line of {size} bytes, longer than the "
                                 f"{MAX_LINE_BYTES}-byte limit"), None
    if memo is None:
        memo = TailMemo(start, end, nul, os.pread(fd, _HEAD_BYTES, start))
    memo.scanned = max(memo.scanned, end)
    return None, memo
