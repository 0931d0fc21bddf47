"""One batch of record lines → three ordered command sets, merged per job (pure).

The flusher sends at most one POST (adds), one PUT (updates) and one DELETE (removes) per
cycle, so every record of a job in the batch folds into one command:

- UPDATEs of a job ADDed in the same batch merge into the ADD (one POST carries it all);
- repeated UPDATEs merge, the last value wins;
- a REMOVE goes to the removes (repeated REMOVEs merge their pairs); an UPDATE arriving after
  the job's REMOVE merges into the REMOVE, since the job is gone;
- an ADD after a REMOVE of the same job supersedes the REMOVE (the job exists again), and an
  ADD after UPDATEs takes them in, so the send order POST → PUT → DELETE leaves the monitor
  in the state the records describe.

Attribute names are compared case-insensitively, as ClassAds do; the spelling of the last
record is kept. ``JobCommand.records`` counts the input records merged into a command, so when
the command is accepted, rejected or lost, exactly those records are counted.

``coalesce(lines, into=batch)`` merges new lines into a batch carried over from a failed cycle
(retries), with the same rules.

Speed: the checks ``wire.decode`` makes on every line are made once for the whole batch where
they can be (one ``\v`` per line, no NUL, valid UTF-8: ``_batch_texts``), and the usual record
(plain quoted ids, attribute names already seen in the batch) is split and merged without a
``decode`` call (``_parse_plain``). Any other line goes through ``decode``, so what is accepted
and what is bad, and why, is exactly ``decode``'s verdict (tests/test_coalesce_fast.py).
"""

from collections import Counter
from itertools import repeat
from typing import Dict, Iterable, List, Optional, Tuple

from pandad.wire import BadRecord, decode

# The verbs as the plain path sees them (the leading \v stays on) → index of the first name.
_FIRST_PAIR = {"\vUPDATE": 2, "\vADD": 3, "\vREMOVE": 2}
_VERB = {"UPDATE": "\vUPDATE", "ADD": "\vADD", "REMOVE": "\vREMOVE"}


class JobCommand:
    """One job's merged command within a batch."""

    __slots__ = ("job_id", "condor_id", "attrs", "records", "attempts")

    def __init__(self, job_id: str, condor_id: Optional[str] = None) -> None:
        self.job_id = job_id
        self.condor_id = condor_id
        # lower-case name → (name as sent, new-ClassAd value text)
        self.attrs: Dict[str, Tuple[str, str]] = {}
        self.records = 0
        # failed send attempts so far (the flusher's retry bookkeeping)
        self.attempts = 0

    def merge(self, attrs: Iterable[Tuple[str, str]], records: int = 1) -> None:
        mine = self.attrs
        for name, value in attrs:
            mine[name.lower()] = (name, value)
        self.records += records

    def absorb(self, other: "JobCommand") -> None:
        """Take in an earlier command of the same job (its values lose to ours)."""
        merged = dict(other.attrs)
        merged.update(self.attrs)
        self.attrs = merged
        self.records += other.records
        self.attempts = max(self.attempts, other.attempts)

    def attributes(self) -> Dict[str, str]:
        """{name as sent: value text}, the shape ``convert.job_object`` takes."""
        return dict(self.attrs.values())

    def __repr__(self) -> str:
        return (f"JobCommand({self.job_id!r}, condor_id={self.condor_id!r}, "
                f"attrs={len(self.attrs)}, records={self.records})")


class Batch:
    """The commands of one cycle: adds (POST), updates (PUT), removes (DELETE), by GlobalJobId."""

    __slots__ = ("adds", "updates", "removes", "bad", "bad_reasons")

    def __init__(self) -> None:
        self.adds: Dict[str, JobCommand] = {}
        self.updates: Dict[str, JobCommand] = {}
        self.removes: Dict[str, JobCommand] = {}
        self.bad = 0
        self.bad_reasons: Counter = Counter()

    @property
    def records(self) -> int:
        """Input records held by the commands (bad records not included)."""
        return sum(c.records for group in (self.adds, self.updates, self.removes)
                   for c in group.values())

    def __bool__(self) -> bool:
        return bool(self.adds or self.updates or self.removes)

    def __repr__(self) -> str:
        return (f"Batch(adds={len(self.adds)}, updates={len(self.updates)}, "
                f"removes={len(self.removes)}, bad={self.bad})")


def bad_reason(error: BadRecord) -> str:
    """A short, stable key for counting (``BadRecord.reason``, e.g. ``"second_vt"``)."""
    return getattr(error, "reason", None) or str(error).split(":", 1)[0][:80]


