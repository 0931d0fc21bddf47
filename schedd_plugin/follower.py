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

The work is split into rooms of one concern each: :mod:`schedd_plugin.logread` reads complete
lines and loads a file silently, :func:`schedd_plugin.logparse.parse_lines` parses a chunk,
:class:`schedd_plugin.transactions.TransactionGrouper` groups the ops into committed
transactions and bare ops, :meth:`schedd_plugin.mirror.Mirror.apply` applies them and calls
back, and :mod:`schedd_plugin.reload` decides rotations and corrupt lines and diffs a
reloaded file in.  This module is the loop around them.

Start-up (the first :meth:`Follower.poll`):

- with a ``position`` whose (dev, ino, seq, birth) match the file and whose offset is a line
  boundary inside it, the file up to the offset is loaded into the mirror silently (no
  callbacks: those changes were sent before the restart), then it continues live;
- with a ``position`` in a file the schedd rotated away since (kept as ``<path>.<seq>``, the
  same inode), the follower resumes in the kept file as above, so what was written to it
  after the position is replayed, and the next poll handles the rotation;
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
from typing import List, Optional, Set, Tuple

from pandad.stats import Counters
from schedd_plugin.callbacks import ClassAdLogPlugin
from schedd_plugin.logparse import HISTORICAL_SEQUENCE, CorruptLine, LogOp, parse_lines
from schedd_plugin.logread import (CHUNK_BYTES, Line, LoadResult, complete_lines, first_line_id,
                                   load_log, offset_after, parse, parses, segments)
from schedd_plugin.mirror import Mirror
from schedd_plugin.reload import (SKIP, WAIT, corrupt_line_action, replay_differences,
                                  rotation_reason)
from schedd_plugin.state import Position
from schedd_plugin.tailscan import Skipped, TailMemo
from schedd_plugin.transactions import TransactionGrouper

__all__ = ["Follower", "load_log", "LoadResult"]

log = logging.getLogger("panda_plugin.follower")


