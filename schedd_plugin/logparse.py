"""One line of the schedd's job_queue.log → a :class:`LogOp` (pure, no I/O).

The grammar is HTCondor's (``docs/job-queue-log.md`` §1): the decimal op code, one
space, the body.  Op codes are 101–107 only:

==== ================ =================================== ==================================
op   name             body                                LogOp fields
==== ================ =================================== ==================================
101  NewClassAd       ``key mytype [targettype]``         key, extra=(mytype, targettype)
102  DestroyClassAd   ``key``                             key
103  SetAttribute     ``key name value…``                 key, name, value (verbatim)
104  DeleteAttribute  ``key name``                        key, name
105  BeginTransaction (empty)                             key=""
106  EndTransaction   (empty) or ``#comment``             key="", extra=(comment,) if any
107  HistoricalSeq    ``seq CreationTimestamp epoch``     key="", extra=(seq, label, epoch)
==== ================ =================================== ==================================

``(empty)`` in a 101 means ``""``.  ``105``/``106`` are accepted with or without the
trailing space the schedd writes.  The 103 value is everything after the single separator
that ends the attribute name, kept verbatim (old ClassAd syntax: raw tabs, runs of spaces,
literal backslashes); it is never empty.

Text decoding: keys, names, types and the 107 fields must be valid UTF-8 (in practice
ASCII); the 103 value is decoded as UTF-8 with ``surrogateescape``, so any byte a ClassAd
string may hold round-trips exactly through the mirror and rotation diffs compare the true
bytes.  Whoever turns a value into JSON-bound text (``schedd_plugin.callbacks``) replaces
the escaped bytes by U+FFFD there.

Anything else (a NUL byte, an unknown op, a missing or extra field, invalid UTF-8 outside
the value) raises :class:`CorruptLine` with a one-line reason; nothing here ever raises
anything else for any input bytes.  A reason quotes at most the line's first
:data:`PREVIEW_CHARS` printable ASCII characters and gives its length.
"""

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

__all__ = ["LogOp", "CorruptLine", "parse_line", "parse_lines",
           "NEW_CLASSAD", "DESTROY_CLASSAD", "SET_ATTRIBUTE", "DELETE_ATTRIBUTE",
           "BEGIN_TRANSACTION", "END_TRANSACTION", "HISTORICAL_SEQUENCE"]

NEW_CLASSAD = 101
DESTROY_CLASSAD = 102
SET_ATTRIBUTE = 103
DELETE_ATTRIBUTE = 104
BEGIN_TRANSACTION = 105
END_TRANSACTION = 106
HISTORICAL_SEQUENCE = 107

_EMPTY_TYPE = "(empty)"
# How much of a corrupt line an error message quotes (see _preview).
PREVIEW_CHARS = 32
_OP_CODES = {str(op).encode("ascii"): op for op in range(NEW_CLASSAD, HISTORICAL_SEQUENCE + 1)}
# A whitespace character ends a token in HTCondor's LogRecord::readword.
_BLANKS = b" \t"


class LogOp(NamedTuple):
    op: int
    key: str
    name: Optional[str]
    value: Optional[str]
    extra: Tuple[str, ...]


class CorruptLine(ValueError):
    """A line that is not a valid job_queue.log record; ``str(e)`` is a one-line reason."""


_BEGIN = LogOp(BEGIN_TRANSACTION, "", None, None, ())
_END = LogOp(END_TRANSACTION, "", None, None, ())

# tuple.__new__ skips the NamedTuple's Python-level __new__: this is the hot path of
# every log line, and the field order is fixed above.
_new_op = tuple.__new__


def _text(token: bytes, what: str) -> str:
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptLine(f"invalid UTF-8 in {what}") from None


def _value(token: bytes) -> str:
    # Fast path: almost every value is ASCII/UTF-8.
    try:
        return token.decode("utf-8")
    except UnicodeDecodeError:
        return token.decode("utf-8", "surrogateescape")


