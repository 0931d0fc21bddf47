"""pandad.flusher: cycles against a scripted in-process transport, and against a real
DevMonitor and real servers on 127.0.0.1 where the transport and the monitor take part."""

import dataclasses
import json
import os
import threading
import time
from typing import Optional

import pytest

from pandad.buffer import RecordBuffer
from pandad.config import HTCondorConfig
from pandad.dev.devmonitor import DevMonitor
from pandad.flusher import SLICE_REQUESTS, Flusher, backoff
from pandad.knobs import load_pandad_settings
from pandad.report import NO_REPORT, BackChannel, Ledger
from pandad.stats import OUTCOMES, Statistics
from pandad.transport import Transport
from pandad.wire import encode_add, encode_remove, encode_update
from tests.support import FakeClock, wait_until
from tests.support.fake_transport import ACCEPT, FakeTransport, refused
from tests.support.faultserver import FaultServer, refused_url, respond



def job(i: int) -> str:
    return f"schedd.example.org#{i}.0#1700000000"


def line(record: bytes) -> bytes:
    return record.rstrip(b"\n")


@pytest.fixture
def base_settings(tmp_path):
    config = tmp_path / "condor_config"
    config.write_text("PANDA_URL = http://127.0.0.1:9/api/jobs/\n"
                      f"PANDA_STATISTICS_LOG = {tmp_path}/stats\n"
                      "PANDA_UPDATE_TIMEOUT = 5\n")
    return load_pandad_settings(HTCondorConfig.load("PANDAD", {"CONDOR_CONFIG": str(config)}))


class Rig:
    """A buffer, a flusher and its statistics, sending to ``url`` (a real Transport) or
    through ``transport``; ``changes`` are settings, the rest the Flusher's own options."""

    def __init__(self, settings, url: Optional[str] = None,
                 transport: Optional[FakeTransport] = None, clock=None,
                 report=NO_REPORT, **changes) -> None:
        url = transport.url_for_log if transport is not None else url
        self.settings = dataclasses.replace(settings, url=url, **changes)
        self.stats = Statistics()
        self.buffer = RecordBuffer(1 << 30, 0, 1 << 30)
        extra = {"clock": clock} if clock is not None else {}
        self.flusher = Flusher(self.buffer, transport or Transport(self.settings), self.stats,
                               self.settings, report=report, **extra)
        self.put = 0

    def feed(self, *records: bytes) -> None:
        lines = [line(r) for r in records]
        assert self.buffer.put_many(lines) == len(lines)
        self.put += len(lines)

    def count(self, name: str) -> int:
        return int(self.stats.snapshot().get(name, 0))

    def settled(self) -> int:
        return sum(self.count(name) for name in OUTCOMES)

    def assert_accounted(self) -> None:
        assert self.settled() + self.flusher.pending_records + len(self.buffer) == self.put


def accepting_server() -> FaultServer:
    def handler(server, conn, request):
        return respond(conn, ACCEPT[request.method], b"[]", keep_alive=True)
    return FaultServer(handler)


def test_one_cycle_sends_post_put_delete_in_order(base_settings):
    with accepting_server() as server:
        rig = Rig(base_settings, server.url)
        rig.feed(encode_remove(job(3)),
                 encode_update(job(2), [("JobStatus", "2")]),
                 encode_add(job(1), "1.0", [("Owner", '"alice"')]),
                 encode_update(job(1), [("JobStatus", "1")]))
        rig.flusher.flush_once()
        requests = server.received
        assert [r.method for r in requests] == ["POST", "PUT", "DELETE"]
        assert all(r.headers["content-type"] == "application/json" for r in requests)
        post, put, delete = (json.loads(r.body) for r in requests)
        assert post == [{"id": job(1), "condorid": "1.0", "Owner": "alice", "JobStatus": 1}]
        assert put == [{"id": job(2), "JobStatus": 2}]
        assert delete == [{"id": job(3)}]
        assert rig.count("records_sent") == 4
        assert rig.count("commands_sent") == 3 == rig.count("commands_accepted")
        assert rig.count("requests_made") == 3 == rig.count("requests_succeeded")
        assert rig.count("responses_201") == rig.count("responses_204") == 1
        assert rig.count("batches") == 1
        assert rig.stats.get("last_success_time") > 0
        rig.assert_accounted()


