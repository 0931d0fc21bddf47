"""schedd_plugin.pipe: whole records or nothing, a bounded spill buffer, exact drop counts,
restart with backoff, EOF on close. Real child processes and real pipes throughout."""

import fcntl
import logging
import os
import random
import signal
import sys
import time

import pytest

from pandad.stats import Statistics
from schedd_plugin.backchannel import PipeTracker
from schedd_plugin.pandadchild import F_GETPIPE_SZ
from schedd_plugin.pipe import BATCH_BYTES, PandadPipe
from tests.support import COPY_STDIN_CHILD, FakeClock, wait_until

# Exits with status 3 after reading one line.
ONE_LINE_CHILD = "import sys; sys.stdin.buffer.readline(); sys.exit(3)"


def record(i: int, size: int) -> bytes:
    head = b'\vUPDATE\t"schedd#%d.0#1"\tPad\t"' % i
    return head + b"x" * max(0, size - len(head) - 2) + b'"\n'


@pytest.fixture
def stats():
    return Statistics()


def counters(stats) -> dict:
    snap = stats.snapshot()
    return {k: int(snap.get(k, 0)) for k in (
        "records_written", "bytes_written", "records_dropped_pipe_full",
        "records_dropped_pandad_down", "pandad_restarts", "spill_bytes")}


def copy_pipe(tmp_path, stats, **kw) -> "tuple[PandadPipe, str]":
    out = str(tmp_path / "received")
    pipe = PandadPipe([sys.executable, "-c", COPY_STDIN_CHILD, out], stats=stats, **kw)
    assert pipe.running
    return pipe, out


def drain(pipe: PandadPipe) -> None:
    def empty() -> bool:
        pipe.pump()
        return pipe.spill_records == 0
    wait_until(empty, timeout=10, message="spill buffer to drain")


def test_whole_records_while_the_pipe_fills(tmp_path, stats):
    pipe, out = copy_pipe(tmp_path, stats, spill_bytes=16384, pipe_bytes=4096)
    os.kill(pipe.pid, signal.SIGSTOP)
    rng = random.Random(7)
    offered = [record(i, rng.choice([60, 300, 2000, 5000, 9000])) for i in range(400)]
    accepted = []
    max_spill = 0
    saw_torn = False
    try:
        for rec in offered:
            if pipe.write(rec):
                accepted.append(rec)
            max_spill = max(max_spill, counters(stats)["spill_bytes"])
            saw_torn = saw_torn or pipe._spill_offset > 0
            # The bound: queued whole records stay under spill_bytes; only a torn record's
            # tail may take it past that, and by at most one record.
            assert counters(stats)["spill_bytes"] <= 16384 + 9000
    finally:
        os.kill(pipe.pid, signal.SIGCONT)
    c = counters(stats)
    assert saw_torn, "the test must exercise a partial write"
    assert max_spill > 0
    assert c["records_dropped_pipe_full"] == len(offered) - len(accepted) > 0
    assert c["records_dropped_pandad_down"] == 0
    drain(pipe)
    assert pipe.close(timeout=10) == 0
    received = open(out, "rb").read()
    # Every record arrived intact, in order, and nothing else did.
    assert received == b"".join(accepted)
    c = counters(stats)
    assert c["records_written"] == len(accepted)
    assert c["bytes_written"] == len(received)
    assert c["spill_bytes"] == 0


def test_spill_buffer_is_finished_first(tmp_path, stats):
    pipe, out = copy_pipe(tmp_path, stats, spill_bytes=1 << 20, pipe_bytes=65536)
    os.kill(pipe.pid, signal.SIGSTOP)
    capacity = fcntl.fcntl(pipe._child.fd, F_GETPIPE_SZ)
    big = record(1, capacity + 50000)       # cannot fit: a partial write, the tail spills
    small = record(2, 100)
    try:
        assert pipe.write(big)
        assert pipe._spill_offset > 0 and counters(stats)["records_written"] == 0
        assert pipe.write(small)            # queued behind the tail, not interleaved
        assert pipe.spill_records == 2
        pipe.pump()                         # pandad still stopped: nothing moves, nothing blocks
        assert pipe.spill_records == 2
    finally:
        os.kill(pipe.pid, signal.SIGCONT)
    drain(pipe)
    assert counters(stats)["records_written"] == 2
    assert counters(stats)["spill_bytes"] == 0
    assert pipe.close(timeout=10) == 0
    assert open(out, "rb").read() == big + small