def _tokens(line: bytes, count: int) -> Tuple[List[bytes], bytes]:
    """HTCondor's readword, ``count`` times: (words, rest after the one separator).

    The slow path, for lines that are not separated by single spaces (tabs, runs of
    blanks).  ``rest`` is ``b""`` when the line ended.
    """
    words: List[bytes] = []
    i, n = 0, len(line)
    for _ in range(count):
        while i < n and line[i] in _BLANKS:
            i += 1
        start = i
        while i < n and line[i] not in _BLANKS:
            i += 1
        if start == i:
            break
        words.append(line[start:i])
        i += 1  # the single whitespace character that ended the word is consumed
    return words, line[i:] if i < n else b""


def _corrupt_fields(op: int, line: bytes) -> CorruptLine:
    return CorruptLine(f"op {op}: missing or extra fields in {_preview(line)}")


def _preview(line: bytes) -> str:
    """The line's first printable ASCII characters, at most :data:`PREVIEW_CHARS`.

    A corrupt "log" may be any file (a symlink to a secret one): the rest of the line, and
    everything from its first unprintable byte on, is never shown, only its length.
    """
    shown = b""
    for i, byte in enumerate(line[:PREVIEW_CHARS]):
        if not 32 <= byte < 127:
            shown = line[:i]
            break
    else:
        shown = line[:PREVIEW_CHARS]
    text = repr(shown.decode("ascii"))
    if len(shown) < len(line):
        text += f"... ({len(line)} bytes)"
    return text


def parse_line(line: bytes) -> LogOp:
    """Parse one record; ``line`` is without its ``b"\\n"`` (one trailing ``\\r`` is dropped)."""
    if line[-1:] == b"\r":
        line = line[:-1]
    # Integer membership tests (0 = NUL, 9 = TAB) are several times faster than
    # ``b"\0" in line`` on CPython, and this runs for every line of the log.
    if 0 in line:
        raise CorruptLine("NUL byte in line")
    parts = line.split(b" ", 3)
    op = _OP_CODES.get(parts[0])
    if op is None:
        # An unknown op, or a tab-separated or otherwise odd line: tokenise like HTCondor.
        return _parse_slow(line)

    if op == SET_ATTRIBUTE:
        if len(parts) == 4:
            key, name, value = parts[1], parts[2], parts[3]
            # A value starting with a blank (a run of separators) takes the slow path,
            # which also rejects a blank value.
            if (key and name and value and value[0] != 32 and value[0] != 9
                    and 9 not in key and 9 not in name):
                try:
                    return _new_op(LogOp, (op, key.decode("utf-8"), name.decode("utf-8"),
                                           _value(value), ()))
                except UnicodeDecodeError:
                    raise CorruptLine("invalid UTF-8 in key or attribute name") from None
        return _parse_slow(line)

    if op == BEGIN_TRANSACTION or op == END_TRANSACTION:
        return _transaction_mark(op, line)
    return _parse_other(op, parts, line)


def _transaction_mark(op: int, line: bytes) -> LogOp:
    """parse_line for a 105 or 106 (``"105 "`` is what the schedd writes)."""
    rest = line[3:]
    if rest == b" " or not rest:
        return _BEGIN if op == BEGIN_TRANSACTION else _END
    body = rest.strip(_BLANKS)
    if not body:
        return _new_op(LogOp, (op, "", None, None, ()))
    if op == END_TRANSACTION and body[:1] == b"#" and rest[:1] == b" ":
        # The comment (SCHEDD_JOB_QUEUE_TIMESTAMPS) is kept for logging only.
        return _new_op(LogOp, (op, "", None, None, (_value(body[1:].strip(_BLANKS)),)))
    raise CorruptLine(f"op {op} takes no body: {_preview(line)}")