def test_bodies_are_split_at_max_request_bytes(base_settings):
    transport = FakeTransport()
    rig = Rig(base_settings, transport=transport, max_request_bytes=2000)
    rig.feed(*(encode_add(job(i), f"{i}.0", [("Cmd", '"/bin/sleep"'), ("JobStatus", "1")])
               for i in range(300)))
    rig.feed(encode_update(job(1000), [("Huge", '"' + "x" * 5000 + '"')]))
    rig.flusher.flush_once()
    posts = [r for r in transport.received if r.method == "POST"]
    assert len(posts) > 10
    assert all(len(r.body) <= 2000 for r in posts)
    ids = [obj["id"] for r in posts for obj in r.json()]
    assert sorted(ids) == sorted(job(i) for i in range(300))
    # A single object larger than the limit goes alone.
    (huge,) = [r for r in transport.received if r.method == "PUT"]
    assert len(huge.body) > 5000 and len(huge.json()) == 1
    assert rig.count("records_sent") == 301
    rig.assert_accounted()


def test_devmonitor_gets_the_coalesced_final_state(base_settings):
    with DevMonitor() as monitor:
        rig = Rig(base_settings, monitor.url)
        rig.feed(*(encode_add(job(i), f"{i}.0", [("JobStatus", "1"), ("Owner", '"bob"')])
                   for i in range(50)))
        rig.flusher.flush_once()
        rig.feed(*(encode_update(job(i), [("JobStatus", "2")]) for i in range(50)))
        rig.feed(*(encode_update(job(i), [("JobStatus", "4"), ("ExitCode", "0")])
                   for i in range(25)))
        rig.feed(*(encode_remove(job(i)) for i in range(10)))
        rig.flusher.flush_once()
        jobs = monitor.jobs()
        assert len(jobs) == 50
        for i in range(50):
            expected = 4 if i < 25 else 2
            assert jobs[job(i)]["JobStatus"] == expected
            assert jobs[job(i)]["Owner"] == "bob"
            assert jobs[job(i)]["removed"] is (i < 10)
        # 50 updates of one PUT merged 125 records
        assert monitor.request_counts() == {"POST 201": 1, "PUT 200": 1, "DELETE 204": 1}
        assert rig.count("records_sent") == 50 + 50 + 25 + 10
        rig.assert_accounted()


def test_one_unknown_id_in_a_bulk_put_is_isolated_and_upserted(base_settings):
    with DevMonitor() as monitor:
        rig = Rig(base_settings, monitor.url)
        rig.feed(*(encode_add(job(i), f"{i}.0", [("JobStatus", "1")]) for i in range(999)))
        rig.flusher.flush_once()
        unknown = "schedd.example.org#4242.7#1700000000"
        rig.feed(*(encode_update(job(i), [("JobStatus", "2")]) for i in range(999)))
        rig.feed(encode_update(unknown, [("JobStatus", "2")]))
        rig.flusher.flush_once()
        jobs = monitor.jobs()
        assert all(jobs[job(i)]["JobStatus"] == 2 for i in range(999))
        # The unknown job was created by the re-send as POST, condorid from its GlobalJobId.
        assert jobs[unknown]["JobStatus"] == 2
        assert jobs[unknown]["condorid"] == "4242.7"
        assert rig.count("upserts_sent") == 1 == rig.count("upserts_accepted")
        assert rig.count("records_sent") == 999 + 1000
        assert rig.count("records_rejected") == 0
        assert rig.count("responses_400") >= 10          # the halving down to one command
        assert rig.count("bad_response_codes") == rig.count("responses_400")
        rig.assert_accounted()


def test_rejection_without_upsert_is_counted_and_logged(base_settings, caplog):
    with DevMonitor() as monitor:
        rig = Rig(base_settings, monitor.url, upsert=False)
        rig.feed(*(encode_add(job(i), f"{i}.0") for i in range(8)))
        rig.flusher.flush_once()
        rig.feed(*(encode_update(job(i), [("JobStatus", "2")]) for i in range(8)))
        rig.feed(encode_update(job(99), [("JobStatus", "2")]),
                 encode_update(job(99), [("JobStatus", "5")]))
        with caplog.at_level("WARNING", logger="pandad"):
            rig.flusher.flush_once()
        assert job(99) not in monitor.jobs()
        assert all(monitor.jobs()[job(i)]["JobStatus"] == 2 for i in range(8))
        assert rig.count("records_rejected") == 2       # both records merged into the command
        assert rig.count("upserts_sent") == 0
        assert any(job(99) in r.getMessage() and "400" in r.getMessage()
                   for r in caplog.records)
        rig.assert_accounted()


