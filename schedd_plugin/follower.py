"""Follow job_queue.log and replay it as ClassAdLogPlugin callbacks (docs/design.md §5.1).

``docs/job-queue-log.md`` §8 is the checklist this follows.  In short:

- The file is read in binary, only complete ``\\n``-terminated lines are parsed; a torn tail
  is read again from its start on the next poll.
- Operations between ``105`` and ``106`` are buffered (across polls) and replayed only when
  the ``106`` is read: ``begin_transaction``, the ops, ``end_transaction``.  Bare operations
  are replayed at once, without begin/end.  Each op is applied to the mirror first and then
  called back, except a destroy, which is called back first (the ad is still readable).
  Set/delete/destroy of an unknown key are no-ops without a callback (the schedd's Play).
- :attr:`Follower.position` (dev, ino, 107 sequence, 107 birth, offset) advances only at a
  transaction boundary: after a ``106`` or a bare op.  A file without a ``107`` first line
  has sequence and birth 0.
- Every poll checks for a rotation: a new (dev, ino) at the path, a size below the offset,
  or a changed (or vanished) ``107`` first line.  The new file may be larger than the old
  offset.  On rotation the old file is read to its end (its complete transactions are
  replayed with callbacks, an unterminated one is dropped, as the schedd drops it), the new
  file is loaded into a fresh :class:`Mirror` and only the real differences (values
  compared normalised, :func:`schedd_plugin.mirror.normalise_value`) are called back, in one
  begin/end pair; reading continues after the new file's last committed record.
- A corrupt line at the end of what is written is waited on (it may be a write in
  progress, or NULs that become data).  A corrupt line followed by complete records is
  counted, logged in one line, and the follower resyncs: the whole file is reloaded and
  diffed like a rotation.  A corrupt line already seen is skipped, so this never loops.
- No more than ``tailscan.MAX_LINE_BYTES`` of one line is held: a longer line, or a longer
  NUL run at a line start, comes as one :class:`~schedd_plugin.tailscan.Skipped` corrupt line
  once its end is found (never waited on).  One reaching the end of the file is logged once
  (offset, length) and counted in ``log_unterminated_tails``; its :class:`TailMemo` makes the
  next polls read only what was appended.
- A corrupt line is never quoted beyond a short printable prefix (logparse's ``_preview``):
  JOB_QUEUE_LOG may be a symlink to any file.
- Only a snapshot is ever diffed against the mirror, and the schedd never writes one without
  its ``107`` first line.  A file without one (emptied, truncated or replaced under a running
  schedd) would otherwise tell the monitor that every job left: instead the mirror is kept,
  the file is followed as a continuation of the log (what is appended is replayed as usual),
  a corrupt line in it is skipped rather than resynced from, and ``log_not_snapshot`` counts
  each time.  A path that is not a regular file (a directory, say) is waited on, logged once.

Start-up (the first :meth:`Follower.poll`):

- with a ``position`` whose (dev, ino, seq, birth) match the file and whose offset is a line
  boundary inside it, the file up to the offset is loaded into the mirror silently (no
  callbacks: those changes were sent before the restart), then it continues live;
- otherwise the whole file is replayed as the schedd's own start-up replay does: the
  existing state as ``new_classad``/``set_attribute`` callbacks, then ``initialize()``.
  Unlike the schedd, this replay is wrapped in one begin/end pair, so a plug-in can batch
  it: :class:`schedd_plugin.callbacks.PandaPlugin` writes exactly one ``ADD`` per job in the
  queue, with its effective attributes (pandad's upsert heals a monitor that has the job).

Counters (``pandad.stats.Counters``, optional): ``log_lines_read``,
``log_corrupt_lines``, ``log_rotations``, ``log_resyncs``, ``log_rotations_missed``,
``log_not_snapshot``, ``log_unterminated_tails``.
"""

import logging
import os
import stat
from typing import Iterator, List, NamedTuple, Optional, Set, Tuple, Union

