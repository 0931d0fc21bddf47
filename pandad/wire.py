"""The record format between the schedd plug-in and pandad (docs/design.md §3), both directions.

Shared by pandad and panda_plugin.

One record per line, fields separated by TAB, each record starting with VT::

    \\vADD\\t"<GlobalJobId>"\\t"<cluster>.<proc>"[\\t<Attr>\\t<value>]*\\n
    \\vUPDATE\\t"<GlobalJobId>"\\t<Attr>\\t<value>[\\t<Attr>\\t<value>]*\\n
    \\vREMOVE\\t"<GlobalJobId>"[\\t<Attr>\\t<value>]*\\n

Quoted fields are new-syntax ClassAd string literals (``pandad.classad.quote``); values are
new-syntax ClassAd expression text, ``null`` for a deleted attribute. This is the C++
plug-in's format, so either side can be swapped for HTCondor's.

Framing (``RecordSplitter``, run by pandad's reader thread) is separate from parsing
(``decode``, run by the flusher), so the reader keeps up with the pipe at memory speed.
"""

import re
from typing import Iterable, List, NamedTuple, Optional, Tuple

from pandad.classad import quote, unquote

__all__ = [
    "VERBS", "BadRecord", "Record", "encode_add", "encode_update", "encode_update_from",
    "update_prefix", "encode_remove", "decode",
    "RecordSplitter", "REASON_TOO_LONG", "REASON_UNTERMINATED",
]

VERBS = ("ADD", "UPDATE", "REMOVE")

# Short reason keys (BadRecord.reason). pandad counts bad records per reason as
# statistics "records_bad_<reason>", so these are stable names.
REASON_NO_VT = "no_leading_vt"
REASON_SECOND_VT = "second_vt"
REASON_NUL = "nul_byte"
REASON_UTF8 = "invalid_utf8"
REASON_VERB = "unknown_verb"
REASON_JOB_ID = "bad_job_id"
REASON_CONDOR_ID = "bad_condor_id"
REASON_NO_ATTRIBUTES = "no_attributes"
REASON_ODD_FIELDS = "odd_fields"
REASON_ATTRIBUTE_NAME = "bad_attribute_name"
REASON_TOO_LONG = "too_long"          # counted by RecordSplitter, never reaches decode
REASON_UNTERMINATED = "unterminated"  # a tail without newline at EOF (RecordSplitter.finish)

_ATTRIBUTE_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME_RE = re.compile(_ATTRIBUTE_NAME + r"\Z")
# All names of a record at once ("\t".join(names)): one regex call instead of one per pair.
_NAMES_RE = re.compile(r"(?:%s)(?:\t%s)*\Z" % (_ATTRIBUTE_NAME, _ATTRIBUTE_NAME))
# A value may hold anything but what frames records (and NUL, which decode refuses).
_VALUE_FORBIDDEN_RE = re.compile(r"[\t\v\r\n\x00]")