def test_a_rejected_single_plain_update_is_named_and_counted(base_settings, caplog):
    """Jobs with one plain UPDATE each (kept as its fields until needed): the unknown one is
    isolated, named in the log and counted, the others applied."""
    with DevMonitor() as monitor:
        rig = Rig(base_settings, monitor.url, upsert=False)
        rig.feed(*(encode_add(job(i), f"{i}.0") for i in range(8)))
        rig.flusher.flush_once()
        rig.feed(*(encode_update(job(i), [("JobStatus", "2"), ("ImageSize", "10")])
                   for i in (0, 1, 2, 99, 3, 4, 5, 6, 7)))
        with caplog.at_level("WARNING", logger="pandad"):
            rig.flusher.flush_once()
        assert all(monitor.jobs()[job(i)]["ImageSize"] == 10 for i in range(8))
        assert rig.count("records_rejected") == 1 and rig.count("records_sent") == 8 + 8
        assert [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()] == [
            f"monitor rejected PUT of job {job(99)} (HTTP 400): 1 record(s) not applied"]
        rig.assert_accounted()


def test_rejected_post_of_an_existing_job_is_resent_as_put(base_settings):
    with DevMonitor() as monitor:
        rig = Rig(base_settings, monitor.url)
        rig.feed(encode_add(job(1), "1.0", [("JobStatus", "1")]))
        rig.flusher.flush_once()
        # The plug-in restarted and replays the ADD with newer values.
        rig.feed(encode_add(job(1), "1.0", [("JobStatus", "2")]),
                 encode_add(job(2), "2.0", [("JobStatus", "1")]))
        rig.flusher.flush_once()
        jobs = monitor.jobs()
        assert jobs[job(1)]["JobStatus"] == 2 and jobs[job(2)]["JobStatus"] == 1
        assert rig.count("upserts_accepted") == 1
        assert rig.count("records_sent") == 3
        rig.assert_accounted()


def test_refused_connection_with_no_retry_loses_the_cycle(base_settings, caplog):
    rig = Rig(base_settings, refused_url(), retry_limit=0)
    rig.feed(encode_add(job(1), "1.0"), encode_update(job(2), [("A", "1")]),
             encode_update(job(2), [("A", "2")]), encode_remove(job(3)))
    with caplog.at_level("WARNING", logger="pandad"):
        rig.flusher.flush_once()
    # The monitor is away: one attempt, not one per verb.
    assert rig.count("requests_made") == 1 == rig.count("transport_failures")
    assert rig.count("records_lost_transport") == 4
    lost_lines = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost_lines) == 1 and "4 record(s)" in lost_lines[0].getMessage()
    rig.assert_accounted()


def test_5xx_is_retried_up_to_the_limit_then_lost(base_settings):
    transport = FakeTransport(otherwise=503)
    rig = Rig(base_settings, transport=transport, retry_limit=2)
    rig.feed(encode_add(job(1), "1.0"), encode_update(job(1), [("A", "1")]))
    rig.flusher.flush_once()
    assert rig.flusher.pending_records == 2
    assert rig.stats.get("records_pending_retry") == 2
    rig.flusher.flush_once()
    assert rig.count("records_lost_transport") == 0
    rig.flusher.flush_once()
    assert rig.count("records_lost_transport") == 2
    assert rig.flusher.pending_records == 0
    assert transport.requests == 3
    assert rig.count("responses_503") == 3 == rig.count("bad_response_codes")
    assert rig.count("retries") == 2
    rig.assert_accounted()


def test_carried_over_commands_merge_with_new_records(base_settings):
    rig = Rig(base_settings, transport=FakeTransport(otherwise=500), retry_limit=3)
    rig.feed(encode_add(job(1), "1.0", [("JobStatus", "1")]))
    rig.flusher.flush_once()
    assert rig.flusher.pending_records == 1
    # The monitor is back (at another address, as after SIGHUP).
    back = FakeTransport(url_for_log="http://127.0.0.1:10/api/jobs/")
    rig.flusher.reconfigure(dataclasses.replace(rig.settings, url=back.url_for_log), back)
    rig.feed(encode_update(job(1), [("JobStatus", "2")]))
    rig.flusher.flush_once()
    # merged into the ADD
    assert [(r.method, r.json()) for r in back.received] == [
        ("POST", [{"id": job(1), "condorid": "1.0", "JobStatus": 2}])]
    assert rig.count("records_sent") == 2
    rig.assert_accounted()


