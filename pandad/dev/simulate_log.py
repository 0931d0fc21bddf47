"""The simulated schedd's log writer: records in job_queue.log's format, and its ``FILE*``.

Pure formatting (old ClassAd literals, record lines, ad keys) and the stdio-like buffered file
the schedd writes through; ``pandad.dev.simulate`` decides what to write.
"""

import os
from typing import Callable, Optional, Tuple


# Records written in the order they are committed; each op tuple is one log record.
#   ("new", key, mytype, targettype) | ("set", key, name, value) | ("del", key, name)
#   | ("destroy", key)
Op = Tuple[str, ...]
JobId = Tuple[int, int]


def quote_old(text: str) -> str:
    """A string in old ClassAd syntax: only ``"`` is escaped, backslashes and tabs are literal.

    A string ending in a backslash therefore comes out as ``...\\"``, as the schedd writes it.
    """
    return '"' + text.replace('"', '\\"') + '"'


def real_old(value: float) -> str:
    """A real as the old unparser writes it: ``%.16G``, with ``.0`` when it looks integral."""
    text = "%.16G" % value
    if not any(c in text for c in ".EN"):
        text += ".0"
    return text


def attribute_order(name: str) -> Tuple[int, str]:
    """ClassAd iteration order since 23.3: name length, then case-insensitive name."""
    return (len(name), name.lower())


def cluster_key(cluster: int) -> str:
    return "0%d.-1" % cluster


def job_key(job: JobId) -> str:
    return "%d.%d" % job


def format_record(op: Op) -> bytes:
    kind = op[0]
    if kind == "new":
        return ("101 %s %s %s\n" % (op[1], op[2] or "(empty)", op[3] or "(empty)")).encode()
    if kind == "set":
        return ("103 %s %s %s\n" % (op[1], op[2], op[3])).encode()
    if kind == "del":
        return ("104 %s %s\n" % (op[1], op[2])).encode()
    if kind == "destroy":
        return ("102 %s\n" % op[1]).encode()
    raise ValueError("unknown op %r" % (kind,))


def parse_job_key(key: str) -> Optional[JobId]:
    """``C.P`` with P >= 0 as ints; None for the header, cluster, user and other keys."""
    cluster, _, proc = key.partition(".")
    if key.startswith("0") or not cluster.isdigit() or not proc.isdigit():
        return None
    return int(cluster), int(proc)


def unquote_simple(text: str) -> str:
    """The content of a quoted string without escapes (GlobalJobIds are plain)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


class StdioLog:
    """The schedd's fully buffered ``FILE*`` on job_queue.log.

    Data goes out in ``buffer_bytes`` chunks when the buffer fills (tearing lines and
    transactions at arbitrary bytes) and as a whole at ``flush()``.
    """

    def __init__(self, fd: int, buffer_bytes: int, on_write: Optional[Callable[[], None]]) -> None:
        self.fd = fd
        self._buffer_bytes = max(1, buffer_bytes)
        self._buffer = bytearray()
        self._on_write = on_write

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def append(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= self._buffer_bytes:
            self._write(bytes(self._buffer[:self._buffer_bytes]))
            del self._buffer[:self._buffer_bytes]

    def flush(self) -> None:
        if self._buffer:
            self._write(bytes(self._buffer))
            self._buffer.clear()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if self._on_write is not None:
            self._on_write()

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def open_new(path: str) -> int:
    """Create ``path`` afresh (0600, never through a symlink)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW
                   | getattr(os, "O_CLOEXEC", 0), 0o600)


def fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
