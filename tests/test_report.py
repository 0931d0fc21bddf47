"""pandad.report: the back channel's bookkeeping (pure) and its non-blocking writer (a real pipe)."""

import os

import pytest

from pandad.report import (BackChannel, Ledger, NoReport, enabled, fatal_line, id_field,
                           job_field)
from pandad.wire import encode_add, encode_remove, encode_update


def job(i: int) -> str:
    return f"ap1.example.org#{i}.0#1767225601"


def field(i: int) -> bytes:
    return b'"' + job(i).encode() + b'"'


def line(record: bytes) -> bytes:
    return record.rstrip(b"\n")


def lines_of(report: bytes):
    return report.decode().split("\n")[:-1]


# -- encoding -----------------------------------------------------------------------------------


def test_id_field_is_the_second_field_byte_for_byte():
    assert id_field(line(encode_add(job(1), "1.0", [("A", "1")]))) == field(1)
    assert id_field(line(encode_update(job(2), [("A", "1")]))) == field(2)
    assert id_field(line(encode_remove(job(3)))) == field(3)
    escaped = line(encode_update('a"b', [("A", "1")]))
    assert id_field(escaped) == b'"a\\"b"' == job_field('a"b')


@pytest.mark.parametrize("bad", [b"", b"ADD\t\"x\"", b"\vFOO\t\"x\"\tA\t1", b"\vUPDATE\tx\tA\t1",
                                 b"\vUPDATE\t\"\tA", b"\vUPDATE\t\"a\vb\"\tA\t1",
                                 b"\vUPDATE\t\"a\rb\"\tA\t1", b"\vREMOVE\t"])
def test_a_record_without_a_usable_id_is_not_named(bad):
    assert id_field(bad) is None


def test_job_field_quotes_as_the_plug_in_does():
    assert job_field(job(7)) == field(7)


def test_fatal_line_is_one_ascii_line():
    assert fatal_line("bad\nvalue é\tx") == b"FATAL\tbad value \\xe9 x\n"


def test_enabled_only_by_exactly_1():
    assert enabled({"PANDAD_BACK_CHANNEL": "1"})
    assert not enabled({"PANDAD_BACK_CHANNEL": "yes"})
    assert not enabled({})


# -- the ledger ---------------------------------------------------------------------------------


def test_hello_first_then_nothing_until_something_settles():
    ledger = Ledger()
    assert ledger.poll() == b"HELLO\t1\n"
    assert ledger.poll() == b""


def test_records_queued_settle_when_their_slice_does():
    ledger = Ledger()
    ledger.poll()
    ledger.read(3)
    assert ledger.settled() == 0
    ledger.taken(2)
    assert ledger.settled() == 0
    ledger.slice_settled()
    assert ledger.settled() == 2            # the third is still buffered
    ledger.taken(1)
    ledger.slice_settled()
    assert ledger.poll() == b"SETTLED\t3\n"
    assert ledger.poll() == b""             # only when it moved


def test_drops_and_bad_records_settle_at_once_and_drops_are_named():
    ledger = Ledger()
    ledger.poll()
    dropped = [line(encode_update(job(i), [("A", "1")])) for i in (1, 2, 1)]
    ledger.read(0, dropped, bad=2)
    assert lines_of(ledger.poll()) == ['LOST\t' + field(1).decode(), 'LOST\t' + field(2).decode(),
                                       "SETTLED\t5"]


def test_watermark_stops_at_the_first_buffered_record_after_drops():
    ledger = Ledger()
    ledger.read(2, [line(encode_remove(job(9)))], bad=1)    # records 0-1 queued, 2 dropped, 3 bad
    assert ledger.settled() == 0
    ledger.read(1)                                          # record 4 queued
    ledger.taken(2)
    ledger.slice_settled()
    assert ledger.settled() == 4                            # record 4 still buffered
    ledger.taken(1)
    ledger.slice_settled()
    assert ledger.settled() == 5


def test_a_slice_taken_before_the_reader_recorded_its_chunk_is_pinned_conservatively():
    ledger = Ledger()
    ledger.read(2)
    ledger.taken(2)
    ledger.slice_settled()
    assert ledger.settled() == 2
    # The flusher takes records 2-4 between the reader's put_many and its read().
    ledger.taken(3)
    ledger.read(3)
    assert ledger.settled() == 2
    ledger.slice_settled()
    assert ledger.settled() == 5


def test_carried_commands_hold_the_watermark_at_their_oldest_record():
    ledger = Ledger()
    ledger.read(4)
    ledger.taken(4)                                         # one slice: records 0-3
    ledger.slice_settled([(job(1), False)])                 # job 1 kept for a retry
    assert ledger.settled() == 0
    ledger.read(3)                                          # records 4-6
    ledger.taken(3)                                         # merged with the carry-over
    ledger.slice_settled([(job(1), True), (job(5), False)])
    assert ledger.settled() == 0                            # job 1's record 0 is still held
    ledger.read(2)                                          # records 7-8
    ledger.taken(2)
    ledger.slice_settled([(job(5), True)])                  # job 1 went through
    assert ledger.settled() == 4                            # job 5's records are from slice 4-6
    ledger.taken(0)                                         # a retry cycle of the carry alone
    ledger.slice_settled()
    assert ledger.settled() == 9


def test_settled_never_decreases():
    ledger = Ledger()
    ledger.read(2)
    ledger.taken(2)
    ledger.slice_settled()
    assert ledger.poll().endswith(b"SETTLED\t2\n")
    ledger.taken(1)                     # more than was recorded: pinned at the next record
    assert ledger.settled() == 2


