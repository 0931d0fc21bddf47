"""Reading job_queue.log: complete lines from an offset, the 107 first line, a silent load.

Only complete ``\\n``-terminated lines are returned; a torn tail is read again from its start
later.  No more than ``tailscan.MAX_LINE_BYTES`` of one line is held (see
:mod:`schedd_plugin.tailscan`).  :func:`load_log` applies a whole file (or its start) to a
:class:`~schedd_plugin.mirror.Mirror` without callbacks, grouping transactions with the one
:class:`~schedd_plugin.transactions.TransactionGrouper` the live follower uses too.
"""

import os
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from schedd_plugin.logparse import (HISTORICAL_SEQUENCE, CorruptLine, LogOp,
                                    parse_line, parse_lines)
from schedd_plugin.mirror import Mirror
from schedd_plugin.tailscan import MAX_LINE_BYTES, Skipped, TailMemo, memo_valid, scan_tail
from schedd_plugin.transactions import TransactionGrouper

__all__ = ["CHUNK_BYTES", "Line", "LoadResult", "complete_lines", "first_line_id", "load_log",
           "segments", "offset_after", "parse", "parses"]

CHUNK_BYTES = 1 << 20
# A line as complete_lines returns it: bytes, or str for a plain-ASCII chunk.
Line = Union[bytes, str]  # or, alone in its list, a tailscan.Skipped
# The first line is a 107 of a few dozen bytes; a longer read only costs time.
_FIRST_LINE_BYTES = 256


class LoadResult(NamedTuple):
    """What :func:`load_log` read."""

    committed: int          # offset after the last 106 or bare op: where live reading resumes
    seq: int                # the 107 first line's sequence (0: none)
    birth: int              # the 107 first line's CreationTimestamp (0: none)
    lines: int              # complete lines read
    corrupt: Tuple[int, ...]  # offsets of the corrupt lines skipped


def complete_lines(fd: int, offset: int, chunk_size: int, limit: Optional[int] = None,
                    text: bool = False, tail: Optional[List[Optional[TailMemo]]] = None
                    ) -> Iterator[Tuple[int, List[Line]]]:
    """``(offset of the first line, complete lines without b"\\n")`` from ``offset`` to EOF.

    A tail without ``\\n`` is not returned: the caller reads it again later from its start.
    With ``limit``, nothing at or after that offset is read.  With ``text``, a chunk that is
    all ASCII without NUL or CR (nearly every chunk) comes as ``str`` lines, decoded in one
    call; their lengths are still their byte lengths.

    No more than ``MAX_LINE_BYTES`` of one line is kept (:mod:`schedd_plugin.tailscan`): a
    longer line or NUL run comes alone, as a :class:`Skipped`.  Without ``tail`` such a thing
    ends the reading; with it, one that reaches the end of the file leaves its
    :class:`TailMemo` in ``tail[0]`` (None otherwise), and a memo given there for the same
    start is resumed rather than read again.
    """
    start = rpos = offset
    pending = b""
    memo = tail[0] if tail is not None else None
    if tail is not None:
        tail[0] = None
    while True:
        if memo is not None and memo.start == start and not memo_valid(fd, memo):
            memo = None         # rewritten in place: read it as lines again
        if memo is not None and memo.start == start or len(pending) > MAX_LINE_BYTES:
            if tail is None:
                return
            end = os.fstat(fd).st_size if limit is None else limit
            skipped, memo = scan_tail(fd, start, end, memo)
            if skipped is None:
                tail[0] = memo
                return
            memo = None
            yield start, [skipped]
            start = rpos = start + skipped.size
            pending = b""
        size = chunk_size if limit is None else min(chunk_size, limit - rpos)
        if memo is not None:
            if memo.start > rpos:
                size = min(size, memo.start - rpos)   # the lines before it, not the run
            elif memo.start != start:
                memo = None                           # not at a line start after all
        if size <= 0:
            return
        data = os.pread(fd, size, rpos)
        if not data:
            return
        rpos += len(data)
        buf = pending + data if pending else data
        if text and buf.isascii() and b"\0" not in buf and b"\r" not in buf:
            lines = buf.decode("ascii").split("\n")
            pending = lines.pop().encode("ascii")
        else:
            lines = buf.split(b"\n")
            pending = lines.pop()
        if lines:
            yield start, lines
            start = rpos - len(pending)