def _batch_texts(lines: List[bytes]) -> Optional[List[str]]:
    """The lines as text when the whole batch passes decode's line checks, else None.

    One VT per line, at its start (each newline is followed by one), no NUL, and
    valid UTF-8 all over: the same verdict as checking each line, in a few passes in C.
    """
    if not lines:
        return []
    blob = b"\n".join(lines)
    if (blob[:1] != b"\v" or blob.count(b"\n\v") != len(lines) - 1
            or blob.count(b"\v") != len(lines) or b"\0" in blob):
        return None
    try:
        texts = blob.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    return texts if len(texts) == len(lines) else None     # a line held a newline


def _parse_plain(text: str, names: Dict[str, str]) -> Optional[Tuple[List[str], str, int]]:
    """(fields, job id, index of the first name) of a plain record, else None (ask decode).

    Plain: ``_batch_texts`` checked the line; a known verb with a matching number of fields,
    quoted ids without escapes or inner quotes, and only attribute names ``decode`` accepted
    earlier in the batch (``names``, name → lower case).
    """
    fields = text.split("\t")
    first = _FIRST_PAIR.get(fields[0])
    count = len(fields)
    if first is None or count < first or (count - first) % 2:
        return None
    if count == 2 and first == 2 and fields[0] == "\vUPDATE":
        return None                                         # no attributes: decode's error
    job_id = fields[1][1:-1]
    if not job_id or fields[1][0] != '"' or fields[1][-1] != '"' or '"' in job_id \
            or "\\" in job_id:
        return None
    if first == 3:
        condor_id = fields[2][1:-1]
        if not condor_id or fields[2][0] != '"' or fields[2][-1] != '"' or '"' in condor_id \
                or "\\" in condor_id:
            return None
    for index in range(first, count, 2):
        if fields[index] not in names:
            return None
    return fields, job_id, first


def coalesce(lines: Iterable[bytes], into: Optional[Batch] = None) -> Batch:
    """Decode and merge ``lines`` (record lines without newline) into ``into`` or a new Batch.

    Bad records are counted in ``bad`` and ``bad_reasons``, never raised.
    """
    batch = Batch() if into is None else into
    adds = batch.adds
    updates = batch.updates
    removes = batch.removes
    lines = lines if isinstance(lines, list) else list(lines)
    texts = _batch_texts(lines)
    names: Dict[str, str] = {}          # attribute names decode accepted → lower case
    # Every (name, value) pair merged, once: the jobs of a burst share most of their values,
    # and a shared pair costs a reference instead of a tuple and two strings (memory: a
    # batch's commands take a few times its bytes, not ten).
    pairs: Dict[Tuple[str, str], Tuple[str, str]] = {}
    condor_id: Optional[str]
    for line, text in zip(lines, repeat(None) if texts is None else texts):
        plain = None if text is None else _parse_plain(text, names)
        if plain is not None:
            fields, job_id, first = plain
            verb = fields[0]
            condor_id = fields[2][1:-1] if first == 3 else None
        else:
            try:
                record = decode(line)
            except BadRecord as error:
                batch.bad += 1
                batch.bad_reasons[bad_reason(error)] += 1
                continue
            verb = _VERB[record.verb]
            job_id = record.job_id
            condor_id = record.condor_id
            fields = [item for pair in record.attrs for item in pair]
            first = 0
            for name in fields[0::2]:
                if name not in names:
                    names[name] = name.lower()
        # The hot loop: dict lookups and the merge inlined, no call per record.
        if verb == "\vUPDATE":
            # A job in removes was removed after any ADD of it (an ADD after a REMOVE
            # supersedes it), so the REMOVE is its latest state.
            # Most slices hold UPDATEs alone: one lookup then.
            if removes or adds:
                command = removes.get(job_id) or adds.get(job_id) or updates.get(job_id)
            else:
                command = updates.get(job_id)
            if command is None:
                command = updates[job_id] = JobCommand(job_id)
        elif verb == "\vADD":
            command = adds.get(job_id)
            if command is None:
                command = adds[job_id] = JobCommand(job_id, condor_id)
                earlier = updates.pop(job_id, None)
                if earlier is not None:
                    command.absorb(earlier)
                earlier = removes.pop(job_id, None)
                if earlier is not None:
                    command.absorb(earlier)
            elif condor_id:
                command.condor_id = condor_id
        else:  # REMOVE: decode admits only the three verbs
            command = removes.get(job_id)
            if command is None:
                command = removes[job_id] = JobCommand(job_id)
        merged = command.attrs
        for index in range(first, len(fields), 2):
            pair = (fields[index], fields[index + 1])
            merged[names[pair[0]]] = pairs.setdefault(pair, pair)
        command.records += 1
    return batch