from pandad.stats import Counters
from schedd_plugin.callbacks import ClassAdLogPlugin
from schedd_plugin.logparse import (BEGIN_TRANSACTION, DELETE_ATTRIBUTE, DESTROY_CLASSAD,
                                    END_TRANSACTION, HISTORICAL_SEQUENCE, NEW_CLASSAD,
                                    SET_ATTRIBUTE, CorruptLine, LogOp, parse_line)
from schedd_plugin.mirror import Mirror, normalise_value
from schedd_plugin.state import Position
from schedd_plugin.tailscan import MAX_LINE_BYTES, Skipped, TailMemo, memo_valid, scan_tail

__all__ = ["Follower", "load_log", "LoadResult"]

log = logging.getLogger("panda_plugin.follower")

CHUNK_BYTES = 1 << 20
# A line as _complete_lines returns it: bytes, or str for a plain-ASCII chunk.
Line = Union[bytes, str]  # or, alone in its list, a tailscan.Skipped
# The first line is a 107 of a few dozen bytes; a longer read only costs time.
_FIRST_LINE_BYTES = 256
# What parse_line returns for "105 " and "106 ".
_BEGIN = LogOp(BEGIN_TRANSACTION, "", None, None, ())
_END = LogOp(END_TRANSACTION, "", None, None, ())


class LoadResult(NamedTuple):
    """What :func:`load_log` read."""

    committed: int          # offset after the last 106 or bare op: where live reading resumes
    seq: int                # the 107 first line's sequence (0: none)
    birth: int              # the 107 first line's CreationTimestamp (0: none)
    lines: int              # complete lines read
    corrupt: Tuple[int, ...]  # offsets of the corrupt lines skipped