def test_bad_records_are_counted_by_reason(base_settings):
    transport = FakeTransport()
    rig = Rig(base_settings, transport=transport)
    rig.feed(b"junk", b"\vUPDATE\t\"x\"\tA", encode_add(job(1), "1.0"))
    rig.flusher.flush_once()
    assert rig.count("records_bad") == 2
    assert rig.count("records_bad_no_leading_vt") == 1
    assert rig.count("records_bad_odd_fields") == 1
    assert rig.count("records_sent") == 1
    assert transport.methods == ["POST"]
    rig.assert_accounted()


def test_abandon_counts_what_is_unsent_once(base_settings):
    transport = FakeTransport(otherwise=503)
    rig = Rig(base_settings, transport=transport, retry_limit=5)
    rig.feed(encode_add(job(1), "1.0"), encode_add(job(2), "2.0"))
    rig.flusher.flush_once()
    assert rig.flusher.abandon() == 2
    assert rig.flusher.abandon() == 0
    rig.flusher.flush_once()                          # abandoned: does nothing
    assert transport.requests == 1
    assert rig.count("records_discarded_shutdown") == 2
    rig.assert_accounted()


def test_backoff_doubles_and_is_capped():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(7) == 60 and backoff(1000) == 60


def test_run_wakes_on_data_and_stops(base_settings):
    with DevMonitor() as monitor:
        rig = Rig(base_settings, monitor.url, flush_interval=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=rig.flusher.run, args=(stop,), daemon=True)
        thread.start()
        rig.feed(encode_add(job(1), "1.0"))
        wait_until(lambda: job(1) in monitor.jobs(), 10, message="the first job")
        rig.feed(encode_add(job(2), "2.0"))
        wait_until(lambda: job(2) in monitor.jobs(), 10, message="the second job")
        stop.set()
        rig.buffer.close()
        thread.join(5)
        assert not thread.is_alive()
        assert rig.count("batches") == 2
        rig.assert_accounted()


def test_an_idle_flusher_writes_the_reports_the_pipe_could_not_take(base_settings):
    """The plug-in was busy while pandad lost records; once it reads again, the waiting LOST
    and SETTLED lines reach it although nothing else ever arrives (no cycle to push them)."""
    r, w = os.pipe()
    try:
        back = BackChannel(w, Ledger(max_ids=1_000_000, max_text=1 << 30))
        rig = Rig(base_settings, transport=FakeTransport(), report=back)
        back.ledger.read(0, [line(encode_add(job(i), f"{i}.0")) for i in range(20_000)])
        back.flush()
        assert back.waiting
        stop = threading.Event()
        thread = threading.Thread(target=rig.flusher.run, args=(stop,), daemon=True)
        thread.start()
        data = b""
        os.set_blocking(r, False)

        def everything_read() -> bool:
            nonlocal data
            try:
                data += os.read(r, 1 << 16)
            except BlockingIOError:
                pass
            return data.endswith(b"SETTLED\t20000\n")

        wait_until(everything_read, 10, interval=0.01, message="the waiting reports")
        assert data.count(b"LOST\t") == 20_000
        stop.set()
        rig.buffer.close()
        thread.join(5)
    finally:
        os.close(r)
        os.close(w)


def test_drain_sends_what_is_left_then_returns(base_settings):
    with DevMonitor() as monitor:
        rig = Rig(base_settings, monitor.url)
        rig.feed(*(encode_add(job(i), f"{i}.0") for i in range(10)))
        rig.flusher.drain(time.monotonic() + 10)
        assert len(monitor.jobs()) == 10
        rig.assert_accounted()


def test_a_big_buffer_goes_in_slices_in_the_records_order(base_settings):
    """Slices of max_request_bytes: a job ADDed in the first slice and updated in a later
    one gets its POST before the PUT, and every record is counted once."""
    transport = FakeTransport()
    rig = Rig(base_settings, transport=transport, max_request_bytes=2000)
    rig.feed(encode_add(job(1), "1.0", [("JobStatus", "1")]))
    rig.feed(*(encode_update(job(i), [("JobStatus", "2"), ("Pad", '"' + "x" * 50 + '"')])
               for i in range(100, 300)))
    rig.feed(encode_update(job(1), [("JobStatus", "2")]), encode_remove(job(1)))
    rig.flusher.flush_once()
    requests = transport.received
    assert all(len(r.body) <= 2000 for r in requests)
    mentions = [(r.method, obj) for r in requests for obj in r.json() if obj["id"] == job(1)]
    assert mentions == [("POST", {"id": job(1), "condorid": "1.0", "JobStatus": 1}),
                        ("PUT", {"id": job(1), "JobStatus": 2}),
                        ("DELETE", {"id": job(1)})]
    # The slices' methods interleave: POST, PUTs, then a later slice's PUTs and DELETE.
    methods = transport.methods
    assert methods[0] == "POST" and methods[-1] == "DELETE" and methods.count("POST") == 1
    updated = [obj["id"] for r in requests if r.method == "PUT" for obj in r.json()]
    assert sorted(updated) == sorted([job(1)] + [job(i) for i in range(100, 300)])
    assert rig.count("records_sent") == 203 and rig.count("batches") == 1
    assert len(rig.buffer) == 0
    rig.assert_accounted()