def _parse_other(op: int, parts: List[bytes], line: bytes) -> LogOp:
    """parse_line's fast path for a 101 or 104 split by single spaces; the rest goes slow."""
    nparts = len(parts)
    if op == NEW_CLASSAD and (nparts == 4 or nparts == 3):
        key, mytype = parts[1], parts[2]
        targettype = parts[3] if nparts == 4 else b"(empty)"
        if key and mytype and targettype and 9 not in line and 32 not in targettype:
            try:
                mytype_text = "" if mytype == b"(empty)" else mytype.decode("utf-8")
                targettype_text = "" if targettype == b"(empty)" else targettype.decode("utf-8")
                return _new_op(LogOp, (op, key.decode("utf-8"), None, None,
                                       (mytype_text, targettype_text)))
            except UnicodeDecodeError:
                raise CorruptLine("invalid UTF-8 in key or ad type") from None
    elif op == DELETE_ATTRIBUTE and nparts == 3:
        key, name = parts[1], parts[2]
        if key and name and 9 not in line:
            try:
                return _new_op(LogOp, (op, key.decode("utf-8"), name.decode("utf-8"), None, ()))
            except UnicodeDecodeError:
                raise CorruptLine("invalid UTF-8 in key or attribute name") from None

    return _parse_slow(line)


def _parse_slow(line: bytes) -> LogOp:
    """Every op, tokenised exactly like HTCondor's reader (any blank separates words)."""
    words, body = _tokens(line, 1)
    if not words or words[0] not in _OP_CODES:
        if words and words[0].isdigit():
            raise CorruptLine(f"unknown op code {words[0][:20].decode('ascii')}")
        raise CorruptLine(f"not an op code: {_preview(line)}")
    op = _OP_CODES[words[0]]

    if op == SET_ATTRIBUTE:
        words, value = _tokens(body, 2)
        if len(words) != 2 or not value.strip(_BLANKS):
            raise CorruptLine(f"op 103: missing key, name or value in {_preview(line)}")
        return _new_op(LogOp, (op, _text(words[0], "key"), _text(words[1], "attribute name"),
                               _value(value), ()))

    if op == BEGIN_TRANSACTION or op == END_TRANSACTION:
        stripped = body.strip(_BLANKS)
        if not stripped:
            return _new_op(LogOp, (op, "", None, None, ()))
        if op == END_TRANSACTION and stripped[:1] == b"#":
            return _new_op(LogOp, (op, "", None, None, (_value(stripped[1:].strip(_BLANKS)),)))
        raise CorruptLine(f"op {op} takes no body: {_preview(line)}")

    words, rest = _tokens(body, 4)
    if rest.strip(_BLANKS):
        raise _corrupt_fields(op, line)
    n = len(words)
    if op == NEW_CLASSAD:
        if n not in (2, 3):
            raise _corrupt_fields(op, line)
        mytype = _text(words[1], "mytype")
        targettype = _text(words[2], "targettype") if n == 3 else ""
        return _new_op(LogOp, (op, _text(words[0], "key"), None, None,
                               ("" if mytype == _EMPTY_TYPE else mytype,
                                "" if targettype == _EMPTY_TYPE else targettype)))
    if op == DESTROY_CLASSAD:
        if n != 1:
            raise _corrupt_fields(op, line)
        return _new_op(LogOp, (op, _text(words[0], "key"), None, None, ()))
    if op == DELETE_ATTRIBUTE:
        if n != 2:
            raise _corrupt_fields(op, line)
        return _new_op(LogOp, (op, _text(words[0], "key"), _text(words[1], "attribute name"),
                               None, ()))
    if op == HISTORICAL_SEQUENCE:
        if n != 3 or not words[0].isdigit() or not words[2].isdigit():
            raise CorruptLine(f"op 107: expected 'seq CreationTimestamp epoch' in {_preview(line)}")
        return _new_op(LogOp, (op, "", None, None,
                               (words[0].decode("ascii"), _text(words[1], "label"),
                                words[2].decode("ascii"))))
    raise CorruptLine(f"unknown op code {op}")


