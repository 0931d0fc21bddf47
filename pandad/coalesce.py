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

A job whose only record in the batch is a plain UPDATE, the usual case, gets no
``JobCommand`` at first: ``Batch.update_entries`` holds that record's fields as a tuple
(``PlainUpdate``: verb, quoted id, name, value, ...), which the flusher converts as it is,
and ``command_of`` turns it into the ``JobCommand`` it stands for where one is needed (a
second record of the job, a failure, a rejection, ``Batch.commands_of_updates``). A tuple of strings
leaves the cyclic GC's books at its first collection, where a ``JobCommand`` and its dict of
tuples stay there until the slice is sent: with a thousand jobs a slice, the collector's
passes over them cost more than the merge itself.
"""

from collections import Counter
from itertools import repeat
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

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


# One plain UPDATE record's fields ("\vUPDATE", '"<job id>"', name, value, ...): the command
# of a job with no other record in the batch (module docstring).
PlainUpdate = Tuple[str, ...]
# What a Batch holds per job: a JobCommand, or in ``update_entries`` also a PlainUpdate.
Entry = Union[JobCommand, PlainUpdate]


def plain_job_id(entry: PlainUpdate) -> str:
    """The GlobalJobId of a PlainUpdate."""
    return entry[1][1:-1]


def plain_pairs(entry: PlainUpdate) -> Iterator[Tuple[str, str]]:
    """The (name, value text) pairs of a PlainUpdate, in record order."""
    return zip(entry[2::2], entry[3::2])


def command_of(entry: Entry) -> JobCommand:
    """The JobCommand an entry stands for (a PlainUpdate becomes a new one of one record)."""
    if type(entry) is not tuple:
        return entry                                        # type: ignore[return-value]
    command = JobCommand(plain_job_id(entry))               # type: ignore[arg-type]
    attrs = command.attrs
    for name, value in plain_pairs(entry):                  # type: ignore[arg-type]
        attrs[name.lower()] = (name, value)
    command.records = 1
    return command


def records_of(entries: Iterable[Entry]) -> int:
    """Input records held by ``entries`` (a PlainUpdate holds one)."""
    return sum(1 if type(entry) is tuple else entry.records   # type: ignore[union-attr]
               for entry in entries)


class Batch:
    """The commands of one cycle: adds (POST), updates (PUT), removes (DELETE), by GlobalJobId.

    ``update_entries`` are the updates as coalesce and the flusher keep them, a JobCommand or
    a PlainUpdate per job; ``commands_of_updates`` makes every entry a JobCommand.
    """

    __slots__ = ("adds", "update_entries", "removes", "bad", "bad_reasons")

    def __init__(self) -> None:
        self.adds: Dict[str, JobCommand] = {}
        self.update_entries: Dict[str, Entry] = {}
        self.removes: Dict[str, JobCommand] = {}
        self.bad = 0
        self.bad_reasons: Counter = Counter()

    def commands_of_updates(self) -> Dict[str, JobCommand]:
        """Turn every PlainUpdate of ``update_entries`` into its JobCommand, in place and in
        order, and return that dict: the update commands by GlobalJobId."""
        entries = self.update_entries
        for job_id, entry in list(entries.items()):
            if type(entry) is tuple:
                entries[job_id] = command_of(entry)
        return entries                                      # type: ignore[return-value]

    @property
    def records(self) -> int:
        """Input records held by the commands (bad records not included)."""
        return (records_of(self.adds.values()) + records_of(self.update_entries.values())
                + records_of(self.removes.values()))

    def __bool__(self) -> bool:
        return bool(self.adds or self.update_entries or self.removes)

    def __repr__(self) -> str:
        return (f"Batch(adds={len(self.adds)}, updates={len(self.update_entries)}, "
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


def _parse_plain(fields: List[str], names: Dict[str, str]) -> Optional[Tuple[str, int]]:
    """(job id, index of the first name) of a plain record, else None (ask decode).

    Plain: ``_batch_texts`` checked the line (``fields`` is it split at TABs); a known verb
    with a matching number of fields, quoted ids without escapes or inner quotes, and only
    attribute names ``decode`` accepted earlier in the batch (``names``, name → lower case).
    ``coalesce`` checks a plain UPDATE the same way, inline.
    """
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
    return (job_id, first) if _names_known(fields, first, names) else None


def _names_known(fields: List[str], first: int, names: Dict[str, str]) -> bool:
    """Whether every attribute name of ``fields`` from index ``first`` is in ``names``."""
    for index in range(first, len(fields), 2):
        if fields[index] not in names:
            return False
    return True


def coalesce(lines: Iterable[bytes], into: Optional[Batch] = None, *,
             fast: bool = True) -> Batch:
    """Decode and merge ``lines`` (record lines without newline) into ``into`` or a new Batch.

    Bad records are counted in ``bad`` and ``bad_reasons``, never raised. ``fast=False`` runs
    the readable reference (``decode`` on every line, then the merge rules), which the fast
    path must agree with exactly (tests/test_coalesce_fast.py compares the two).
    """
    batch = Batch() if into is None else into
    lines = lines if isinstance(lines, list) else list(lines)
    if fast:
        _coalesce_fast(lines, batch)
    else:
        _coalesce_reference(lines, batch)
    return batch


def _coalesce_reference(lines: List[bytes], batch: Batch) -> None:
    """The rules, plainly: each line decoded, its job's command found by ``_command_for``."""
    for line in lines:
        try:
            record = decode(line)
        except BadRecord as error:
            _count_bad(batch, error)
            continue
        command = _command_for(batch, _VERB[record.verb], record.job_id, record.condor_id)
        command.merge(record.attrs)