def test_records_are_written_in_batches_and_by_pump(tmp_path, stats):
    pipe, out = copy_pipe(tmp_path, stats, spill_bytes=1 << 20, pipe_bytes=1 << 20)
    small = [record(i, 100) for i in range(10)]
    for rec in small:
        assert pipe.write(rec)
    # Under a batch: nothing written yet, every record accounted as waiting.
    assert counters(stats)["records_written"] == 0 and pipe.spill_records == 10
    pipe.pump()
    assert counters(stats)["records_written"] == 10 and pipe.spill_records == 0
    # A batch's worth goes out without a pump, in as many system calls as batches.
    many = [record(i, 100) for i in range(10, 10 + 3 * BATCH_BYTES // 100)]
    for rec in many:
        assert pipe.write(rec)
    assert counters(stats)["records_written"] >= 10 + 2 * BATCH_BYTES // 100
    assert pipe._spill_size <= BATCH_BYTES
    pipe.pump()
    assert counters(stats)["records_written"] == len(small) + len(many)
    assert counters(stats)["spill_bytes"] == 0
    assert pipe.close(timeout=10) == 0
    assert open(out, "rb").read() == b"".join(small + many)


def test_records_waiting_in_a_batch_when_pandad_dies_are_counted_and_logged(tmp_path, stats,
                                                                          caplog):
    caplog.set_level(logging.WARNING, logger="panda_plugin.pipe")
    pipe = PandadPipe([sys.executable, "-c", "import sys; sys.exit(3)"], 1 << 20, 0, stats,
                      min_backoff=60.0)
    try:
        for i in range(5):
            assert pipe.write(record(i, 100))      # under a batch: waiting, not in the pipe
        os.waitid(os.P_PID, pipe.pid, os.WEXITED | os.WNOWAIT)   # exited, not yet reaped

        def gone() -> bool:
            pipe.pump()
            return not pipe.running
        wait_until(gone, timeout=10, message="the child to exit")
        c = counters(stats)
        assert (c["records_written"], c["records_dropped_pandad_down"]) == (0, 5)
        assert pipe.spill_records == 0 and c["spill_bytes"] == 0
        assert "pandad is not running: dropping records" in caplog.text
    finally:
        pipe.close(timeout=5)
    assert "dropped 5 records" in caplog.text


def test_exact_drop_counts_and_two_log_lines_per_episode(tmp_path, stats, caplog):
    pipe, out = copy_pipe(tmp_path, stats, spill_bytes=1000, pipe_bytes=4096)
    os.kill(pipe.pid, signal.SIGSTOP)
    results = []
    with caplog.at_level(logging.WARNING, logger="panda_plugin.pipe"):
        try:
            for i in range(1000):
                results.append(pipe.write(record(i, 100)))
        finally:
            os.kill(pipe.pid, signal.SIGCONT)
        drain(pipe)
        assert pipe.write(record(1000, 100))   # flow resumed: the episode ends
        results.append(True)
        pipe.pump()                            # the plug-in's loop pumps after every poll
    c = counters(stats)
    assert c["records_dropped_pipe_full"] == results.count(False) > 0
    assert c["records_written"] == results.count(True)
    # One line as the episode starts, one with its counts as it ends; none per record.
    episode_lines = [r.getMessage() for r in caplog.records if "full" in r.getMessage()]
    assert len(episode_lines) == 2, episode_lines
    assert "dropping records" in episode_lines[0]
    assert f"dropped {results.count(False)} records" in episode_lines[1]
    assert pipe.close(timeout=10) == 0
    assert open(out, "rb").read().count(b"\n") == results.count(True)


def test_pandad_that_cannot_start_drops_and_counts(tmp_path, stats, caplog):
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="panda_plugin.pipe"):
        pipe = PandadPipe([str(tmp_path / "no-such-pandad")], 1000, 4096, stats, clock=clock)
        assert not pipe.running
        for i in range(250):
            assert not pipe.write(record(i, 100))
        pipe.close(timeout=1)
    c = counters(stats)
    assert c["records_dropped_pandad_down"] == 250
    assert c["records_written"] == 0
    drop_lines = [r.getMessage() for r in caplog.records if "dropp" in r.getMessage()]
    assert len(drop_lines) == 2, drop_lines
    assert "dropping records" in drop_lines[0] and "dropped 250 records" in drop_lines[1]


def test_restart_with_backoff(tmp_path, stats, caplog):
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="panda_plugin.pipe")
    pipe = PandadPipe([sys.executable, "-c", ONE_LINE_CHILD], 4096, 0, stats, clock=clock,
                      min_backoff=1.0, max_backoff=4.0, stable_after=60.0)

    def kill_child() -> None:
        pid = pipe.pid
        assert pipe.write(record(0, 50))    # the child reads one line and exits 3

        def gone() -> bool:
            pipe.pump()
            return not pipe.running
        wait_until(gone, timeout=10, message=f"child {pid} to exit")

    try:
        kill_child()
        assert "exited with status 3" in caplog.text
        assert not pipe.write(record(1, 50))
        assert counters(stats)["records_dropped_pandad_down"] == 1
        clock.now += 0.9
        pipe.pump()
        assert not pipe.running                       # backoff 1 s not over yet
        clock.now += 0.1
        pipe.pump()
        assert pipe.running and counters(stats)["pandad_restarts"] == 1

        kill_child()
        clock.now += 1.5
        pipe.pump()
        assert not pipe.running                       # doubled to 2 s
        clock.now += 0.5
        assert pipe.write(record(2, 50))              # a write restarts it too
        assert counters(stats)["pandad_restarts"] == 2

        kill_child()                                  # 4 s now, the maximum
        clock.now += 3.9
        pipe.pump()
        assert not pipe.running
        clock.now += 0.1
        pipe.pump()
        assert pipe.running and counters(stats)["pandad_restarts"] == 3

        clock.now += 60                               # stayed up: the backoff resets
        kill_child()
        clock.now += 1.0
        pipe.pump()
        assert pipe.running and counters(stats)["pandad_restarts"] == 4
        assert counters(stats)["records_dropped_pandad_down"] == 1
    finally:
        pipe.close(timeout=5)


