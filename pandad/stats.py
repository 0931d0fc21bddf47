"""The one statistics object per process, how it is rendered, and the statistics log file.

Shared by pandad and panda_plugin.

``Statistics`` accepts any name, so pandad and the plug-in share it. ``STATISTICS`` lists
pandad's own figures, with their meanings, in the order ``render`` writes them; the docs
are generated from it. It starts with the figures HTCondor's C++ pandad reported, under
readable names, so an admin used to the old log finds them first.
"""

import os
import re
import threading
import time
from typing import (Callable, Dict, Mapping, Optional, Protocol, Tuple, Union,
                    runtime_checkable)

from pandad.logsetup import open_append

__all__ = ["Counters", "Statistics", "STATISTICS", "DYNAMIC_PREFIXES", "OUTCOMES", "render",
           "StatisticsLog", "counter", "unaccounted", "drained"]

Number = float  # counters are ints, gauges may be floats
# A snapshot (numbers) or what ``read_statistics`` read back (text).
Figures = Mapping[str, Union[Number, str]]

# Every record pandad reads ends in exactly one of these (docs/design.md §4.7).
OUTCOMES: Tuple[str, ...] = (
    "records_sent", "records_rejected", "records_lost_transport", "records_lost_endpoint",
    "records_dropped_queue_full", "records_bad", "records_discarded_shutdown")


@runtime_checkable
class Counters(Protocol):
    """What a part that counts needs of the statistics object (``Statistics`` is one)."""

    def add(self, name: str, n: int = 1) -> None:
        ...

    def set(self, name: str, value: Number) -> None:
        ...


