"""pandad.buffer.RecordBuffer: byte accounting, the grace window, the ceiling, waiting."""

import threading
import time

from pandad.buffer import RecordBuffer
from tests.support import FakeClock


def line(n: int) -> bytes:
    return b"x" * n


def test_accepts_under_size_and_counts_bytes():
    buf = RecordBuffer(size=100, grace=3, max_size=1000, clock=FakeClock())
    assert buf.put_many([line(10), line(20)]) == 2
    assert buf.nbytes == 30
    assert buf.peak_bytes == 30
    assert buf.take_all() == [line(10), line(20)]
    assert buf.nbytes == 0
    assert buf.peak_bytes == 30
    assert buf.take_all() == []


def test_grace_window_opens_expires_and_rearms():
    clock = FakeClock()
    buf = RecordBuffer(size=100, grace=3, max_size=10_000, clock=clock)
    assert buf.put_many([line(60)]) == 1
    # Going over the size opens the window: still accepted.
    assert buf.put_many([line(60)]) == 1
    clock.now += 2.9
    assert buf.put_many([line(60), line(60)]) == 2
    assert buf.nbytes == 240
    # After the window, everything is dropped, even a record that is tiny.
    clock.now += 0.2
    assert buf.put_many([line(1), line(1)]) == 0
    assert buf.nbytes == 240
    # The flusher drains the buffer: the grace is re-armed.
    assert len(buf.take_all()) == 4
    clock.now += 100
    assert buf.put_many([line(60), line(60)]) == 2
    clock.now += 2
    assert buf.put_many([line(60)]) == 1
    clock.now += 1
    assert buf.put_many([line(60)]) == 0


def test_zero_grace_drops_as_soon_as_full():
    buf = RecordBuffer(size=100, grace=0, max_size=10_000, clock=FakeClock())
    assert buf.put_many([line(50), line(50), line(1), line(1)]) == 2
    assert buf.nbytes == 100


def test_ceiling_holds_inside_grace_window_and_returns_prefix():
    buf = RecordBuffer(size=100, grace=3600, max_size=250, clock=FakeClock())
    assert buf.put_many([line(100), line(100), line(40), line(20), line(5)]) == 3
    assert buf.nbytes == 240
    # A later, smaller record that still fits under the ceiling is accepted.
    assert buf.put_many([line(10)]) == 1
    assert buf.put_many([line(1)]) == 0
    assert buf.peak_bytes == 250


def test_configure_applies_new_limits():
    clock = FakeClock()
    buf = RecordBuffer(size=100, grace=0, max_size=100, clock=clock)
    assert buf.put_many([line(100), line(1)]) == 1
    buf.configure(size=1000, grace=5, max_size=2000)
    assert buf.put_many([line(800)]) == 1
    assert buf.put_many([line(500)]) == 1        # over the size: the new 5 s grace
    clock.now += 5
    assert buf.put_many([line(1)]) == 0
    buf.configure(size=100, grace=0, max_size=100)
    assert buf.nbytes == 1400                     # shrinking keeps what is buffered
    assert buf.put_many([line(1)]) == 0


def test_oldest_age_follows_the_oldest_batch():
    clock = FakeClock()
    buf = RecordBuffer(size=100, grace=0, max_size=100, clock=clock)
    assert buf.oldest_age() == 0.0
    buf.put_many([line(1)])
    clock.now += 2
    buf.put_many([line(1)])
    clock.now += 1.5
    assert buf.oldest_age() == 3.5
    buf.take_all()
    assert buf.oldest_age() == 0.0


def test_wait_for_data_times_out_when_empty():
    buf = RecordBuffer(size=100, grace=0, max_size=100)
    started = time.monotonic()
    assert buf.wait_for_data(0.05) is False
    assert time.monotonic() - started >= 0.05


def test_wait_for_data_returns_at_once_when_data_is_buffered():
    buf = RecordBuffer(size=100, grace=0, max_size=100)
    buf.put_many([line(1)])
    assert buf.wait_for_data(None) is True


def test_waiter_sleeps_until_a_put_wakes_it():
    """An idle waiter is woken by the put itself (a condition variable), not by a poll."""
    buf = RecordBuffer(size=100, grace=0, max_size=100)
    woke = threading.Event()
    result = []

    def waiter() -> None:
        result.append(buf.wait_for_data(None))   # no timeout: only a notify can end it
        woke.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    assert not woke.wait(0.1)
    buf.put_many([line(1)])
    assert woke.wait(5)
    assert result == [True]


def test_close_wakes_waiters_and_refuses_more():
    buf = RecordBuffer(size=100, grace=0, max_size=100)
    result = []
    thread = threading.Thread(target=lambda: result.append(buf.wait_for_data(None)), daemon=True)
    thread.start()
    buf.close()
    thread.join(5)
    assert result == [False]
    assert buf.put_many([line(1)]) == 0
    assert buf.closed


