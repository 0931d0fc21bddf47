"""A real pandad against monitors having a bad day: it keeps going, counts, stays bounded."""

import time
from typing import Callable, Iterator

import pytest

from pandad.dev.devmonitor import DevMonitor
from pandad.wire import encode_add, encode_update
from tests.support import wait_until
from tests.support.faultserver import (CloseMidResponseServer, HangServer, RefusedPort,
                                       StatusServer, TrickleServer)
from tests.support.pandad_process import PandadProcess, assert_accounted


def job_id(i: int) -> str:
    return f"schedd.example.org#{i}.0#1700000000"


def records(start: int = 0) -> Iterator[bytes]:
    """An endless stream of jobs: an ADD with a few hundred bytes of attributes each."""
    i = start
    while True:
        yield encode_add(job_id(i), f"{i}.0", [("Owner", '"alice"'), ("JobStatus", "1"),
                                               ("Args", '"' + "a" * 300 + '"')])
        i += 1


def feed_until(pandad: PandadProcess, condition: Callable[[], bool], timeout: float,
               per_write: int = 200) -> int:
    """Keep writing records until ``condition()`` holds; the number written."""
    stream = records()
    written = 0
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached while feeding pandad"
        assert pandad.proc.poll() is None, "pandad exited"
        pandad.write(*(next(stream) for _ in range(per_write)))
        written += per_write
    return written


FAULTS = {
    "refused": (RefusedPort, "transport_failures"),
    "hang": (HangServer, "transport_failures"),
    "trickle": (lambda: TrickleServer(interval=0.1), "transport_failures"),
    "status-500": (lambda: StatusServer(500), "responses_500"),
    "close-mid-status": (lambda: CloseMidResponseServer("status"), "transport_failures"),
    "close-mid-body": (lambda: CloseMidResponseServer("body"), "transport_failures"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_pandad_keeps_going_and_counts_each_failure(tmp_path, fault):
    make_server, counter = FAULTS[fault]
    with make_server() as server, PandadProcess(
            tmp_path, url=server.url, PANDA_UPDATE_TIMEOUT="0.5", PANDA_RETRY_LIMIT="0",
            PANDA_SHUTDOWN_GRACE="1", PANDA_QUEUE_SIZE="200000",
            PANDA_QUEUE_MAX_SIZE="400000") as pandad:
        feed_until(pandad, lambda: pandad.counter(counter) >= 3, timeout=30)
        pandad.close_stdin()
        started = time.monotonic()
        assert pandad.wait(15) == 0
        # The whole-request deadline: shutdown is bounded by the grace, not by the server.
        assert time.monotonic() - started < 5
        stats = pandad.statistics()
    assert int(stats["records_lost_transport"]) > 0
    assert int(stats["requests_succeeded"]) == 0
    assert_accounted(stats)
    assert "lost" in pandad.log_text()


def test_memory_stays_bounded_while_the_monitor_hangs(tmp_path):
    with HangServer() as server, PandadProcess(
            tmp_path, url=server.url, PANDA_UPDATE_TIMEOUT="0", PANDA_QUEUE_SIZE="1000000",
            PANDA_QUEUE_GRACE="0", PANDA_QUEUE_MAX_SIZE="2000000",
            PANDA_SHUTDOWN_GRACE="1") as pandad:
        # The first cycle hangs for ever (timeout 0): everything after it fills the buffer.
        feed_until(pandad, lambda: pandad.counter("records_dropped_queue_full") > 0, 30)
        baseline = pandad.rss_kib()
        stream = records(10_000_000)
        for _ in range(100):                       # ~40 MB more input
            pandad.write(*(next(stream) for _ in range(1000)))
        wait_until(lambda: pandad.counter("records_dropped_queue_full") > 90_000, 20,
                   message="the drops to be counted")
        grown = pandad.rss_kib() - baseline
        assert grown < 20_000, f"VmRSS grew by {grown} KiB"
        pandad.close_stdin()
        assert pandad.wait(15) == 0
        stats = pandad.statistics()
    assert int(stats["queue_peak_bytes"]) <= 2_000_000
    assert int(stats["records_discarded_shutdown"]) > 0
    assert_accounted(stats)
    log = pandad.log_text()
    assert "dropping" in log and "PANDA_SHUTDOWN_GRACE" in log


def test_one_unknown_job_in_a_bulk_put_heals(tmp_path):
    """400 for one unknown id in a 1000-job PUT: the others land, the unknown is created."""
    with DevMonitor() as monitor, PandadProcess(
            tmp_path, url=monitor.url, PANDA_FLUSH_INTERVAL="0.5") as pandad:
        pandad.write(*(encode_add(job_id(i), f"{i}.0", [("JobStatus", "1")])
                       for i in range(999)))
        wait_until(lambda: len(monitor.jobs()) == 999, 20, message="999 jobs")
        unknown = "schedd.example.org#5555.3#1700000000"
        pandad.write(*(encode_update(job_id(i), [("JobStatus", "2")]) for i in range(500)),
                     encode_update(unknown, [("JobStatus", "2")]),
                     *(encode_update(job_id(i), [("JobStatus", "2")]) for i in range(500, 999)))

        def all_running() -> bool:
            jobs = monitor.jobs()
            return (len(jobs) == 1000 and
                    all(job.get("JobStatus") == 2 for job in jobs.values()))

        wait_until(all_running, 20, message="999 updates and the unknown job created")
        assert monitor.jobs()[unknown]["condorid"] == "5555.3"
        pandad.close_stdin()
        assert pandad.wait(10) == 0
        stats = pandad.statistics()
    assert monitor.request_counts().get("PUT 400", 0) >= 1
    assert int(stats["upserts_accepted"]) == 1
    assert int(stats["records_rejected"]) == 0
    assert int(stats["records_sent"]) == 999 * 2 + 1
    assert_accounted(stats)


def test_retry_carries_commands_over_until_the_monitor_answers(tmp_path):
    with StatusServer(503) as busy, DevMonitor() as monitor, PandadProcess(
            tmp_path, url=busy.url, PANDA_RETRY_LIMIT="20") as pandad:
        pandad.write(*(encode_add(job_id(i), f"{i}.0", [("JobStatus", "1")])
                       for i in range(10)))
        wait_until(lambda: pandad.counter("records_pending_retry") == 10, 10,
                   message="records waiting for a retry")
        # The monitor comes back at another address (SIGHUP applies PANDA_URL).
        pandad.write_config(PANDA_URL=monitor.url)
        pandad.send_signal(1)
        wait_until(lambda: len(monitor.jobs()) == 10, 30, message="the retried jobs")
        pandad.close_stdin()
        assert pandad.wait(10) == 0
        stats = pandad.statistics()
    assert int(stats["retries"]) >= 1
    assert int(stats["records_sent"]) == 10
    assert_accounted(stats)
