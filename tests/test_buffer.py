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
