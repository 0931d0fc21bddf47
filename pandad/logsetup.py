"""HTCondor-style logging for both programs (``pandad`` and ``panda_plugin``).

Lines look like HTCondor daemon logs (``MM/DD/YY HH:MM:SS message``). The file (``PANDAD_LOG``
/ ``PANDA_PLUGIN_LOG``) is rotated at ``MAX_*_LOG`` bytes to ``<path>.old``, one backup, as
HTCondor does. With no file configured, or under systemd (which captures stderr into the
journal), lines go to stderr. ``D_FULLDEBUG`` in the debug knob turns on per-record detail.

The log file is created mode 0600, not HTCondor's habitual 0644: it names jobs and owners
and may quote monitor responses, and root (who reads daemon logs) can read it anyway.
It is opened with O_NOFOLLOW, so a symlink planted at its path is refused.
"""

import logging
import logging.handlers
import os
import re
import sys
from typing import Mapping, Optional
from urllib.parse import urlsplit

__all__ = ["setup_logging", "redact_url", "HTCondorFileHandler", "LOG_FORMAT", "DATE_FORMAT"]

LOG_FORMAT = "%(asctime)s %(message)s"
DATE_FORMAT = "%m/%d/%y %H:%M:%S"
_LOG_MODE = 0o600
_OUR_HANDLER = "_pandad_logsetup"  # marks handlers this module installed


class HTCondorFileHandler(logging.handlers.RotatingFileHandler):
    """Rotates ``path`` to ``path.old`` (one backup) at ``max_bytes``; never follows a
    symlink; creates the file 0600."""

    def __init__(self, path: str, max_bytes: int) -> None:
        super().__init__(path, mode="a", maxBytes=max(0, max_bytes), backupCount=1,
                         encoding="utf-8")

    def _open(self):  # type: ignore[override]
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, _LOG_MODE)
        # backslashreplace: a log line never fails over a stray surrogate from bad input.
        return os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace")

    def doRollover(self) -> None:
        if self.stream:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        try:
            os.replace(self.baseFilename, self.baseFilename + ".old")
        except FileNotFoundError:
            pass  # someone removed it; start a new one
        self.stream = self._open()


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
            problem = f"cannot open log file {path} ({error.strerror or error}); logging to stderr"
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