class Statistics:
    """Thread-safe named counters (``add``) and gauges (``set``). Unknown names read as 0."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[str, Number] = {}
        self._generation = 0

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        if not n:
            return
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n
            self._generation += 1

    def set(self, name: str, value: Number) -> None:
        """Set gauge ``name`` to ``value``."""
        with self._lock:
            if self._values.get(name) != value:
                self._values[name] = value
                self._generation += 1

    def get(self, name: str) -> Number:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> Dict[str, Number]:
        """A consistent copy of every value."""
        with self._lock:
            return dict(self._values)

    @property
    def generation(self) -> int:
        """Grows with every change; lets a writer skip a block when nothing happened."""
        with self._lock:
            return self._generation


def counter(values: Figures, name: str) -> int:
    """A counter's value from a ``snapshot`` (numbers) or ``read_statistics`` (text); 0 when
    absent or not a number."""
    try:
        return int(float(values.get(name, 0)))
    except (TypeError, ValueError):
        return 0


def unaccounted(values: Figures) -> Optional[str]:
    """None when every record read ended in exactly one of ``OUTCOMES``, else the sum that
    does not add up."""
    ends = {name: counter(values, name) for name in OUTCOMES}
    read = counter(values, "records_read")
    if read != sum(ends.values()):
        parts = " + ".join(f"{name} {value}" for name, value in ends.items())
        return f"records_read {read} != {parts}"
    return None


def drained(values: Figures) -> bool:
    """pandad holds nothing: every record read is accounted for, nothing buffered or pending."""
    return (unaccounted(values) is None and counter(values, "queue_bytes") == 0
            and counter(values, "records_pending_retry") == 0)


def _percent(numerator: str, denominator: str) -> Callable[[Mapping[str, Number]], str]:
    def figure(snapshot: Mapping[str, Number]) -> str:
        total = snapshot.get(denominator, 0)
        if not total:
            return "n/a"
        return "%.2f" % (100.0 * snapshot.get(numerator, 0) / total)
    return figure


def _alias(name: str) -> Callable[[Mapping[str, Number]], str]:
    return lambda snapshot: _format(snapshot.get(name, 0))


# The C++ daemon's figures, computed from ours.
_DERIVED: Dict[str, Callable[[Mapping[str, Number]], str]] = {
    "queue full count": _alias("records_dropped_queue_full"),
    "enqueue calls": _alias("records_read"),
    "queue success %": _percent("records_queued", "records_read"),
    "bad commands": _alias("records_bad"),
    "commands sent": _alias("commands_sent"),
    "command success %": _percent("commands_accepted", "commands_sent"),
    "transport failures": _alias("transport_failures"),
    "bad response codes": _alias("bad_response_codes"),
    "requests made": _alias("requests_made"),
    "request success %": _percent("requests_succeeded", "requests_made"),
}

# (name, meaning), in render order.
STATISTICS: Tuple[Tuple[str, str], ...] = (
    ("queue full count", "records dropped because the buffer was full (= records_dropped_queue_full)"),
    ("enqueue calls", "records read from the plug-in (= records_read)"),
    ("queue success %", "share of records read that were buffered"),
    ("bad commands", "records that could not be parsed (= records_bad)"),
    ("commands sent", "job commands sent to the monitor (= commands_sent)"),
    ("command success %", "share of job commands sent that the monitor accepted"),
    ("transport failures", "requests that got no HTTP answer (= transport_failures)"),
    ("bad response codes", "requests answered with a non-2xx status (= bad_response_codes)"),
    ("requests made", "HTTP requests made to the monitor (= requests_made)"),
    ("request success %", "share of requests answered with a 2xx status"),
    ("records_read", "records read from the plug-in (each an enqueue call)"),
    ("records_queued", "records accepted into the buffer"),
    ("records_dropped_queue_full", "records dropped: buffer full after its grace period, or at its ceiling"),
    ("records_bad", "records dropped: too long, torn, or not a valid record (by reason: records_bad_<reason>)"),
    ("records_sent", "records whose command the monitor accepted"),
    ("records_rejected", "records whose command the monitor rejected (400, 409, 422, 413), after isolation and upsert"),
    ("records_lost_transport", "records whose command was lost: no answer, or 408/429/5xx after any retries"),
    ("records_lost_endpoint", "records lost to an answer about the endpoint: 3xx, 401, 403, 404, 405, 407, 413 for a small body ... (by reason: records_lost_endpoint_<reason>)"),
    ("records_discarded_shutdown", "records still buffered or unsent when the shutdown grace ran out"),
    ("records_pending_retry", "records held for a retry in the next cycle"),
    ("commands_sent", "job commands (one per job per batch and verb) sent"),
    ("commands_accepted", "job commands the monitor accepted"),
    ("upserts_sent", "rejected commands re-sent with the other verb (POST<->PUT)"),
    ("upserts_accepted", "upserts the monitor accepted"),
    ("requests_made", "HTTP requests made"),
    ("requests_succeeded", "HTTP requests answered with a 2xx status"),
    ("transport_failures", "HTTP requests that failed without an answer (refused, timeout, reset, TLS)"),
    ("bad_response_codes", "HTTP requests answered with a non-2xx status (by code: responses_<code>)"),
    ("retries", "requests retried after a transport failure, 408, 429 or 5xx"),
    ("batches", "flush cycles that sent something"),
    ("queue_bytes", "bytes in the buffer now"),
    ("queue_peak_bytes", "most bytes the buffer has held"),
    ("oldest_entry_age_s", "age in seconds of the oldest buffered record"),
    ("last_success_time", "when the monitor last accepted a request"),
)

# Families of counters created at run time, rendered after the table, sorted.
DYNAMIC_PREFIXES: Tuple[str, ...] = ("responses_", "records_bad_", "records_lost_endpoint_")

_TIME_GAUGES = frozenset({"last_success_time"})


def _format(value: object) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return "%.3f" % value
    return str(value)


def _format_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def render(snapshot: Mapping[str, Number], now: float) -> str:
    """One block of ``[YYYY-MM-DD HH:MM:SS] name: value`` lines (local time), newline-ended.

    The known figures come first, in ``STATISTICS`` order (missing ones as 0), then the
    per-code and per-reason counters, then any other name (the plug-in's own), sorted.
    """
    stamp = "[" + _format_time(now) + "] "
    lines = []
    known = set()
    for name, _meaning in STATISTICS:
        known.add(name)
        derived = _DERIVED.get(name)
        if derived is not None:
            value = derived(snapshot)
        elif name in _TIME_GAUGES:
            epoch = snapshot.get(name, 0)
            value = _format_time(epoch) if epoch else "never"
        else:
            value = _format(snapshot.get(name, 0))
        lines.append(f"{stamp}{name}: {value}")
    extra = sorted(name for name in snapshot if name not in known)
    dynamic = [name for name in extra if name.startswith(DYNAMIC_PREFIXES)]
    others = [name for name in extra if not name.startswith(DYNAMIC_PREFIXES)]
    for name in dynamic + others:
        lines.append(f"{stamp}{name}: {_format(snapshot[name])}")
    return "\n".join(lines) + "\n"


# One line of a block ``render`` wrote: "[YYYY-MM-DD HH:MM:SS] name: value".
_STATISTICS_LINE = re.compile(r"^\[[0-9: -]+\] ([^:]+): (.*)$")


def parse_statistics(text: str) -> Dict[str, str]:
    """The latest value of every figure in a statistics log's text ({} when there is none):
    the reading side of ``render``, for tools and tests."""
    values: Dict[str, str] = {}
    for line in text.splitlines():
        match = _STATISTICS_LINE.match(line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def read_statistics(path: str) -> Dict[str, str]:
    """``parse_statistics`` of the file at ``path`` ({} when it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            return parse_statistics(f.read().decode("utf-8", "replace"))
    except FileNotFoundError:
        return {}


class StatisticsLog:
    """Append-only statistics file, opened by ``logsetup.open_append`` (0600; no symlink, hard
    link, foreign or non-regular file). Reopened when the path's file is replaced (an admin
    rotated it). Errors are OSError with a message naming the path and the reason."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self._identity: Optional[Tuple[int, int]] = None
        self._open()

    def _open(self) -> None:
        fd = open_append(self.path, "statistics log")
        info = os.fstat(fd)
        self._fd = fd
        self._identity = (info.st_dev, info.st_ino)

    def _replaced(self) -> bool:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return True
        return (info.st_dev, info.st_ino) != self._identity

    def write(self, text: str) -> None:
        """Append ``text`` (one rendered block) in one write."""
        if self._fd is None or self._replaced():
            self.close()
            self._open()
        assert self._fd is not None
        data = text.encode("utf-8")
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "StatisticsLog":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