def test_argv_change_applies_at_next_restart(tmp_path, stats):
    clock = FakeClock()
    marker = tmp_path / "second"
    pipe = PandadPipe([sys.executable, "-c", ONE_LINE_CHILD], 4096, 0, stats, clock=clock)
    try:
        pipe.argv = (sys.executable, "-c",
                     f"open({str(marker)!r}, 'w').close(); import sys; sys.stdin.read()")
        assert not marker.exists()
        pipe.write(record(0, 50))
        wait_until(lambda: (pipe.pump(), not pipe.running)[1], timeout=10)
        clock.now += 1
        pipe.pump()
        wait_until(marker.exists, timeout=10, message="the new argv to run")
    finally:
        assert pipe.close(timeout=10) == 0


def test_close_sends_eof_and_reaps(tmp_path, stats):
    pipe, out = copy_pipe(tmp_path, stats, spill_bytes=4096, pipe_bytes=0)
    pid = pipe.pid
    assert pipe.write(record(1, 200))
    assert pipe.close(timeout=10) == 0
    assert os.path.exists(out + ".eof")              # the child saw EOF and finished normally
    assert open(out, "rb").read() == record(1, 200)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)                  # reaped: no zombie left behind
    assert not pipe.write(record(2, 10))             # closed: counted, not restarted
    assert counters(stats)["records_dropped_pandad_down"] == 1


def test_close_terminates_a_stuck_pandad(tmp_path, stats):
    pipe, out = copy_pipe(tmp_path, stats, spill_bytes=4096, pipe_bytes=0)
    os.kill(pipe.pid, signal.SIGSTOP)
    started = time.monotonic()
    assert pipe.close(timeout=0.5, flush_timeout=0.1) == -signal.SIGTERM
    assert time.monotonic() - started < 5
    assert not os.path.exists(out + ".eof")


