"""One panda_plugin per job queue log: an ``flock`` on ``<state file>.lock``, held for life.

Two plug-ins on the same log (condor_master and systemd both starting one) would send every
record twice.  The lock is on a file beside the state file, not on the state file itself,
because the state file is replaced by rename at every save and a lock on a replaced inode
guards nothing.  The lock file is created 0600 with O_NOFOLLOW, must be a regular file of
ours with one link, and holds the owner's pid (read only to name it in the refusal).  The
lock goes with the process (its descriptor is close-on-exec, so pandad does not inherit it);
a stale file left by a crash is simply locked again.
"""

import errno
import fcntl
import os
import stat
from typing import Optional

__all__ = ["LockHeld", "acquire_instance_lock", "lock_path"]

_PID_BYTES = 32


class LockHeld(Exception):
    """Another live process holds the lock; ``str(e)`` names it."""


def lock_path(state_file: str) -> str:
    return state_file + ".lock"


def acquire_instance_lock(state_file: str) -> int:
    """Lock ``<state_file>.lock`` for this process's life; returns the descriptor.

    Raises :class:`LockHeld` when another process holds it, ``OSError`` when the lock file
    cannot be used (the caller logs it: one instance is then not enforced).
    """
    path = lock_path(state_file)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(e.errno, "is a symlink (refused)", path) from None
        raise
    try:
        st = os.fstat(fd)
        problem = _unsafe(st)
        if problem:
            raise OSError(errno.EPERM, problem, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockHeld(f"another panda_plugin ({_holder(fd)}) already follows this log "
                           f"(it holds {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _unsafe(st: os.stat_result) -> Optional[str]:
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_nlink > 1:
        return "has other hard links"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by this user"
    return None


def _holder(fd: int) -> str:
    text = os.pread(fd, _PID_BYTES, 0).decode("ascii", "replace").strip()
    return f"pid {text}" if text.isdigit() else "pid unknown"