def test_concurrent_puts_and_takes_lose_nothing():
    buf = RecordBuffer(size=1 << 30, grace=0, max_size=1 << 30)
    taken = []
    done = threading.Event()

    def flusher() -> None:
        while not done.is_set() or len(buf):
            buf.wait_for_data(0.01)
            taken.extend(buf.take_all())

    thread = threading.Thread(target=flusher, daemon=True)
    thread.start()
    expected = [b"%d" % i for i in range(20000)]
    for start in range(0, len(expected), 100):
        assert buf.put_many(expected[start:start + 100]) == 100
    done.set()
    thread.join(10)
    assert not thread.is_alive()
    assert taken == expected


def test_take_hands_over_slices_oldest_first_and_rearms_the_grace():
    clock = FakeClock()
    buf = RecordBuffer(size=100, grace=3, max_size=10_000, clock=clock)
    assert buf.put_many([line(40)] * 5) == 5           # 200 bytes: over the size, in grace
    clock.now += 1
    assert buf.put_many([line(30), line(500)]) == 2
    assert buf.take(100) == [line(40)] * 2              # never over max_bytes ...
    assert buf.nbytes == 120 + 530 and len(buf) == 5
    assert buf.oldest_age() == 1.0                      # three of the first put are left
    assert buf.take(100) == [line(40), line(40)]
    assert buf.take(100) == [line(40), line(30)]
    assert buf.oldest_age() == 0.0 and len(buf) == 1
    clock.now += 10                                     # the grace would be long over ...
    assert buf.take(100) == [line(500)]                 # ... at least one line, however long
    assert buf.nbytes == 0 and buf.take(100) == []
    assert buf.put_many([line(60), line(60)]) == 2      # ... but draining re-armed it


def steady_stream(rate: int, seconds: float, flusher_rate: int, grace: float = 3,
                  size: int = 131072, max_size: int = 16 << 20, line_bytes: int = 150,
                  flush_interval: float = 1.0, slice_bytes: int = 131072) -> int:
    """Records dropped when a steady ``rate`` of records meets a flusher that takes
    ``flusher_rate`` records a second, cycling like Flusher.run (fake clock, 1 ms steps).

    A cycle takes what was buffered at its start a slice at a time; a slice is "sent" in
    its records / ``flusher_rate`` seconds, during which the reader keeps putting.
    """
    clock = FakeClock()
    buf = RecordBuffer(size=size, grace=grace, max_size=max_size, clock=clock)
    start, step = clock.now, 0.001
    dropped = 0
    todo = 0                        # lines left of the running cycle (0: between cycles)
    busy_until = next_cycle = start
    for tick in range(int(seconds / step)):
        clock.now = start + tick * step
        per_tick = rate * (tick + 1) // 1000 - rate * tick // 1000
        dropped += per_tick - buf.put_many([line(line_bytes)] * per_tick)
        if clock.now < busy_until:
            continue
        if todo == 0 and clock.now >= next_cycle and len(buf):
            todo, next_cycle = len(buf), clock.now + flush_interval
        if todo:
            taken = buf.take(slice_bytes)
            todo = max(0, todo - len(taken))
            busy_until = clock.now + len(taken) / flusher_rate
    return dropped


def test_steady_stream_the_flusher_keeps_up_with_is_not_dropped():
    # 50,000 records/s against a flusher that sends 150,000/s: the buffer is over the size
    # for most of every second, but the flusher takes records all along.
    assert steady_stream(rate=50_000, seconds=12, flusher_rate=150_000) == 0
    assert steady_stream(rate=100_000, seconds=12, flusher_rate=150_000) == 0


def test_stalled_flusher_drops_after_the_grace_and_stays_bounded():
    clock = FakeClock()
    buf = RecordBuffer(size=1000, grace=3, max_size=100_000, clock=clock)
    assert buf.put_many([line(100)] * 20) == 20
    assert len(buf.take(500)) == 5            # progress; then the flusher hangs
    for _ in range(29):
        clock.now += 0.1
        assert buf.put_many([line(100)]) == 1
    clock.now += 0.1                          # 3 s since the last take, still over the size
    assert buf.put_many([line(100)]) == 0
    assert buf.put_many([line(1)]) == 0
    # The flusher takes again: a fresh window opens, though the buffer is still over.
    assert len(buf.take(500)) == 5
    assert buf.nbytes > 1000
    assert buf.put_many([line(100)]) == 1
    clock.now += 2.9
    assert buf.put_many([line(100)]) == 1
    clock.now += 0.1
    assert buf.put_many([line(100)]) == 0


def test_hard_ceiling_holds_however_often_the_flusher_takes():
    clock = FakeClock()
    buf = RecordBuffer(size=1000, grace=3, max_size=5000, clock=clock)
    for _ in range(100):
        buf.put_many([line(100)] * 10)
        assert buf.nbytes <= 5000
        buf.take(100)
    assert buf.nbytes == 4900 or buf.nbytes == 5000