class Follower:
    """Follows ``path`` and calls ``plugin`` back; see the module docstring."""

    def __init__(self, path: str, plugin: ClassAdLogPlugin, mirror: Mirror,
                 position: Optional[Position] = None, stats: Optional[Counters] = None,
                 chunk_size: int = CHUNK_BYTES, fast: bool = True) -> None:
        self.path = path
        self.plugin = plugin
        self.mirror = mirror
        self.stats = stats
        self.chunk_size = chunk_size
        # logparse.parse_lines' fast path (False: its reference, parse_line, for every line)
        self.fast = fast
        self._start_position = position
        self._started = False
        self._fd: Optional[int] = None
        self._dev = self._ino = 0
        self._first: Optional[Tuple[int, int]] = None   # (seq, birth) of the 107 first line
        self._read_offset = 0     # start of the first line not consumed yet
        self._committed = 0       # end of the last transaction or bare op
        self._grouper = TransactionGrouper()   # its open transaction is kept across polls
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
        position = self._start_position
        if position is not None:
            fd = self._kept_file(fd, position)
        st = os.fstat(fd)
        first = first_line_id(fd)
        seq, birth = first or (0, 0)
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

    def _kept_file(self, fd: int, position: Position) -> int:
        """The file to start in: the one at the path, or the one the position is in if the
        schedd rotated it away (``<path>.<seq>``, same inode) after the position was saved.

        Resuming in the kept file sends what was written to it after the position (a job's
        last updates, its removal); the next poll then sees the rotation and diffs the new
        file in.  Replaying the new file alone could not tell that those jobs left.
        """
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (position.dev, position.ino) or not position.seq:
            return fd
        kept_path = f"{self.path}.{position.seq}"
        try:
            kept = os.open(kept_path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return fd
        kept_st = os.fstat(kept)
        if (stat.S_ISREG(kept_st.st_mode)
                and (kept_st.st_dev, kept_st.st_ino) == (position.dev, position.ino)
                and first_line_id(kept) == (position.seq, position.birth)):
            log.info("%s was rotated since the position was saved: resuming in %s",
                     self.path, kept_path)
            os.close(fd)
            return kept
        os.close(kept)
        return fd

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
        self._grouper.drop()
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
        for start, lines in complete_lines(fd, self._read_offset, self.chunk_size, text=True,
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
        ops, corrupt = parse_lines(lines, self.fast, self.mirror.name)
        consumed = 0
        for pos, first, run, stop in segments(start, lines, ops, corrupt):
            if run:
                self._play(pos, lines, first, run)
            consumed += len(run)
            if stop == len(lines):
                break
            line = lines[stop]
            pos = offset_after(pos, lines, first, len(run))
            end = pos + len(line) + 1
            if pos in self._known_corrupt:
                consumed += 1
                continue
            reason = "corrupt line"
            try:
                parse(line)
            except CorruptLine as e:
                reason = str(e)
            # Drained, nothing more will be written: no need to look for a record after it.
            follows = self._draining or self._record_follows(lines, stop + 1, end)
            action = corrupt_line_action(follows, isinstance(line, Skipped), self._draining,
                                         self._first is not None)
            if action == WAIT:
                # Nothing valid after it (yet): a write in progress, or NULs that may turn
                # into data.  Read it again next poll.
                self._read_offset = pos
                self._count("log_lines_read", consumed)
                return False
            self._known_corrupt.add(pos)
            self._count("log_corrupt_lines")
            consumed += 1
            if action == SKIP:
                log.warning("%s: corrupt line at offset %d skipped (%s)", self.path, pos, reason)
                continue
            log.warning("%s: corrupt line at offset %d (%s); resyncing from the whole file",
                        self.path, pos, reason)
            self._count("log_lines_read", consumed)
            self._resync()
            return False
        self._read_offset = offset_after(start, lines, 0, len(lines))
        self._count("log_lines_read", consumed)
        return True

    def _play(self, pos: int, lines: List[Line], first: int, run: List[LogOp]) -> None:
        """Replay the transactions and bare ops ``run`` completes (its first line is
        ``lines[first]``, at ``pos``); the position moves to after the last of them."""
        if pos == 0 and run[0][0] == HISTORICAL_SEQUENCE:
            self._first = (int(run[0][4][0]), int(run[0][4][2]))
        units, done = self._grouper.feed(run)
        mirror, plugin = self.mirror, self.plugin
        for unit in units:
            if type(unit) is list:
                plugin.begin_transaction()
                mirror.apply(unit, plugin)      # type: ignore[arg-type]
                plugin.end_transaction()
            elif type(unit) is int:
                log.warning("%s: nested 105 at offset %d ignored", self.path,
                            offset_after(pos, lines, first, unit))  # type: ignore[arg-type]
            else:
                mirror.apply([unit], plugin)    # type: ignore[list-item]
        if done:
            self._committed = offset_after(pos, lines, first, done)

    def _record_follows(self, lines: List[Line], index: int, offset: int) -> bool:
        """Is there a valid complete record after a corrupt line (in ``lines`` or the file)?"""
        for line in lines[index:]:
            if parses(line):
                return True
        after = offset + sum(len(line) + 1 for line in lines[index:])
        assert self._fd is not None
        for _, more in complete_lines(self._fd, after, self.chunk_size,
                                      tail=self._follows_tail):
            for line in more:
                if parses(line):
                    return True
        return False

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
        rotated = rotation_reason((self._dev, self._ino), (st.st_dev, st.st_ino), st.st_size,
                                  self._read_offset, self._first, first_line_id(fd))
        if rotated is None:
            return False
        self._rotate(*rotated)
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
            new_seq = (first_line_id(fd) or (0, 0))[0]
            if old_seq and new_seq > old_seq + 1:
                self._catch_up(old_seq + 1, new_seq)
            if self._fd is not None:
                os.close(self._fd)
        self._enter(fd, reason, snapshot_only=drain)

    def _enter(self, fd: int, reason: str, snapshot_only: bool) -> None:
        """Make ``fd`` the current file: diff its state in, then read what follows."""
        self._use_file(fd, os.fstat(fd), first_line_id(fd))
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
        dropped = self._grouper.drop()
        if dropped:
            log.info("%s rotated with an unterminated transaction of %d ops; dropped, as "
                     "the schedd drops it", self.path, dropped)

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
            if fd >= 0 and (first_line_id(fd) or (0, 0))[0] != seq:
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
        self._grouper.drop()
        self._count("log_resyncs")
        changes = self._reload()
        log.info("%s resynced: %d differences replayed", self.path, changes)

    def _reload(self, snapshot_only: bool = False) -> int:
        """Load the current file and replay its differences to the mirror; reading goes on
        from the end of what was loaded (see :func:`load_log`)."""
        assert self._fd is not None
        if len(self.mirror) and first_line_id(self._fd) is None:
            return self._keep_mirror_without_snapshot()
        fresh = Mirror()
        result = load_log(self._fd, fresh, chunk_size=self.chunk_size,
                          snapshot_only=snapshot_only, tail=self._tail)
        self._count("log_lines_read", result.lines)
        self._note_corrupt(result.corrupt)
        if result.seq or result.birth:
            self._first = (result.seq, result.birth)
        self._grouper.drop()
        self._read_offset = self._committed = result.committed
        return replay_differences(self.mirror, fresh, self.plugin)

    def _keep_mirror_without_snapshot(self) -> int:
        """The file has no 107 first line, so it is no snapshot of the queue: diffing it would
        destroy every job.  Keep the mirror; reading goes on from where it stands (0 for a
        file just entered), so what the schedd appends is replayed as usual."""
        self._count("log_not_snapshot")
        log.warning("%s is not a job queue snapshot (no 107 first line: emptied, truncated or "
                    "replaced under the schedd?); keeping the %d ads known, removing none, "
                    "and following what is appended", self.path, len(self.mirror))
        self._grouper.drop()
        return 0

    def _note_corrupt(self, offsets: Tuple[int, ...]) -> None:
        new = [offset for offset in offsets if offset not in self._known_corrupt]
        if new:
            self._known_corrupt.update(new)
            self._count("log_corrupt_lines", len(new))
            log.warning("%s: %d corrupt lines skipped (first at offset %d)",
                        self.path, len(new), new[0])

    def _count(self, name: str, n: int = 1) -> None:
        if self.stats is not None and n:
            self.stats.add(name, n)
