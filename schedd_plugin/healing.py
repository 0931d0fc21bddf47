"""Self-healing (docs/architecture.md, "Healing: the plug-in side"): which jobs the monitor
may be wrong about, and when to re-send them. Pure: plain data in, decisions out; the
plug-in's loop does the I/O.

A job is *to heal* when a change of it may not have reached the monitor:

- the plug-in dropped one of its records (pipe full, pandad not running): ``dropped``;
- pandad reported it ``LOST`` on the back channel (queue full, transport, rejected,
  discarded at shutdown): ``lost``;
- pandad died or exited (any status) while holding one of its records: ``pandad_gone``. Every
  record written whole into the pipe gets a sequence number (pandad counts the records it
  reads in the same order); ``SETTLED n`` says the first n are done, so a job whose last
  record is after n is one pandad may still have held. ``unsettled`` maps each job to the
  sequence number of its last record and is pruned against SETTLED at most once a second, so
  it holds jobs, not events;
- ``RESYNC`` (pandad lost too many to name), SIGUSR1, an unclean restart: every job.

The plug-in heals a job by re-sending its current state from the mirror: an ADD with every
attribute (pandad's upsert turns it into a PUT when the monitor has the job) for a job in the
queue, an ADD of its final state and a REMOVE for a job that left while it was in doubt (its
*tombstone*), a plain REMOVE otherwise. Ids are the records' id field as it is on the wire,
byte for byte (the quoted GlobalJobId), which is also what LOST names.

``budget`` paces healing: at most ``rate`` jobs a second; only while the spill buffer is
empty; and, while pandad reports back, only while the bytes it holds unsettled are below
``max_in_flight_bytes`` (twice pandad's PANDA_QUEUE_SIZE: over its size, pandad's buffer
takes records as long as its flusher keeps taking), so heal records never push live records
out of pandad's buffer.

It also backs off, so healing never hammers a monitor that is away: every ``LOST`` holds
healing for ``hold(failures)`` seconds, where ``failures`` counts the heal rounds lost in a row
(1, 2, 4, … up to ``HOLD_MAX`` s). A round is the records of one ``spent``; it failed when a
``LOST`` comes before ``SETTLED`` has passed its last record, and succeeded (``failures`` back
to 0) when ``SETTLED`` passes it with no ``LOST`` in between.
"""

from collections import deque
from typing import Deque, Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = ["Healing", "id_field", "parse_report", "LineSplitter", "HEAL_RATE"]

# Jobs re-sent per second at most (the pipe and pandad's buffer bound it further).
HEAL_RATE = 2000.0
# Without a back channel (a pandad that does not report), healing is paced by rate alone.
BLIND_HEAL_RATE = 100.0
# Tombstones (final ADDs of jobs that left while in doubt) are kept up to this many bytes;
# the oldest are then healed with a plain REMOVE.
MAX_TOMBSTONE_BYTES = 8 << 20
# The unsettled window is pruned at most this often (seconds): a pass is O(jobs in it).
PRUNE_INTERVAL = 1.0
# A pandad that has not said HELLO this long after its start does not report back.
HELLO_TIMEOUT = 10.0
# A back-channel line longer than this is malformed (an id field is bounded by the record).
MAX_REPORT_LINE = 1 << 20
# After a LOST, healing waits HOLD_FIRST seconds, doubled per heal round lost in a row.
HOLD_FIRST = 1.0
HOLD_MAX = 60.0

Report = Tuple[str, Union[None, int, bytes, str]]


def hold(failures: int) -> float:
    """Seconds healing waits after a LOST, when ``failures`` heal rounds were lost in a row."""
    return min(HOLD_MAX, HOLD_FIRST * 2.0 ** min(failures, 16))


def id_field(record: bytes) -> Optional[bytes]:
    """The record's second field (the quoted GlobalJobId), or None for a record without one."""
    start = record.find(b"\t") + 1
    if start <= 0:
        return None
    end = record.find(b"\t", start)
    if end < 0:
        end = len(record) - 1 if record.endswith(b"\n") else len(record)
    return record[start:end] or None


def parse_report(line: bytes) -> Report:
    """One back-channel line (without its newline) as (verb, argument); ValueError if bad."""
    verb, tab, rest = line.partition(b"\t")
    if verb == b"LOST" and tab and rest and b"\t" not in rest:
        return "LOST", rest
    if verb == b"SETTLED" and tab and rest.isdigit():
        return "SETTLED", int(rest)
    if verb == b"RESYNC" and not tab:
        return "RESYNC", None
    if verb == b"FATAL" and tab:
        return "FATAL", rest.decode("utf-8", "replace")
    if verb == b"HELLO" and tab and rest.isdigit():
        return "HELLO", int(rest)
    raise ValueError(f"not a back-channel report: {line[:60]!r}")