def parse_lines(lines: Sequence[Union[bytes, str, object]], fast: bool = True,
                share: Optional[Callable[[str], str]] = None) -> Tuple[List[LogOp], List[int]]:
    """``(ops, corrupt)``: the ops of the lines that parse, and the indices of those that do
    not (:class:`CorruptLine` from :func:`parse_line`; anything neither bytes nor str, such
    as a ``tailscan.Skipped``, is corrupt too).

    ``lines`` are all bytes, or all str of a plain-ASCII chunk (no NUL, no CR).  With
    ``fast`` (the default) the common records of str lines are parsed by
    :func:`_parse_ascii_lines`, the fast twin of :func:`parse_line` with the same results;
    without it every line goes through :func:`parse_line` (the reference).  ``share`` maps an
    attribute name to the one string kept for it (``Mirror.name``), so that ops held for a
    transaction do not each hold a copy.
    """
    if fast and lines and type(lines[0]) is str:
        return _parse_ascii_lines(lines, share)  # type: ignore[arg-type]
    ops: List[LogOp] = []
    corrupt: List[int] = []
    append = ops.append
    for index, line in enumerate(lines):
        if type(line) is str:
            line = line.encode("ascii")  # type: ignore[union-attr]
        elif not isinstance(line, bytes):
            corrupt.append(index)
            continue
        try:
            append(parse_line(line))
        except CorruptLine:
            corrupt.append(index)
    return ops, corrupt


def _parse_ascii_lines(lines: Sequence[str], share: Optional[Callable[[str], str]]
                       ) -> Tuple[List[LogOp], List[int]]:
    """:func:`parse_lines`' fast path (plain-ASCII str lines): the common records inline, with
    :func:`parse_line`'s checks and results; the rest through parse_line (its reference)."""
    ops: List[LogOp] = []
    corrupt: List[int] = []
    append = ops.append
    # One test for the whole chunk instead of one per key and name (a tab is rare).
    tabs = "\t" in "".join(lines)
    last_key = ""
    names: Dict[str, str] = {}      # share's answers, one dict lookup each after the first
    names_get = names.get
    for index, line in enumerate(lines):
        head = line[:4]
        if head == "103 ":
            # SetAttribute, most of the log: "103 key name value", single spaces, no tab in
            # key or name, a value that is not empty and does not start with a blank
            # (value[:1] is "" for an empty one, and "" is in any string).
            try:
                _, key, name, value = line.split(" ", 3)
            except ValueError:  # fewer than four words: parse_line says why
                key = name = value = ""
            if (key and name and value[:1] not in " \t"
                    and (not tabs or "\t" not in key and "\t" not in name)):
                # A proc's ops share its key string (they come one after another).
                if key == last_key:
                    key = last_key
                last_key = key
                if share is not None:
                    shared = names_get(name)
                    if shared is None:
                        shared = names[name] = share(name)
                    name = shared
                append((SET_ATTRIBUTE, key, name, value, ()))  # type: ignore[arg-type]
                continue
        elif line == "106 ":
            append(_END)
            continue
        elif line == "105 ":
            append(_BEGIN)
            continue
        elif head == "104 ":
            # "104 key name", exactly two single-space separated words, no tab.
            parts = line.split(" ")
            if len(parts) == 3 and parts[1] and parts[2] and (not tabs or "\t" not in line):
                append((DELETE_ATTRIBUTE, parts[1], parts[2], None, ()))  # type: ignore[arg-type]
                continue
        elif head == "102 ":
            # "102 key" (parse_line takes its slow path for these: same result).
            parts = line.split(" ")
            if len(parts) == 2 and parts[1] and (not tabs or "\t" not in line):
                append((DESTROY_CLASSAD, parts[1], None, None, ()))  # type: ignore[arg-type]
                continue
        try:
            append(parse_line(line.encode("ascii")))
        except CorruptLine:
            corrupt.append(index)
    return ops, corrupt