def first_line_id(fd: int) -> Optional[Tuple[int, int]]:
    """``(seq, birth)`` of the file's 107 first line, or None if it does not start with one."""
    head = os.pread(fd, _FIRST_LINE_BYTES, 0)
    end = head.find(b"\n")
    if end < 0:
        return None
    try:
        op = parse_line(head[:end])
    except CorruptLine:
        return None
    if op.op != HISTORICAL_SEQUENCE:
        return None
    return int(op.extra[0]), int(op.extra[2])

def offset_after(offset: int, lines: Sequence[Line], first: int, count: int) -> int:
    """Where the ``count`` lines from ``lines[first]`` (at ``offset``) end."""
    return offset + sum(map(len, lines[first:first + count])) + count


def segments(offset: int, lines: Sequence[Line], ops: List[LogOp], corrupt: List[int]
             ) -> Iterator[Tuple[int, int, List[LogOp], int]]:
    """Split :func:`~schedd_plugin.logparse.parse_lines`' answer at its corrupt lines:
    ``(offset of the run's first line, its index, its ops, index of the corrupt line that
    ends it or len(lines))``, the last run possibly empty."""
    first = taken = 0
    for stop in corrupt + [len(lines)]:
        count = stop - first
        run = ops if count == len(ops) else ops[taken:taken + count]
        yield offset, first, run, stop
        if stop < len(lines):
            offset = offset_after(offset, lines, first, count + 1)
        first, taken = stop + 1, taken + count


def load_log(fd: int, mirror: Mirror, limit: Optional[int] = None,
             chunk_size: int = CHUNK_BYTES, snapshot_only: bool = False,
             tail: Optional[List[Optional[TailMemo]]] = None) -> LoadResult:
    """Apply the log in ``fd`` (from offset 0, up to ``limit``) to ``mirror``, silently.

    Transactions are applied at their ``106``; an unterminated one at the end is left out
    (``committed`` stops before its ``105``); corrupt lines are skipped and reported.
    With ``snapshot_only``, loading stops at the first ``105``: what a rotation wrote (the
    snapshot and the bare records re-logged after it), not what was appended since.
    ``tail`` is :func:`complete_lines`' (a fresh one if None).
    """
    grouper = TransactionGrouper()
    committed = seq = birth = count = 0
    corrupt: List[int] = []
    for start, lines in complete_lines(fd, 0, chunk_size, limit,
                                       tail=[None] if tail is None else tail):
        ops, bad = parse_lines(lines)
        for pos, first, run, stop in segments(start, lines, ops, bad):
            if pos == 0 and run and run[0][0] == HISTORICAL_SEQUENCE:
                seq, birth = int(run[0][4][0]), int(run[0][4][2])
            units, done = grouper.feed(run, stop_at_begin=snapshot_only)
            for unit in units:
                if type(unit) is list:
                    mirror.apply(unit)       # type: ignore[arg-type]
                elif type(unit) is not int:
                    mirror.apply([unit])     # type: ignore[list-item]
            if done:
                committed = offset_after(pos, lines, first, done)
            if snapshot_only and done < len(run) and grouper.open is None:
                # stopped at the first 105 (it is counted as read, as what came before)
                return LoadResult(committed, seq, birth, count + first + done + 1,
                                  tuple(corrupt))
            if stop < len(lines):
                corrupt.append(offset_after(pos, lines, first, len(run)))
        count += len(lines)
    return LoadResult(committed, seq, birth, count, tuple(corrupt))


def parse(line: Union[Line, Skipped]) -> LogOp:
    """``parse_line`` of a line in any form :func:`complete_lines` gives."""
    if isinstance(line, Skipped):
        raise CorruptLine(line.reason)
    return parse_line(line if isinstance(line, bytes) else line.encode("ascii"))


def parses(line: Line) -> bool:
    try:
        parse(line)
    except CorruptLine:
        return False
    return True