class LineSplitter:
    """Bytes read from the back channel → complete lines; a line over the bound is malformed."""

    def __init__(self, max_line: int = MAX_REPORT_LINE) -> None:
        self._tail = b""
        self._skipping = False
        self.max_line = max_line

    def feed(self, data: bytes) -> Tuple[List[bytes], int]:
        """(complete lines, how many over-long lines were skipped)."""
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        skipped = 0
        if self._skipping and lines:
            lines.pop(0)                 # the end of an over-long line
            self._skipping = False
        if len(self._tail) > self.max_line:
            self._tail = b""
            if not self._skipping:
                skipped += 1
            self._skipping = True
        return lines, skipped

    def reset(self) -> None:
        self._tail = b""
        self._skipping = False


class Healing:
    """The to-heal set, the unsettled window of the current pandad, and the pacing."""

    def __init__(self, rate: float = HEAL_RATE, max_in_flight_bytes: int = 131072,
                 max_tombstone_bytes: int = MAX_TOMBSTONE_BYTES) -> None:
        self.rate = rate
        self.max_in_flight_bytes = max_in_flight_bytes
        self.max_tombstone_bytes = max_tombstone_bytes
        # An ordered set: jobs are healed in the order they came into doubt.
        self.to_heal: Dict[bytes, None] = {}
        self.unsettled: Dict[bytes, int] = {}
        self.tombstones: Dict[bytes, bytes] = {}
        self.tombstone_bytes = 0
        self.healed = 0
        self._allowance = 0.0
        self._last_budget: Optional[float] = None
        self.last_prune = float("-inf")
        self.up = False              # a pandad is running: heal records would reach it
        self.hold_until = float("-inf")   # no healing before this (after a LOST)
        self.failures = 0            # heal rounds lost in a row
        self.round_end: Optional[int] = None   # sequence number of the open round's last record
        self._round_start = 0        # records written when ``budget`` last allowed healing
        self._new_pandad(0.0)

    def _new_pandad(self, now: float) -> None:
        self.written = 0             # records written whole into the current pandad's pipe
        self.written_bytes = 0
        self.settled = 0
        self.settled_bytes = 0
        self.reports = False         # the current pandad said HELLO
        self.tracking = True         # unsettled is kept (until a pandad proves it is mute)
        self.started_at = now
        # (records, bytes) written so far, one mark per batch, to turn SETTLED n into bytes.
        self._marks: Deque[Tuple[int, int]] = deque()
        self.unsettled.clear()
        self.round_end = None        # numbered in the old pandad's stream: cannot settle now

    # -- inputs ---------------------------------------------------------------------------

    def pandad_started(self, now: float) -> None:
        self._new_pandad(now)
        self.up = True

    def hello(self) -> None:
        self.reports = True

    def written_records(self, records: Sequence[bytes]) -> None:
        """Records that went whole into the pipe, in order."""
        seq = self.written
        if self.tracking:
            # The hot path of every record (~0.4 µs): one split is cheaper than id_field's
            # finds. Every record the plug-in writes has its id as the second field.
            unsettled = self.unsettled
            for record in records:
                seq += 1
                fields = record.split(b"\t", 2)
                if len(fields) == 3:
                    unsettled[fields[1]] = seq
                else:
                    job = id_field(record)
                    if job is not None:
                        unsettled[job] = seq
        else:
            seq += len(records)
        self.written = seq
        self.written_bytes += sum(map(len, records))
        self._marks.append((seq, self.written_bytes))

    def dropped_records(self, records: Iterable[bytes]) -> None:
        """Records the plug-in dropped (pipe full, pandad down, spill discarded)."""
        for record in records:
            job = id_field(record)
            if job is not None:
                self.to_heal[job] = None

    def lost(self, job: bytes, now: float) -> None:
        self.to_heal[job] = None
        if self.round_end is not None:
            self.round_end = None
            self.failures += 1
        self.hold_until = max(self.hold_until, now + hold(self.failures))

    def settled_to(self, n: int, now: float, spill_empty: bool = True) -> None:
        if n <= self.settled:
            return
        self.settled = min(n, self.written)
        if self.round_end is not None and self.settled >= self.round_end:
            self.round_end = None    # the round settled with no LOST: the monitor takes heals
            self.failures = 0
        marks = self._marks
        while marks and marks[0][0] <= self.settled:
            self.settled_bytes = marks.popleft()[1]
        if self.prune_due(now):
            self.prune(now, spill_empty)

    def prune_due(self, now: float) -> bool:
        return now - self.last_prune >= PRUNE_INTERVAL

    def prune(self, now: float, spill_empty: bool = True) -> None:
        """Forget settled jobs; a pandad that never said HELLO is not tracked any more."""
        self.last_prune = now
        if not self.reports and now - self.started_at >= HELLO_TIMEOUT:
            self.tracking = False
        if self.tracking:
            settled = self.settled
            if self.unsettled:
                self.unsettled = {job: seq for job, seq in self.unsettled.items() if seq > settled}
        else:
            self.unsettled.clear()
        if spill_empty and self.tombstones:
            # A job that left and whose records all settled without loss needs nothing more.
            for job in [job for job in self.tombstones
                        if job not in self.unsettled and job not in self.to_heal]:
                self.tombstone_bytes -= len(self.tombstones.pop(job))

    def resync(self, jobs: Iterable[bytes]) -> int:
        """Every job named (the queue, the announced ids) and every tombstone is to heal."""
        before = len(self.to_heal)
        for job in jobs:
            self.to_heal[job] = None
        for job in self.tombstones:
            self.to_heal[job] = None
        return len(self.to_heal) - before

    def pandad_gone(self, now: float) -> int:
        """pandad died or exited: what it held unsettled may be lost. Returns how many jobs."""
        settled = self.settled
        doubtful = [job for job, seq in self.unsettled.items() if seq > settled]
        if not self.tracking:
            doubtful = []
        for job in doubtful:
            self.to_heal[job] = None
        self._new_pandad(now)
        self.up = False
        return len(doubtful)

    # -- tombstones -----------------------------------------------------------------------

    def wants_tombstone(self, job: bytes, spill_empty: bool) -> bool:
        """A job is leaving the queue: is the monitor possibly wrong about its final state?"""
        return (not spill_empty) or job in self.to_heal or job in self.unsettled

    def keep_tombstone(self, job: bytes, add_record: bytes) -> None:
        old = self.tombstones.pop(job, None)
        if old is not None:
            self.tombstone_bytes -= len(old)
        self.tombstones[job] = add_record
        self.tombstone_bytes += len(add_record)
        while self.tombstone_bytes > self.max_tombstone_bytes and self.tombstones:
            oldest = next(iter(self.tombstones))
            self.tombstone_bytes -= len(self.tombstones.pop(oldest))

    def tombstone(self, job: bytes) -> Optional[bytes]:
        """The final ADD of a job that left while in doubt. It stays until the heal that
        carries it has settled (``prune``): that heal may be lost as well."""
        return self.tombstones.get(job)

    # -- pacing ---------------------------------------------------------------------------

    @property
    def in_flight_bytes(self) -> int:
        """Bytes written into the current pandad that it has not settled (an upper bound)."""
        return self.written_bytes - self.settled_bytes

    def budget(self, now: float, spill_empty: bool) -> Tuple[int, int]:
        """(jobs, bytes) that may be re-sent now; (0, 0) when healing must wait."""
        last, self._last_budget = self._last_budget, now
        rate = self.rate if self.reports else min(self.rate, BLIND_HEAL_RATE)
        elapsed = 0.0 if last is None else max(0.0, now - last)
        # At most one second's worth saved up: a burst after a pause is still paced.
        self._allowance = min(rate, self._allowance + elapsed * rate)
        if not self.to_heal or not spill_empty or not self.up or now < self.hold_until:
            return 0, 0
        room = self.max_in_flight_bytes
        if self.reports:
            room -= self.in_flight_bytes
        jobs = int(self._allowance)
        if jobs <= 0 or room <= 0:
            return 0, 0
        self._round_start = self.written
        return jobs, room

    def waiting_for(self, now: float, spill_empty: bool) -> str:
        """Why ``budget`` allows nothing now, for the log ("" when it would allow some)."""
        if not self.up:
            return "pandad is not running"
        if not spill_empty:
            return "the pipe to pandad is full"
        if now < self.hold_until:
            return (f"held {self.hold_until - now:.0f} s more after losses ({self.failures} "
                    "heal rounds lost in a row: the monitor may be away)")
        if self.reports and self.in_flight_bytes >= self.max_in_flight_bytes:
            return (f"pandad has not settled {self.in_flight_bytes} bytes it was sent "
                    f"(healing waits until it is below {self.max_in_flight_bytes})")
        return ""

    def pop(self) -> Optional[bytes]:
        """The next job to heal (the caller re-sends it and calls ``spent``)."""
        if not self.to_heal:
            return None
        job = next(iter(self.to_heal))
        del self.to_heal[job]
        return job

    def spent(self, jobs: int, records: int) -> None:
        """``jobs`` were re-sent in ``records`` records: the first ones written after
        ``budget`` (which allows healing only while the spill buffer is empty)."""
        self._allowance = max(0.0, self._allowance - jobs)
        self.healed += jobs
        if records and self.reports:
            self.round_end = self._round_start + records
