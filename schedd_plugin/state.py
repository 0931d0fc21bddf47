"""The plug-in's saved position in job_queue.log, so a restart resumes without re-sending.

The position is written at transaction boundaries by ``panda_plugin`` and read once at start.
The file is small JSON with a version field::

    {"format": "panda_plugin-position", "version": 1,
     "dev": 2049, "ino": 1234, "seq": 7, "birth": 1700000000, "offset": 4096}

Saving is atomic: a temporary file is created next to the final path (O_CREAT|O_EXCL|
O_NOFOLLOW, mode 0600), written, fsynced and renamed over the final path. rename() replaces a
symlink at the final path rather than following it, so a symlink planted there cannot redirect
the write. Loading never follows a symlink either; anything unusable (missing, symlink, not a
regular file, not our format, corrupt) is ``None`` with one log line, and the caller then replays
the whole log as the schedd's own startup would.
"""

import errno
import json
import logging
import os
import stat
from typing import Callable, NamedTuple, Optional, TypeVar

log = logging.getLogger("panda_plugin.state")

T = TypeVar("T")

FORMAT = "panda_plugin-position"
VERSION = 1
# A position file is a few dozen bytes; anything much larger is not ours.
MAX_STATE_BYTES = 4096


class Position(NamedTuple):
    """Where the follower stands: which file (dev, ino, first-line sequence, birth) and where in it."""

    dev: int
    ino: int
    seq: int
    birth: int
    offset: int


def encode_position(pos: Position) -> bytes:
    doc = {"format": FORMAT, "version": VERSION}
    doc.update(pos._asdict())
    return (json.dumps(doc, sort_keys=True) + "\n").encode("ascii")


def decode_document(data: bytes, form: str, version: int, what: str) -> dict:
    """A state file's JSON object of ``form`` and ``version``; raises ValueError with a
    one-line reason (``what``: "position file", "heal file")."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != form:
        raise ValueError(f"not a panda_plugin {what}")
    if doc.get("version") != version:
        raise ValueError(f"unsupported version {doc.get('version')!r}")
    return doc


def decode_position(data: bytes) -> Position:
    """Parse a position file's bytes; raises ValueError with a one-line reason."""
    doc = decode_document(data, FORMAT, VERSION, "position file")
    values = []
    for field in Position._fields:
        value = doc.get(field)
        # bool is an int subclass; a true/false here means the file is not ours.
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"field {field!r} is missing or not a non-negative integer")
        values.append(value)
    return Position(*values)


def save_position(path: str, pos: Position) -> None:
    """Atomically replace ``path`` with ``pos``; raises OSError on failure (the caller logs)."""
    write_atomically(path, encode_position(pos))


def write_atomically(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data``: a 0600 temporary file beside it, fsynced, renamed."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileExistsError:
        # A leftover of a crashed save by an earlier process with our pid: unlink removes the
        # name (a symlink itself, never its target), then create exclusively again.
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    # Makes the rename durable across a power cut; optional, so failure is not an error.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_small_file(path: str, limit: int, what: str) -> Optional[bytes]:
    """The bytes of a saved-state file, or None (with one log line) when it is unusable:
    missing, a symlink, not a regular file, larger than ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        log.info("no saved %s in %s", what, path)
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            log.warning("ignoring saved %s %s: it is a symlink", what, path)
        else:
            log.warning("ignoring saved %s %s: %s", what, path, e.strerror or e)
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            log.warning("ignoring saved %s %s: not a regular file", what, path)
            return None
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        log.warning("ignoring saved %s %s: %s", what, path, e.strerror or e)
        return None
    finally:
        os.close(fd)
    if len(data) > limit:
        log.warning("ignoring saved %s %s: larger than %d bytes", what, path, limit)
        return None
    return data


def load_document(path: str, max_bytes: int, what: str, label: str,
                  decode: Callable[[bytes], T]) -> Optional[T]:
    """``decode`` of a state file's bytes, or None (with one log line, "ignoring ``label``")
    when there is none usable."""
    data = read_small_file(path, max_bytes, what)
    if data is None:
        return None
    try:
        return decode(data)
    except ValueError as e:
        log.warning("ignoring %s %s: %s", label, path, e)
        return None


def load_position(path: str) -> Optional[Position]:
    """The saved position, or None (with one log line) when there is none usable."""
    return load_document(path, MAX_STATE_BYTES, "position", "saved position", decode_position)