class BadRecord(ValueError):
    """A record that cannot be used.

    ``str(e)`` is one line, "<fixed phrase>: <detail>"; ``e.reason`` is a stable identifier
    (``REASON_*``, e.g. ``"second_vt"``) meant for per-reason counters
    (``records_bad_<reason>``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Record(NamedTuple):
    verb: str                              # "ADD" | "UPDATE" | "REMOVE"
    job_id: str                            # GlobalJobId, unquoted
    condor_id: Optional[str]               # "cluster.proc" on ADD only
    attrs: Tuple[Tuple[str, str], ...]     # (name, new-ClassAd value text)


def _snippet(data: object, limit: int = 40) -> str:
    """repr() of the start of a field: one line, bounded, safe for any bytes."""
    text = repr(data)
    return text if len(text) <= limit else text[:limit] + "..."


def _encode_pairs(attrs: Iterable[Tuple[str, str]]) -> List[str]:
    # The hot path of every record. For ASCII text, str.isidentifier() is exactly _NAME_RE,
    # and a printable value holds no framing character (the regex decides for the others).
    # Anything odd, str subclasses included, goes through _checked_pairs for the precise error.
    pairs = attrs if isinstance(attrs, (list, tuple)) else list(attrs)
    fields: List[str] = []
    append = fields.append
    for name, value in pairs:
        if not (name.__class__ is str and value.__class__ is str and name.isidentifier()
                and name.isascii()
                and (value.isprintable() or _VALUE_FORBIDDEN_RE.search(value) is None)):
            return _checked_pairs(pairs)
        append(name)
        append(value)
    return fields


def _checked_pairs(attrs: Iterable[Tuple[str, str]]) -> List[str]:
    """The fields of ``attrs``, checked pair by pair: ValueError names the first bad one."""
    fields = []
    for name, value in attrs:
        if not isinstance(name, str) or _NAME_RE.match(name) is None:
            raise ValueError(f"not a ClassAd attribute name: {_snippet(name)}")
        if not isinstance(value, str):
            raise ValueError(f"value of {name} is not a str: {_snippet(value)}")
        if _VALUE_FORBIDDEN_RE.search(value) is not None:
            raise ValueError(
                f"value of {name} holds a TAB, VT, CR, LF or NUL (rewrite it with"
                f" classad.old_to_new first): {_snippet(value)}")
        fields.append(name)
        fields.append(value)
    return fields


def _quote_id(what: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty str, not {_snippet(value)}")
    return quote(value)


def _encode(fields: List[str]) -> bytes:
    return ("\v" + "\t".join(fields) + "\n").encode("utf-8")


def encode_add(job_id: str, condor_id: str, attrs: Iterable[Tuple[str, str]] = ()) -> bytes:
    """``\\vADD`` record for a new job, optionally with all its attributes."""
    return _encode(["ADD", _quote_id("job id", job_id), _quote_id("condor id", condor_id)]
                   + _encode_pairs(attrs))


def encode_update(job_id: str, attrs: Iterable[Tuple[str, str]]) -> bytes:
    """``\\vUPDATE`` record; at least one attribute (a deleted one has the value ``null``)."""
    pairs = _encode_pairs(attrs)
    if not pairs:
        raise ValueError("an UPDATE needs at least one attribute")
    return (update_prefix(job_id) + "\t".join(pairs) + "\n").encode("utf-8")


def update_prefix(job_id: str) -> str:
    """How every UPDATE record of ``job_id`` starts, for ``encode_update_from``."""
    return "\vUPDATE\t" + _quote_id("job id", job_id) + "\t"


def encode_update_from(prefix: str, attrs: Iterable[Tuple[str, str]]) -> bytes:
    """``encode_update`` for the job whose ``update_prefix`` is ``prefix``.

    A writer that sends many UPDATEs of the same jobs keeps their prefixes, and so quotes and
    checks each job id once rather than once a record.
    """
    if attrs.__class__ is list and len(attrs) == 1:
        # The usual live change: one plain attribute (what _encode_pairs checks, inline).
        name, value = attrs[0]
        if (name.__class__ is str and value.__class__ is str and name.isidentifier()
                and name.isascii() and value.isprintable()):
            return (prefix + name + "\t" + value + "\n").encode("utf-8")
    pairs = _encode_pairs(attrs)
    if not pairs:
        raise ValueError("an UPDATE needs at least one attribute")
    return (prefix + "\t".join(pairs) + "\n").encode("utf-8")


def encode_remove(job_id: str, attrs: Iterable[Tuple[str, str]] = ()) -> bytes:
    """``\\vREMOVE`` record for a job that left the queue."""
    return _encode(["REMOVE", _quote_id("job id", job_id)] + _encode_pairs(attrs))


def _unquote_field(field: str) -> Optional[str]:
    # Fast path: a literal with no escapes and no inner quote, the usual GlobalJobId.
    if len(field) >= 2 and field[0] == '"' and field[-1] == '"':
        body = field[1:-1]
        if "\\" not in body and '"' not in body:
            return body
    return unquote(field)


def decode(line: bytes) -> Record:
    """Parse one record (``line`` without its ``b"\\n"``). Raises BadRecord."""
    if line[:1] != b"\v":
        raise BadRecord(REASON_NO_VT, f"record does not start with \\v: {_snippet(line)}")
    if line.find(b"\v", 1) >= 0:
        raise BadRecord(REASON_SECOND_VT, f"record holds a second \\v (torn write?): "
                                          f"{_snippet(line)}")
    if line.find(b"\0") >= 0:
        raise BadRecord(REASON_NUL, f"record holds a NUL byte: {_snippet(line)}")
    try:
        text = line[1:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRecord(REASON_UTF8, f"invalid UTF-8: byte {error.start + 1} of "
                                     f"{_snippet(line)}") from None
    fields = text.split("\t")
    verb = fields[0]
    if verb == "UPDATE":
        first_pair = 2
    elif verb == "ADD":
        first_pair = 3
    elif verb == "REMOVE":
        first_pair = 2
    else:
        raise BadRecord(REASON_VERB, f"unknown verb: {_snippet(verb)}")
    if len(fields) < 2:
        raise BadRecord(REASON_JOB_ID, f"missing job id: {verb} record")
    job_id = _unquote_field(fields[1])
    if not job_id:
        raise BadRecord(REASON_JOB_ID, f"bad job id: {verb} record, not a non-empty "
                                       f"quoted string {_snippet(fields[1])}")
    condor_id = None
    if verb == "ADD":
        if len(fields) < 3:
            raise BadRecord(REASON_CONDOR_ID, f"missing condor id: ADD record for {_snippet(job_id)}")
        condor_id = _unquote_field(fields[2])
        if not condor_id:
            raise BadRecord(REASON_CONDOR_ID, f"bad condor id: ADD record for {_snippet(job_id)}, not a "
                                              f"non-empty quoted string {_snippet(fields[2])}")
    pairs = fields[first_pair:]
    if len(pairs) % 2:
        raise BadRecord(REASON_ODD_FIELDS, f"odd number of attribute fields: {len(pairs)} in "
                                           f"{verb} record for {_snippet(job_id)}")
    if not pairs:
        if verb == "UPDATE":
            raise BadRecord(REASON_NO_ATTRIBUTES, f"UPDATE without attributes: record for "
                                                  f"{_snippet(job_id)}")
        return Record(verb, job_id, condor_id, ())
    names = pairs[0::2]
    if _NAMES_RE.match("\t".join(names)) is None:
        bad = next((name for name in names if _NAME_RE.match(name) is None), "")
        raise BadRecord(REASON_ATTRIBUTE_NAME, f"invalid attribute name: {_snippet(bad)} in "
                                               f"{verb} record for {_snippet(job_id)}")
    return Record(verb, job_id, condor_id, tuple(zip(names, pairs[1::2])))


class RecordSplitter:
    """Stream of bytes → complete lines (without ``b"\\n"``), with bounded memory.

    A line longer than ``max_record_bytes`` is discarded and counted as ONE bad record when
    its newline arrives (or at ``finish``), however long it runs: the pending tail never
    holds more than ``max_record_bytes``. Everything else about a line is ``decode``'s job.
    """

    def __init__(self, max_record_bytes: int) -> None:
        if max_record_bytes < 1:
            raise ValueError(f"max_record_bytes must be positive, not {max_record_bytes}")
        self.max_record_bytes = max_record_bytes
        self._tail = b""
        self._discarding = False  # inside an over-long line, waiting for its newline

    @property
    def pending_bytes(self) -> int:
        """Bytes held for an unfinished line."""
        return len(self._tail)

    def feed(self, chunk: bytes) -> Tuple[List[bytes], int]:
        """Add ``chunk``; return (complete lines, number of over-long lines discarded)."""
        bad = 0
        if self._discarding:
            newline = chunk.find(b"\n")
            if newline < 0:
                return [], 0
            chunk = chunk[newline + 1:]
            self._discarding = False
            bad = 1
        lines = chunk.split(b"\n")
        if self._tail:
            # Only the unfinished line is joined, not the whole chunk copied behind it.
            lines[0] = self._tail + lines[0]
        tail = lines.pop()
        limit = self.max_record_bytes
        if len(tail) > limit:
            self._tail = b""
            self._discarding = True
        else:
            self._tail = tail
        # max(map(len)) runs in C; the filter below runs only when a line is too long.
        if lines and max(map(len, lines)) > limit:
            kept = [line for line in lines if len(line) <= limit]
            bad += len(lines) - len(kept)
            lines = kept
        return lines, bad

    def finish(self) -> int:
        """At EOF: 1 if an unterminated line (over-long or torn) was pending, else 0."""
        bad = 1 if (self._discarding or self._tail) else 0
        self._tail = b""
        self._discarding = False
        return bad
