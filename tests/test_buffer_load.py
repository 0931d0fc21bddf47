"""A real pandad at default queue knobs: a steady stream is delivered whole, a stall still drops.

The grace rule itself is tested with a fake clock in test_buffer.py; these check it holds in the
real process, with the real flusher's cycles and a real HTTP sink on 127.0.0.1.
"""

import time

from tests.bench.sink import Sink
from tests.support import wait_until
from tests.support.faultserver import HangServer
from tests.support.pandad_process import PandadProcess, assert_accounted

# The queue and cycle knobs at their defaults (FAST_KNOBS shortens the flush interval).
DEFAULTS = {"PANDA_FLUSH_INTERVAL": "1", "PANDA_QUEUE_SIZE": "131072",
            "PANDA_QUEUE_GRACE": "3", "PANDA_QUEUE_MAX_SIZE": "0"}
SCHEDD = b"bench.example.org"


def update_record(i: int) -> bytes:
    """A 100-byte UPDATE of job ``i``: every record a distinct job."""
    head = b'\vUPDATE\t"%s#%d.0#1767225600"\tJobStatus\t2\tImageSize\t%d' % (SCHEDD, i, i)
    return head.ljust(99, b" ") + b"\n"


def feed_steadily(pandad: PandadProcess, rate: int, seconds: float, first: int = 0) -> int:
    """Write ``rate`` records a second for ``seconds``, in 10 ms portions on a fixed schedule."""
    written = first
    start = time.monotonic()
    total = int(rate * seconds)
    while written - first < total:
        due = min(total, int(rate * (time.monotonic() - start))) + first
        if due > written:
            pandad.write(*(update_record(i) for i in range(written, due)))
            written = due
        time.sleep(0.01)
    return written - first


def test_steady_stream_at_default_knobs_is_delivered_with_nothing_dropped(tmp_path):
    with Sink() as sink, PandadProcess(tmp_path, url=sink.url, **DEFAULTS) as pandad:
        written = feed_steadily(pandad, rate=20_000, seconds=5)
        pandad.close_stdin()
        assert pandad.wait(60) == 0
        stats = pandad.statistics()
        delivered = sink.objects
    assert int(stats["records_dropped_queue_full"]) == 0
    assert int(stats["records_sent"]) == written == delivered == 100_000
    # A second's stream is ~2 MB: the buffer was far over PANDA_QUEUE_SIZE between cycles,
    # for longer than the grace in all, and the grace held because the flusher kept taking.
    assert int(stats["queue_peak_bytes"]) > 4 * 131072
    assert_accounted(stats)


def test_stalled_monitor_still_drops_after_the_grace_with_memory_bounded(tmp_path):
    with HangServer() as server, PandadProcess(
            tmp_path, url=server.url, PANDA_UPDATE_TIMEOUT="0", PANDA_SHUTDOWN_GRACE="1",
            **DEFAULTS) as pandad:
        # The first request hangs for ever: the flusher takes nothing more after it.
        started = time.monotonic()
        written = feed_steadily(pandad, rate=5_000, seconds=6)
        wait_until(lambda: pandad.counter("records_dropped_queue_full") > 0, 10,
                   message="drops after the grace")
        stats = pandad.statistics()
        # Nothing was dropped before the window ran out: at least ~3 s of the stream is held.
        held = int(stats["records_read"]) - int(stats["records_dropped_queue_full"])
        assert held >= 5_000 * 2.5, held
        assert int(stats["queue_peak_bytes"]) <= 16 * 1024 * 1024
        assert time.monotonic() - started >= 3
        pandad.close_stdin()
        assert pandad.wait(15) == 0
        stats = pandad.statistics()
    assert int(stats["records_read"]) == written
    assert int(stats["records_dropped_queue_full"]) > 0
    assert_accounted(stats)