def _complete_lines(fd: int, offset: int, chunk_size: int, limit: Optional[int] = None,
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


def _first_line_id(fd: int) -> Optional[Tuple[int, int]]:
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


def load_log(fd: int, mirror: Mirror, limit: Optional[int] = None,
             chunk_size: int = CHUNK_BYTES, snapshot_only: bool = False,
             tail: Optional[List[Optional[TailMemo]]] = None) -> LoadResult:
    """Apply the log in ``fd`` (from offset 0, up to ``limit``) to ``mirror``, silently.

    Transactions are applied at their ``106``; an unterminated one at the end is left out
    (``committed`` stops before its ``105``); corrupt lines are skipped and reported.
    With ``snapshot_only``, loading stops at the first ``105``: what a rotation wrote (the
    snapshot and the bare records re-logged after it), not what was appended since.
    ``tail`` is :func:`_complete_lines`'s (a fresh one if None).
    """
    new_classad, destroy = mirror.new_classad, mirror.destroy_classad
    set_attribute, delete = mirror.set_attribute, mirror.delete_attribute
    txn: Optional[List[LogOp]] = None
    committed = seq = birth = count = 0
    corrupt: List[int] = []

    def apply(op: LogOp) -> None:
        code = op[0]
        if code == SET_ATTRIBUTE:
            set_attribute(op[1], op[2], op[3])
        elif code == NEW_CLASSAD:
            new_classad(op[1], op[4][0], op[4][1])
        elif code == DESTROY_CLASSAD:
            destroy(op[1])
        elif code == DELETE_ATTRIBUTE:
            delete(op[1], op[2])

    for start, lines in _complete_lines(fd, 0, chunk_size, limit,
                                        tail=[None] if tail is None else tail):
        pos = start
        for line in lines:
            count += 1
            end = pos + len(line) + 1
            try:
                op = _parse(line)
            except CorruptLine:
                corrupt.append(pos)
                pos = end
                continue
            code = op[0]
            if txn is not None:
                if code == END_TRANSACTION:
                    for buffered in txn:
                        apply(buffered)
                    txn = None
                    committed = end
                elif code < BEGIN_TRANSACTION:
                    txn.append(op)
                # a nested 105 or a misplaced 107: the schedd only warns; so do we (not)
            elif code < BEGIN_TRANSACTION:
                apply(op)
                committed = end
            elif code == BEGIN_TRANSACTION:
                if snapshot_only:
                    return LoadResult(committed, seq, birth, count, tuple(corrupt))
                txn = []
            else:
                if code == HISTORICAL_SEQUENCE and pos == 0:
                    seq, birth = int(op[4][0]), int(op[4][2])
                committed = end
            pos = end
    return LoadResult(committed, seq, birth, count, tuple(corrupt))


class Follower:
    """Follows ``path`` and calls ``plugin`` back; see the module docstring."""

    def __init__(self, path: str, plugin: ClassAdLogPlugin, mirror: Mirror,
                 position: Optional[Position] = None, stats: Optional[Counters] = None,
                 chunk_size: int = CHUNK_BYTES) -> None:
        self.path = path
        self.plugin = plugin
        self.mirror = mirror
        self.stats = stats
        self.chunk_size = chunk_size
        self._start_position = position
        self._started = False
        self._fd: Optional[int] = None
        self._dev = self._ino = 0
        self._first: Optional[Tuple[int, int]] = None   # (seq, birth) of the 107 first line
        self._read_offset = 0     # start of the first line not consumed yet
        self._committed = 0       # end of the last transaction or bare op
        self._txn: Optional[List[LogOp]] = None
        self._known_corrupt: Set[int] = set()   # offsets in the current file, counted once
        self._draining = False
        self._missing_logged = False
        # An unterminated NUL run or overlong line where reading stands (tailscan), and one
        # after a corrupt line that is waited on (_record_follows).
        self._tail: List[Optional[TailMemo]] = [None]
        self._follows_tail: List[Optional[TailMemo]] = [None]
        # After the start: True if it resumed at the given position, False if it replayed
        # the whole log (healing reconciles then).
        self.resumed: Optional[bool] = None

    # -- public ----------------------------------------------------------------------------

    @property
    def position(self) -> Optional[Position]:
        """The committed position (the one given, until the first poll has read the file)."""
        if not self._started:
            return self._start_position
        seq, birth = self._first or (0, 0)
        return Position(self._dev, self._ino, seq, birth, self._committed)

    def poll(self) -> bool:
        """Read what is new; True if anything was read (or the file was reloaded)."""
        if not self._started:
            return self._start()
        if self._check_rotation():
            return True
        return self._read()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- start-up --------------------------------------------------------------------------

    def _open(self) -> Optional[int]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            self._wait_for_file("does not exist (yet)")
            return None
        except OSError as e:
            self._wait_for_file(f"cannot be opened ({e.strerror})")
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._wait_for_file("is not a regular file (a directory?)")
            return None
        self._missing_logged = False
        return fd

    def _wait_for_file(self, problem: str) -> None:
        if not self._missing_logged:
            log.warning("%s %s; waiting for the job queue log", self.path, problem)
            self._missing_logged = True

    def _start(self) -> bool:
        fd = self._open()
        if fd is None:
            return False
        st = os.fstat(fd)
        first = _first_line_id(fd)
        seq, birth = first or (0, 0)
        position = self._start_position
        self._use_file(fd, st, first)
        if position is not None and self._resumable(fd, st, seq, birth, position):
            result = load_log(fd, self.mirror, limit=position.offset,
                              chunk_size=self.chunk_size)
            if result.committed == position.offset:
                self._count("log_lines_read", result.lines)
                self._note_corrupt(result.corrupt)
                self._read_offset = self._committed = position.offset
                self._started = True
                self.resumed = True
                log.info("resuming %s at offset %d (sequence %d): %d ads loaded silently",
                         self.path, position.offset, seq, len(self.mirror))
                self.plugin.initialize()
                self._read()
                return True
            log.info("saved position %s is not a transaction boundary of %s; replaying "
                     "the whole log", position, self.path)
            self.mirror.clear()
        elif position is not None:
            log.info("saved position %s does not match %s (dev %d, ino %d, sequence %d); "
                     "replaying the whole log", position, self.path, st.st_dev, st.st_ino, seq)
        self._started = True
        self.resumed = False
        changes = self._reload()
        log.info("replayed %s: %d ads, %d callbacks", self.path, len(self.mirror), changes)
        self.plugin.initialize()
        self._read()
        return True

    def _resumable(self, fd: int, st: os.stat_result, seq: int, birth: int,
                   position: Position) -> bool:
        if (position.dev, position.ino, position.seq, position.birth) != (
                st.st_dev, st.st_ino, seq, birth):
            return False
        if position.offset > st.st_size:
            return False
        return position.offset == 0 or os.pread(fd, 1, position.offset - 1) == b"\n"

    def _use_file(self, fd: int, st: os.stat_result, first: Optional[Tuple[int, int]]) -> None:
        self._fd = fd
        self._dev, self._ino = st.st_dev, st.st_ino
        self._first = first
        self._txn = None
        self._known_corrupt = set()
        self._read_offset = self._committed = 0
        self._tail = [None]
        self._follows_tail = [None]

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> bool:
        """Process the complete lines after the read offset; True if there were any."""
        fd = self._fd
        assert fd is not None
        got = False
        ahead = self._follows_tail[0]
        if self._tail[0] is None and ahead is not None and ahead.start >= self._read_offset:
            self._tail[0] = ahead   # met after a corrupt line: not scanned (or logged) again
        for start, lines in _complete_lines(fd, self._read_offset, self.chunk_size, text=True,
                                            tail=self._tail):
            got = True
            if not self._process(start, lines):
                break
        self._note_tail()
        return got

    def _note_tail(self) -> None:
        """Log and count an unterminated NUL run or overlong line once, when first met."""
        for memo in (self._tail[0], self._follows_tail[0]):
            if memo is None or memo.reported:
                continue
            memo.reported = True
            self._count("log_unterminated_tails")
            log.warning("%s: %s, with no record after it; waiting for records after it or "
                        "for a new file, reading only what is appended", self.path,
                        memo.describe())

    def _process(self, start: int, lines: List[Line]) -> bool:
        """Apply ``lines`` (the first at offset ``start``); False when reading must stop."""
        txn = self._txn
        pos = start
        consumed = 0
        ok = True
        # The str lines of a plain-ASCII chunk (nearly every chunk) have their common records
        # parsed inline, with the checks of parse_line's own fast paths and the same results;
        # anything else, and every line of a bytes chunk, goes through parse_line.
        text = bool(lines) and isinstance(lines[0], str)
        # One test for the whole chunk instead of one per key and name (a tab is rare).
        tabs = text and "\t" in "".join(lines)
        shared_name, names_get, last_key = self.mirror.name, self.mirror.names.get, ""
        for line in lines:
            end = pos + len(line) + 1
            op = None
            if text:
                head = line[:4]
                if head == "103 ":
                    # SetAttribute, most of the log: "103 key name value", single spaces, no
                    # tab in key or name, a value that is not empty and does not start with a
                    # blank (value[:1] is "" for an empty one, and "" is in any string).
                    try:
                        _, key, name, value = line.split(" ", 3)
                    except ValueError:  # fewer than four words: parse_line says why
                        key = name = value = ""
                    if (key and name and value[:1] not in " \t"
                            and (not tabs or "\t" not in key and "\t" not in name)):
                        consumed += 1
                        if txn is not None:
                            # Held until the commit: a proc's ops share its key string (they
                            # come one after another) and every name is the mirror's string.
                            if key == last_key:
                                key = last_key
                            last_key = key
                            entry = names_get(name)
                            txn.append((SET_ATTRIBUTE, key,
                                        shared_name(name) if entry is None else entry[0],
                                        value, ()))
                        else:
                            self._apply((SET_ATTRIBUTE, key, name, value, ()))
                            self._committed = end
                        pos = end
                        continue
                elif line == "106 ":
                    op = _END
                elif line == "105 ":
                    op = _BEGIN
                elif head == "104 ":
                    # "104 key name", exactly two single-space separated words, no tab.
                    parts = line.split(" ")
                    if len(parts) == 3 and parts[1] and parts[2] and (
                            not tabs or "\t" not in line):
                        op = (DELETE_ATTRIBUTE, parts[1], parts[2], None, ())
                elif head == "102 ":
                    # "102 key" (parse_line takes its slow path for these: same result).
                    parts = line.split(" ")
                    if len(parts) == 2 and parts[1] and (not tabs or "\t" not in line):
                        op = (DESTROY_CLASSAD, parts[1], None, None, ())
            if op is None:
                try:
                    op = _parse(line)
                except CorruptLine as e:
                    if pos in self._known_corrupt:
                        consumed += 1
                        pos = end
                        continue
                    self._txn = txn
                    follows = self._draining or self._record_follows(lines, consumed + 1, end)
                    # A long NUL run or overlong line is never a write in progress: waiting
                    # on it would scan it again every poll.
                    skipped = isinstance(line, Skipped)
                    if follows or skipped:
                        self._known_corrupt.add(pos)
                        self._count("log_corrupt_lines")
                        consumed += 1
                        if not follows or self._draining or self._first is None:
                            log.warning("%s: corrupt line at offset %d skipped (%s)",
                                        self.path, pos, e)
                            pos = end
                            continue
                        log.warning("%s: corrupt line at offset %d (%s); resyncing from the "
                                    "whole file", self.path, pos, e)
                        self._count("log_lines_read", consumed)
                        self._resync()
                        return False
                    # Nothing valid after it (yet): a write in progress, or NULs that may turn
                    # into data.  Read it again next poll.
                    ok = False
                    break
            consumed += 1
            code = op[0]
            if txn is not None:
                if code == END_TRANSACTION:
                    self._replay(txn)
                    txn = None
                    self._committed = end
                elif code < BEGIN_TRANSACTION:
                    txn.append(op)
                elif code == BEGIN_TRANSACTION:
                    log.warning("%s: nested 105 at offset %d ignored", self.path, pos)
            elif code < BEGIN_TRANSACTION:
                self._apply(op)
                self._committed = end
            elif code == BEGIN_TRANSACTION:
                txn = []
            else:
                if code == HISTORICAL_SEQUENCE and pos == 0:
                    self._first = (int(op[4][0]), int(op[4][2]))
                self._committed = end
            pos = end
        self._txn = txn
        self._read_offset = pos
        self._count("log_lines_read", consumed)
        return ok

    def _record_follows(self, lines: List[Line], index: int, offset: int) -> bool:
        """Is there a valid complete record after a corrupt line (in ``lines`` or the file)?"""
        for line in lines[index:]:
            if _parses(line):
                return True
        after = offset + sum(len(line) + 1 for line in lines[index:])
        assert self._fd is not None
        for _, more in _complete_lines(self._fd, after, self.chunk_size,
                                       tail=self._follows_tail):
            for line in more:
                if _parses(line):
                    return True
        return False

    def _apply(self, op: LogOp) -> None:
        code, key = op[0], op[1]
        mirror, plugin = self.mirror, self.plugin
        if code == SET_ATTRIBUTE:
            if mirror.set_attribute(key, op[2], op[3]):
                plugin.set_attribute(key, op[2], op[3])
        elif code == NEW_CLASSAD:
            mirror.new_classad(key, op[4][0], op[4][1])
            plugin.new_classad(key, op[4][0], op[4][1])
        elif code == DELETE_ATTRIBUTE:
            if mirror.delete_attribute(key, op[2]):
                plugin.delete_attribute(key, op[2])
        elif code == DESTROY_CLASSAD:
            if key in mirror.ads:
                plugin.destroy_classad(key)
                mirror.destroy_classad(key)

    def _replay(self, txn: List[LogOp]) -> None:
        plugin = self.plugin
        plugin.begin_transaction()
        # SetAttribute and DeleteAttribute are nearly every op: handled inline (what
        # Mirror.set_attribute / delete_attribute do, then the callback), methods bound once.
        ads_get, apply, item = self.mirror.ads.get, self._apply, self.mirror.item
        plugin_set, plugin_delete = plugin.set_attribute, plugin.delete_attribute
        lower, names_get = self.mirror.lower, self.mirror.names.get
        # Each op is let go once applied, so the ads a big submit adds to the mirror grow
        # into the memory its ops held, not on top of it.
        txn.reverse()
        pop = txn.pop
        while txn:
            op = pop()
            code = op[0]
            if code == SET_ATTRIBUTE:
                key = op[1]
                ad = ads_get(key)
                if ad is not None:
                    name, value = op[2], op[3]
                    # Mirror.item's common case inline: a known name, a value seen lately.
                    entry = names_get(name)
                    pair = None if entry is None else entry[2].get(value)
                    if pair is None:
                        lname, pair = item(name, value)
                        ad.attrs[lname] = pair
                    else:
                        ad.attrs[entry[1]] = pair
                    plugin_set(key, name, value)
            elif code == DELETE_ATTRIBUTE:
                # Mirror.delete_attribute inline: an absent attribute is still called back.
                key = op[1]
                ad = ads_get(key)
                if ad is not None:
                    name = op[2]
                    ad.attrs.pop(lower(name), None)
                    plugin_delete(key, name)
            else:
                apply(op)
        plugin.end_transaction()

    # -- rotation and resync ---------------------------------------------------------------

    def _check_rotation(self) -> bool:
        """Detect and handle a rotation; True if there was one."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # rename() replaces the file atomically; this is someone else
        if not stat.S_ISREG(st.st_mode):
            # Not the schedd's doing either: keep the file we have until a log is back.
            self._wait_for_file("is not a regular file (a directory?)")
            return False
        if self._missing_logged:
            log.info("%s is a regular file again; following it", self.path)
            self._missing_logged = False
        fd = self._fd
        assert fd is not None
        if (st.st_dev, st.st_ino) != (self._dev, self._ino):
            reason, drain = "new file", True
        elif st.st_size < self._read_offset:
            reason, drain = f"size {st.st_size} below offset {self._read_offset}", False
        elif _first_line_id(fd) != self._first and (self._first or self._read_offset):
            # (A 107 appearing in a file that was empty is the schedd creating it.)
            reason, drain = "first line changed", False
        else:
            return False
        self._rotate(reason, drain)
        return True

    def _rotate(self, reason: str, drain: bool) -> None:
        old_fd = self._fd
        assert old_fd is not None
        if drain:
            self._drain()
        self._drop_open_transaction()
        fd = self._open() if drain else old_fd
        if fd is None:
            return
        if drain:
            old_seq = self._first[0] if self._first else 0
            new_seq = (_first_line_id(fd) or (0, 0))[0]
            if old_seq and new_seq > old_seq + 1:
                self._catch_up(old_seq + 1, new_seq)
            if self._fd is not None:
                os.close(self._fd)
        self._enter(fd, reason, snapshot_only=drain)

    def _enter(self, fd: int, reason: str, snapshot_only: bool) -> None:
        """Make ``fd`` the current file: diff its state in, then read what follows."""
        self._use_file(fd, os.fstat(fd), _first_line_id(fd))
        self._count("log_rotations")
        # For a new file, only its snapshot part is diffed; the transactions appended to it
        # since are replayed live, so a job that came and went after the rename is not
        # missed.  A file rewritten in place (never done by the schedd) is diffed whole.
        changes = self._reload(snapshot_only=snapshot_only)
        log.info("%s rotated (%s; sequence %d): %d differences replayed",
                 self.path, reason, (self._first or (0, 0))[0], changes)
        self._read()

    def _drain(self) -> None:
        # The schedd closed the old file before the rename: what is in it is final, and its
        # complete transactions are replayed so a short-lived job is not missed.
        self._draining = True
        try:
            self._read()
        finally:
            self._draining = False

    def _drop_open_transaction(self) -> None:
        if self._txn:
            log.info("%s rotated with an unterminated transaction of %d ops; dropped, as "
                     "the schedd drops it", self.path, len(self._txn))
        self._txn = None

    def _catch_up(self, first: int, last: int) -> None:
        """Several rotations since the last poll: replay the files in between.

        The schedd keeps the file it rotates away as ``job_queue.log.<its sequence>``
        (MAX_JOB_QUEUE_LOG_ROTATIONS, default 1), so the one just before the current file is
        normally there; one that is not is logged and counted (its short-lived jobs can be
        missed; the state is still right after the diff).
        """
        for seq in range(first, last):
            try:
                fd = os.open(f"{self.path}.{seq}", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                fd = -1
            if fd >= 0 and (_first_line_id(fd) or (0, 0))[0] != seq:
                os.close(fd)
                fd = -1
            if fd < 0:
                self._count("log_rotations_missed")
                log.warning("%s: sequence %d was rotated away before it could be read; jobs "
                            "that came and went in it may be missed", self.path, seq)
                continue
            if self._fd is not None:
                os.close(self._fd)
            self._enter(fd, f"intermediate file {self.path}.{seq}", snapshot_only=True)
            self._drain()
            self._drop_open_transaction()

    def _resync(self) -> None:
        self._txn = None
        self._count("log_resyncs")
        changes = self._reload()
        log.info("%s resynced: %d differences replayed", self.path, changes)

    def _reload(self, snapshot_only: bool = False) -> int:
        """Load the current file and replay its differences to the mirror; reading goes on
        from the end of what was loaded (see :func:`load_log`)."""
        assert self._fd is not None
        if len(self.mirror) and _first_line_id(self._fd) is None:
            return self._keep_mirror_without_snapshot()
        fresh = Mirror()
        result = load_log(self._fd, fresh, chunk_size=self.chunk_size,
                          snapshot_only=snapshot_only, tail=self._tail)
        self._count("log_lines_read", result.lines)
        self._note_corrupt(result.corrupt)
        if result.seq or result.birth:
            self._first = (result.seq, result.birth)
        self._txn = None
        self._read_offset = self._committed = result.committed
        return self._diff_into(fresh)

    def _keep_mirror_without_snapshot(self) -> int:
        """The file has no 107 first line, so it is no snapshot of the queue: diffing it would
        destroy every job.  Keep the mirror; reading goes on from where it stands (0 for a
        file just entered), so what the schedd appends is replayed as usual."""
        self._count("log_not_snapshot")
        log.warning("%s is not a job queue snapshot (no 107 first line: emptied, truncated or "
                    "replaced under the schedd?); keeping the %d ads known, removing none, "
                    "and following what is appended", self.path, len(self.mirror))
        self._txn = None
        return 0

    def _note_corrupt(self, offsets: Tuple[int, ...]) -> None:
        new = [offset for offset in offsets if offset not in self._known_corrupt]
        if new:
            self._known_corrupt.update(new)
            self._count("log_corrupt_lines", len(new))
            log.warning("%s: %d corrupt lines skipped (first at offset %d)",
                        self.path, len(new), new[0])

    def _diff_into(self, fresh: Mirror) -> int:
        """Make the mirror equal ``fresh``, calling back each real difference; returns how many.

        Values that differ only in their spelling (normalise_value) are updated silently.
        """
        mirror, plugin = self.mirror, self.plugin
        changes = 0
        plugin.begin_transaction()
        for key in [key for key in mirror.ads if key not in fresh.ads]:
            plugin.destroy_classad(key)
            mirror.destroy_classad(key)
            changes += 1
        for key, ad in fresh.ads.items():
            current = mirror.ads.get(key)
            if current is None:
                mirror.new_classad(key, ad.mytype, ad.targettype)
                plugin.new_classad(key, ad.mytype, ad.targettype)
                current = mirror.ads[key]
                changes += 1
            else:
                current.mytype, current.targettype = ad.mytype, ad.targettype
            attrs = current.attrs
            for lname, item in ad.attrs.items():
                old = attrs.get(lname)
                if old is None or (old[1] != item[1]
                                   and normalise_value(old[1]) != normalise_value(item[1])):
                    mirror.set_attribute(key, item[0], item[1])
                    plugin.set_attribute(key, item[0], item[1])
                    changes += 1
                elif old != item:
                    attrs[lname] = item
            for lname in [lname for lname in attrs if lname not in ad.attrs]:
                name = attrs[lname][0]
                mirror.delete_attribute(key, name)
                plugin.delete_attribute(key, name)
                changes += 1
        plugin.end_transaction()
        return changes

    def _count(self, name: str, n: int = 1) -> None:
        if self.stats is not None and n:
            self.stats.add(name, n)


def _parse(line: Union[Line, Skipped]) -> LogOp:
    """``parse_line`` of a line in any form ``_complete_lines`` gives."""
    if isinstance(line, Skipped):
        raise CorruptLine(line.reason)
    return parse_line(line if isinstance(line, bytes) else line.encode("ascii"))


def _parses(line: Line) -> bool:
    try:
        _parse(line)
    except CorruptLine:
        return False
    return True