def test_a_failed_slice_is_retried_and_the_rest_waits_in_the_buffer(base_settings):
    transport = FakeTransport([503], otherwise=200)
    rig = Rig(base_settings, transport=transport, max_request_bytes=2000, retry_limit=3)
    rig.feed(*(encode_update(job(i), [("Pad", '"' + "x" * 80 + '"')]) for i in range(200)))
    rig.flusher.flush_once()
    assert transport.requests == 1
    pending = rig.flusher.pending_records
    assert 0 < pending < 200 and len(rig.buffer) == 200 - pending
    rig.assert_accounted()
    rig.feed(encode_update(job(0), [("Pad", '"y"')]))    # merges with the carried command
    rig.flusher.flush_once()
    sent = {obj["id"]: obj for r in transport.received[1:] for obj in r.json()}
    assert len(sent) == 200 and sent[job(0)]["Pad"] == "y"
    assert rig.count("records_sent") == 201 and rig.count("retries") == 1
    assert rig.flusher.pending_records == 0 and len(rig.buffer) == 0
    rig.assert_accounted()


def test_a_refused_cycle_without_retries_loses_every_slice_it_took(base_settings):
    rig = Rig(base_settings, transport=FakeTransport(otherwise=refused()), retry_limit=0,
              max_request_bytes=2000)
    rig.feed(*(encode_update(job(i), [("Pad", '"' + "x" * 80 + '"')]) for i in range(200)))
    rig.feed(b"junk")
    rig.flusher.flush_once()
    assert rig.count("requests_made") == 1
    assert rig.count("records_lost_transport") == 200 and rig.count("records_bad") == 1
    assert len(rig.buffer) == 0
    rig.assert_accounted()


def _arriving_during_requests(rig: Rig, first_job: int, records: int):
    """A reply that, at the first request, puts ``records`` more distinct jobs' records into
    the buffer (they arrive while the cycle sends), then accepts."""
    arrived = []

    def reply(method: str, body: bytes) -> int:
        if not arrived:
            arrived.append(True)
            rig.feed(*(encode_update(job(i), [("JobStatus", "2")])
                       for i in range(first_job, first_job + records)))
        return ACCEPT[method]
    return reply


@pytest.mark.parametrize("records", [4000, 10])
def test_a_burst_arriving_mid_cycle_goes_in_it_a_trickle_waits(base_settings, records):
    """Whole slices that arrive while a cycle is young go out in that cycle (a burst is sent
    back to back); less than a slice waits for the next cycle, to be batched."""
    clock = FakeClock()
    transport = FakeTransport()
    rig = Rig(base_settings, transport=transport, clock=clock)
    transport.otherwise = _arriving_during_requests(rig, 100, records)
    rig.feed(encode_add(job(1), "1.0"))
    rig.flusher.flush_once()
    slice_bytes = SLICE_REQUESTS * base_settings.max_request_bytes
    assert rig.count("batches") == 1 and rig.buffer.nbytes < slice_bytes
    assert rig.count("records_sent") == 1 + records - len(rig.buffer)
    if records == 10:
        assert len(rig.buffer) == 10                 # a trickle: the next cycle
    else:
        assert rig.count("records_sent") > 2000      # a slice and more went back to back
    rig.flusher.flush_once()
    assert rig.count("batches") == 2 and len(rig.buffer) == 0
    assert rig.count("records_sent") == 1 + records
    rig.assert_accounted()


def test_an_old_cycle_leaves_what_arrives_to_the_next(base_settings):
    """A cycle that has already run ``flush_interval`` takes no more: a cycle always ends."""
    clock = FakeClock()
    transport = FakeTransport(clock=clock, takes=1.5)
    rig = Rig(base_settings, transport=transport, clock=clock)
    transport.otherwise = _arriving_during_requests(rig, 100, 4000)
    rig.feed(encode_add(job(1), "1.0"))
    rig.flusher.flush_once()
    assert rig.count("batches") == 1 and len(rig.buffer) == 4000
    rig.flusher.flush_once()
    assert rig.count("records_sent") == 4001 and len(rig.buffer) == 0
    rig.assert_accounted()