def test_lost_ids_are_deduplicated_per_batch_and_written_before_settled():
    ledger = Ledger()
    ledger.poll()
    ledger.read(3)
    ledger.taken(3)
    ledger.lost([job(1), job(2)])
    ledger.lost([job(1)])
    ledger.slice_settled()
    assert lines_of(ledger.poll()) == [f"LOST\t{field(1).decode()}", f"LOST\t{field(2).decode()}",
                                       "SETTLED\t3"]
    ledger.read(1)
    ledger.taken(1)
    ledger.lost([job(1)])                   # a new batch names it again
    ledger.slice_settled()
    assert lines_of(ledger.poll()) == [f"LOST\t{field(1).decode()}", "SETTLED\t4"]


def test_too_many_ids_become_one_resync():
    ledger = Ledger(max_ids=3)
    ledger.poll()
    ledger.read(0, [line(encode_remove(job(i))) for i in range(4)])
    ledger.lost([job(10)])                  # lost while RESYNC waits: covered by it
    assert lines_of(ledger.poll()) == ["RESYNC", "SETTLED\t4"]
    ledger.lost([job(11)])
    assert lines_of(ledger.poll()) == [f"LOST\t{field(11).decode()}"]


def test_too_much_text_becomes_one_resync():
    ledger = Ledger(max_text=3 * (len(field(1)) + 6))
    ledger.poll()
    ledger.lost([job(i) for i in range(1, 4)])
    assert ledger.poll().count(b"LOST") == 3
    ledger.lost([job(i) for i in range(1, 5)])
    assert ledger.poll() == b"RESYNC\n"


def test_shutdown_names_what_was_held_and_settles_everything():
    ledger = Ledger()
    ledger.poll()
    ledger.read(4)
    ledger.taken(2)                         # in flight when the grace ran out
    ledger.abandoned([job(1)], [line(encode_update(job(2), [("A", "1")]))])
    ledger.lost([job(3)])                   # the stuck cycle's late outcomes no longer count
    ledger.slice_settled()
    assert lines_of(ledger.poll()) == [f"LOST\t{field(1).decode()}", f"LOST\t{field(2).decode()}",
                                       "SETTLED\t2"]
    ledger.leftover([line(encode_remove(job(4))), line(encode_remove(job(5)))])
    assert lines_of(ledger.poll()) == [f"LOST\t{field(4).decode()}", f"LOST\t{field(5).decode()}",
                                       "SETTLED\t4"]


def test_no_report_takes_every_call():
    report = NoReport()
    report.taken(1)
    report.lost([job(1)])
    report.slice_settled([(job(1), False)])
    report.abandoned([job(1)], [])
    report.cycle_done()


# -- the writer, on a real pipe -----------------------------------------------------------------


@pytest.fixture
def pipe():
    """[read end, write end]; a test that closes one sets it to -1."""
    fds = list(os.pipe())
    yield fds
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_writer_writes_whole_lines_and_never_blocks_on_a_full_pipe(pipe):
    r, w = pipe
    back = BackChannel(w, Ledger(max_ids=1_000_000, max_text=1 << 30))
    assert not os.get_blocking(w)
    back.ledger.lost([job(i) for i in range(20_000)])      # far more than a pipe holds
    back.flush()                                           # returns: the pipe is full
    back.ledger.lost([job(99_999)])
    back.flush()
    data = read_available(r)
    while True:
        back.flush()
        more = read_available(r)
        if not more:
            break
        data += more
    lines = lines_of(data)
    assert data.endswith(b"\n") and lines[0] == "HELLO\t1"
    assert lines[1:] == [f"LOST\t{field(i).decode()}" for i in list(range(20_000)) + [99_999]]


def test_lines_the_pipe_did_not_take_are_waiting_until_written(pipe):
    r, w = pipe
    back = BackChannel(w, Ledger(max_ids=1_000_000, max_text=1 << 30))
    assert not back.waiting and not NoReport.waiting
    back.ledger.lost([job(i) for i in range(20_000)])
    back.flush()
    assert back.waiting                 # the pipe is full: someone must flush again
    while back.waiting:
        read_available(r)
        back.flush()
    assert not back.waiting


def test_a_plug_in_that_does_not_read_gets_a_resync_not_unbounded_memory(pipe):
    r, w = pipe
    back = BackChannel(w, Ledger(max_ids=1000))
    for start in range(0, 50_000, 500):
        back.ledger.lost([job(i) for i in range(start, start + 500)])
        back.flush()
    assert len(back._out) < (1 << 20)
    data = read_available(r)
    back.flush()
    data += read_available(r)
    assert b"RESYNC\n" in data


def test_epipe_stops_reporting(pipe):
    r, w = pipe
    back = BackChannel(w)
    os.close(r)
    pipe[0] = -1
    back.ledger.lost([job(1)])
    back.flush()
    assert back.broken
    back.ledger.lost([job(2)])
    back.flush()                        # nothing to do, no error


def test_fatal_writes_hello_then_fatal(pipe):
    r, w = pipe
    BackChannel(w).fatal("PANDA_URL is not set")
    assert read_available(r) == b"HELLO\t1\nFATAL\tPANDA_URL is not set\n"


def test_an_unusable_fd_means_no_reports_not_a_crash():
    back = BackChannel(1_000_000)           # not open
    assert back.broken
    back.ledger.lost([job(1)])
    back.flush()
    back.fatal("x")