def _count_bad(batch: Batch, error: BadRecord) -> None:
    batch.bad += 1
    batch.bad_reasons[bad_reason(error)] += 1


def _command_for(batch: Batch, verb: str, job_id: str, condor_id: Optional[str]) -> JobCommand:
    """The command a record of ``verb`` merges into: the merge rules of the module docstring."""
    adds, updates, removes = batch.adds, batch.update_entries, batch.removes
    if verb == "\vUPDATE":
        # A job in removes was removed after any ADD of it (an ADD after a REMOVE supersedes
        # it), so the REMOVE is its latest state.
        entry = removes.get(job_id) or adds.get(job_id) or updates.get(job_id)
        if entry is None:
            updates[job_id] = command = JobCommand(job_id)
        elif type(entry) is tuple:
            updates[job_id] = command = command_of(entry)
        else:
            command = entry                                 # type: ignore[assignment]
        return command
    if verb == "\vADD":
        command = adds.get(job_id)                          # type: ignore[assignment]
        if command is None:
            adds[job_id] = command = JobCommand(job_id, condor_id)
            earlier = updates.pop(job_id, None)
            if earlier is not None:
                command.absorb(command_of(earlier))
            removed = removes.pop(job_id, None)
            if removed is not None:
                command.absorb(removed)
        elif condor_id:
            command.condor_id = condor_id
        return command
    command = removes.get(job_id)                           # type: ignore[assignment]
    if command is None:                                     # REMOVE: decode admits three verbs
        removes[job_id] = command = JobCommand(job_id)
    return command


class _Names:
    """The attribute names ``decode`` accepted in this batch, name → lower case.

    ``spellings``: whether two of them differ in case alone. A record may then hold both: its
    JobCommand merges them into one attribute where its fields would convert to two keys, so
    no record is kept as a PlainUpdate from then on.
    """

    __slots__ = ("lower", "lowers", "spellings")

    def __init__(self) -> None:
        self.lower: Dict[str, str] = {}
        self.lowers: Set[str] = set()
        self.spellings = False

    def learn(self, fields: List[str]) -> None:
        for name in fields[0::2]:
            if name not in self.lower:
                lower = self.lower[name] = name.lower()
                if lower in self.lowers:
                    self.spellings = True
                self.lowers.add(lower)


def _decoded(line: bytes, batch: Batch,
             seen: _Names) -> Optional[Tuple[str, str, Optional[str], List[str]]]:
    """(verb, job id, condor id, flat name/value fields) by ``decode``, or None if bad
    (counted); the names it accepts become known to the fast path."""
    try:
        record = decode(line)
    except BadRecord as error:
        _count_bad(batch, error)
        return None
    fields = [item for pair in record.attrs for item in pair]
    seen.learn(fields)
    return _VERB[record.verb], record.job_id, record.condor_id, fields


def _coalesce_fast(lines: List[bytes], batch: Batch) -> None:
    """``_coalesce_reference``'s result, with the usual record split and merged without a
    ``decode`` call (module docstring, "Speed")."""
    adds, updates, removes = batch.adds, batch.update_entries, batch.removes
    seen = _Names()
    names = seen.lower
    # Every (name, value) pair merged, once: the jobs of a burst share most of their values,
    # and a shared pair costs a reference instead of a tuple and two strings (memory: a
    # batch's commands take a few times its bytes, not ten).
    pairs: Dict[Tuple[str, str], Tuple[str, str]] = {}
    texts = _batch_texts(lines)
    for line, text in zip(lines, repeat(None) if texts is None else texts):
        plain = None
        if text is not None:
            fields = text.split("\t")
            if fields[0] == "\vUPDATE":
                # The usual record, checked inline as _parse_plain checks one: quoted id,
                # pairs, known names. Anything else about an UPDATE is for decode to judge.
                count = len(fields)
                ident = fields[1] if count > 3 and not count & 1 else ""
                job_id = ident[1:-1]
                if (job_id and ident[0] == '"' and ident[-1] == '"' and '"' not in job_id
                        and "\\" not in job_id):
                    # One or two attributes, the usual UPDATEs, without a loop: setting one
                    # up costs more than the lookups.
                    if count == 6:
                        known = fields[2] in names and fields[4] in names
                    elif count == 4:
                        known = fields[2] in names
                    else:
                        known = _names_known(fields, 2, names)
                    if known:
                        if (not seen.spellings and job_id not in updates
                                and job_id not in adds and job_id not in removes):
                            updates[job_id] = tuple(fields)     # a PlainUpdate
                            continue
                        plain = (job_id, 2)
            else:
                plain = _parse_plain(fields, names)
        if plain is not None:
            job_id, first = plain
            verb = fields[0]
            condor_id = fields[2][1:-1] if first == 3 else None
        else:
            decoded = _decoded(line, batch, seen)
            if decoded is None:
                continue
            verb, job_id, condor_id, fields = decoded
            first = 0
        command = _command_for(batch, verb, job_id, condor_id)
        merged = command.attrs
        for index in range(first, len(fields), 2):
            pair = (fields[index], fields[index + 1])
            merged[names[pair[0]]] = pairs.setdefault(pair, pair)
        command.records += 1
