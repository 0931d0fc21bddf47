"""HTCondor-style logging for both programs (``pandad`` and ``panda_plugin``).

Shared by pandad and panda_plugin.

Lines look like HTCondor daemon logs (``MM/DD/YY HH:MM:SS message``). The file (``PANDAD_LOG``
/ ``PANDA_PLUGIN_LOG``) is rotated at ``MAX_*_LOG`` bytes to ``<path>.old``, one backup, as
HTCondor does. With no file configured, or under systemd (which captures stderr into the
journal), lines go to stderr. ``D_FULLDEBUG`` in the debug knob turns on per-record detail.

The log file is created mode 0600, not HTCondor's habitual 0644: it names jobs and owners
and may quote monitor responses, and root (who reads daemon logs) can read it anyway.
``open_append`` opens it, and the statistics log, refusing what a local user could have
planted at the path in a world-writable directory: a symlink, a hard link to another file,
a file owned by someone else, a FIFO or anything else that is not a regular file. A refused
log file means logging to stderr, with one line that says why.
"""

import errno
import logging
import logging.handlers
import os
import re
import stat
import sys
from typing import Mapping, Optional
from urllib.parse import urlsplit

__all__ = ["setup_logging", "redact_url", "HTCondorFileHandler", "LOG_FORMAT", "DATE_FORMAT",
           "open_append"]

LOG_FORMAT = "%(asctime)s %(message)s"
DATE_FORMAT = "%m/%d/%y %H:%M:%S"
_LOG_MODE = 0o600
_OUR_HANDLER = "_pandad_logsetup"  # marks handlers this module installed


# O_NONBLOCK: a FIFO planted at the path must not hang the open (cleared once checked).
_OPEN_FLAGS = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
               | os.O_NONBLOCK)


def _refusal(path: str, what: str, info: os.stat_result) -> Optional[str]:
    """Why the file open at ``path`` must not be written to (None: it may be)."""
    if not stat.S_ISREG(info.st_mode):
        return f"{what} {path} is not a regular file"
    if info.st_uid != os.geteuid():
        return (f"{what} {path} is owned by uid {info.st_uid}, not by this user "
                f"(uid {os.geteuid()})")
    if info.st_nlink > 1:
        # Someone else's file linked in: appending would write into it.
        return f"{what} {path} has {info.st_nlink} hard links"
    return None


def open_append(path: str, what: str) -> int:
    """A file descriptor appending to ``path``, created 0600 if missing.

    Raises OSError whose message names ``what`` (e.g. "statistics log"), the path and the
    reason when the path is a symlink, not a regular file, owned by another user (root
    included: root must not write into a user's file) or hard-linked elsewhere.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS, _LOG_MODE)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{what} {path} is a symbolic link; refusing to "
                                       "follow it") from None
        try:        # a FIFO without a reader (ENXIO), a directory (EISDIR): say what it is
            if not stat.S_ISREG(os.lstat(path).st_mode):
                raise OSError(error.errno, f"{what} {path} is not a regular file; refusing "
                                           "to write to it") from None
        except FileNotFoundError:
            pass
        raise OSError(error.errno, f"cannot open {what} {path}: {error.strerror}") from None
    try:
        reason = _refusal(path, what, os.fstat(fd))
        if reason:
            raise OSError(errno.EPERM, f"{reason}; refusing to write to it")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class HTCondorFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates ``path`` to ``path.old`` (one backup) at ``max_bytes``; opens it with
    ``open_append``. If the file opened after a rotation is refused, it logs to stderr."""

    def __init__(self, path: str, max_bytes: int) -> None:
        super().__init__(path, mode="a", maxBytes=max(0, max_bytes), backupCount=1,
                         encoding="utf-8")

    def _open(self):  # type: ignore[override]
        fd = open_append(self.baseFilename, "log file")
        # backslashreplace: a log line never fails over a stray surrogate from bad input.
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")

    def doRollover(self) -> None:
        if self.stream:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        try:
            # rename() replaces a symlink or hard link planted at .old; it never writes
            # through it.
            os.replace(self.baseFilename, self.baseFilename + ".old")
        except FileNotFoundError:
            pass  # someone removed it; start a new one
        except OSError as error:
            self._to_stderr(f"cannot rotate log file {self.baseFilename} to .old "
                            f"({error.strerror or error})")
            return
        try:
            self.stream = self._open()
        except OSError as error:
            self._to_stderr(error.strerror or str(error))

    def _to_stderr(self, problem: str) -> None:
        """Go on on a copy of stderr, without rotating, after one line saying why."""
        self.maxBytes = 0
        self.stream = os.fdopen(os.dup(2), "a", encoding="utf-8", errors="backslashreplace")
        line = logging.makeLogRecord({"msg": f"{problem}; logging to stderr",
                                      "levelno": logging.ERROR, "levelname": "ERROR"})
        self.stream.write(self.format(line) + "\n")
        self.stream.flush()


def _under_systemd(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("JOURNAL_STREAM") or environ.get("INVOCATION_ID"))


def _debug_level(debug: str) -> int:
    flags = set(re.split(r"[\s,|:]+", (debug or "").upper()))
    return logging.DEBUG if flags & {"D_FULLDEBUG", "D_ALL"} else logging.INFO


def setup_logging(name: str, path: Optional[str], max_bytes: int, debug: str,
                  environ: Optional[Mapping[str, str]] = None) -> logging.Logger:
    """Configure and return logger ``name``; calling it again (SIGHUP) replaces its handlers.

    If the log file cannot be opened, lines go to stderr, and the first says why: logging
    must never be the reason a daemon dies.
    """
    env = os.environ if environ is None else environ
    logger = logging.getLogger(name)
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    problem = None
    handler: logging.Handler
    if path and not _under_systemd(env):
        try:
            handler = HTCondorFileHandler(path, max_bytes)
        except OSError as error:
            problem = f"{error.strerror or error}; logging to stderr"
            handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _OUR_HANDLER, True)
    old = [h for h in logger.handlers if getattr(h, _OUR_HANDLER, False)]
    logger.addHandler(handler)
    for previous in old:
        logger.removeHandler(previous)
        previous.close()
    logger.setLevel(_debug_level(debug))
    logger.propagate = False
    if problem:
        logger.warning(problem)
    return logger


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (``https://u:***@host/...``)."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = ""
    if "@" not in netloc:
        return url
    userinfo, _, hostport = netloc.rpartition("@")
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return url.replace(netloc, f"{user}:***@{hostport}", 1)


# A URL inside free text, such as a ConfigError that quotes the offending line or value.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def redact_urls(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)