def test_pipe_is_enlarged_within_limits(tmp_path, stats):
    pipe, _ = copy_pipe(tmp_path, stats, spill_bytes=4096, pipe_bytes=1 << 20)
    try:
        size = fcntl.fcntl(pipe._child.fd, F_GETPIPE_SZ)
        limit = int(open("/proc/sys/fs/pipe-max-size").read())
        assert size == min(1 << 20, limit) or os.geteuid() == 0 and size == 1 << 20
    finally:
        pipe.close(timeout=10)


class Tracker(PipeTracker):
    """Everything the pipe tells its tracker, in order."""

    def __init__(self) -> None:
        self.events = []

    def written(self, records):
        self.events.append(("written", list(records)))

    def dropped(self, records):
        self.events.append(("dropped", list(records)))

    def reports(self, data):
        self.events.append(("reports", data))

    def started(self):
        self.events.append(("started",))

    def exited(self, status):
        self.events.append(("exited", status))

    def of(self, kind):
        return [e for e in self.events if e[0] == kind]


# Says HELLO on stdout if PANDAD_BACK_CHANNEL=1, reads two lines, reports them settled, exits 5.
BACK_CHANNEL_CHILD = (
    "import os, sys\n"
    "on = os.environ.get('PANDAD_BACK_CHANNEL') == '1'\n"
    "out = sys.stdout.buffer\n"
    "if on: out.write(b'HELLO\\t1\\n'); out.flush()\n"
    "sys.stdin.buffer.readline(); sys.stdin.buffer.readline()\n"
    "if on: out.write(b'LOST\\t\"schedd#1.0#1\"\\nSETTLED\\t2\\n'); out.flush()\n"
    "sys.exit(5)\n")


def test_the_tracker_sees_records_reports_and_the_exit_in_order(tmp_path, stats):
    tracker = Tracker()
    clock = FakeClock()
    pipe = PandadPipe([sys.executable, "-c", BACK_CHANNEL_CHILD], 65536, 0, stats,
                      clock=clock, tracker=tracker, back_channel=True)
    assert tracker.events == [("started",)] and pipe.reports_fd is not None
    records = [record(0, 100), record(1, 100)]
    for rec in records:
        pipe.write(rec)
    pipe.pump()
    assert tracker.of("written") == [("written", records)]
    wait_until(lambda: (pipe.pump(), not pipe.running)[1], 10, message="the child to exit")
    reports = b"".join(e[1] for e in tracker.of("reports"))
    assert reports == b'HELLO\t1\nLOST\t"schedd#1.0#1"\nSETTLED\t2\n'
    assert tracker.events[-1] == ("exited", 5)
    assert pipe.reports_fd is None
    # While it is down (backoff), records are dropped, and the tracker is told which.
    assert pipe.write(record(2, 100)) is False
    assert tracker.events[-1] == ("dropped", [record(2, 100)])
    pipe.restart_now()
    pipe.pump()
    assert pipe.running and tracker.events[-1] == ("started",)
    pipe.close(timeout=10)


def test_without_the_back_channel_pandad_gets_no_stdout_pipe(tmp_path, stats):
    tracker = Tracker()
    pipe = PandadPipe([sys.executable, "-c", BACK_CHANNEL_CHILD], 65536, 0, stats,
                      tracker=tracker)
    assert pipe.reports_fd is None
    pipe.close(timeout=10)
    assert tracker.of("reports") == []


def test_close_reads_the_back_channel_while_pandad_finishes(tmp_path, stats):
    tracker = Tracker()
    child = ("import sys, time\n"
             "sys.stdin.buffer.read()\n"
             "for i in range(20000): sys.stdout.buffer.write(b'LOST\\t\"s#%d.0#1\"\\n' % i)\n"
             "sys.stdout.buffer.flush()\n")
    pipe = PandadPipe([sys.executable, "-c", child], 65536, 0, stats, tracker=tracker,
                      back_channel=True)
    # 20,000 lines are more than a pipe holds: the child finishes only if close reads them.
    assert pipe.close(timeout=20) == 0
    assert b"".join(e[1] for e in tracker.of("reports")).count(b"\n") == 20000
    assert tracker.events[-1] == ("exited", 0)
